"""Writers of tiny CIFAR-10 datasets in the real on-disk formats, for tests, CI and smoke runs.

``write_cifar10_archive`` writes a ``cifar-10-python.tar.gz`` in the exact official layout and
``write_image_folder`` a ``train/<class>/`` and ``test/<class>/`` tree of image files, both from
``cifarlib.data.synthetic_cifar10``. They live apart from the loaders so the loaders' module holds loading only.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from cifarlib.data import (
    BATCHES_FOLDER,
    CLASS_NAMES,
    META_FILE,
    NUM_CLASSES,
    TEST_BATCH,
    TRAIN_BATCHES,
    synthetic_cifar10,
)


def write_cifar10_archive(
    path: str | os.PathLike,
    *,
    images_per_batch: int = 20,
    test_images: int = 20,
    seed: int = 0,
) -> Path:
    """Write a tiny ``cifar-10-python.tar.gz`` in the exact official layout, for tests and smoke runs.

    The archive holds ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
    ``batches.meta`` and ``readme.html``; each batch is a protocol-2 pickle of a dict with ``batch_label``,
    ``labels``, ``data`` (uint8, ``(n, 3072)``, red plane then green then blue) and ``filenames``, as in
    the official file. The images are the synthetic ones, so a network trained on them learns something.
    """
    path = Path(path)
    (x_train, y_train), (x_test, y_test) = synthetic_cifar10(5 * images_per_batch, test_images, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for index, name in enumerate(TRAIN_BATCHES):
            part = slice(index * images_per_batch, (index + 1) * images_per_batch)
            batch = _batch_dict(f"training batch {index + 1} of 5", x_train[part], y_train[part])
            _add_bytes(archive, f"{BATCHES_FOLDER}/{name}", pickle.dumps(batch, protocol=2))
        test = _batch_dict("testing batch 1 of 1", x_test, y_test)
        _add_bytes(archive, f"{BATCHES_FOLDER}/{TEST_BATCH}", pickle.dumps(test, protocol=2))
        meta = {
            b"num_cases_per_batch": images_per_batch,
            b"label_names": [name.encode() for name in CLASS_NAMES],
            b"num_vis": 3072,
        }
        _add_bytes(archive, f"{BATCHES_FOLDER}/{META_FILE}", pickle.dumps(meta, protocol=2))
        _add_bytes(archive, f"{BATCHES_FOLDER}/readme.html", b"<html>tiny CIFAR-10 made by cifarlib</html>")
    return path


def write_image_folder(root: str | os.PathLike, images_per_class: int = 3, *, suffix: str = ".png") -> Path:
    """Write ``train/<class>/*`` and ``test/<class>/*`` image files from synthetic data (tests, smoke runs)."""
    from PIL import Image

    root = Path(root)
    (x_train, y_train), (x_test, y_test) = synthetic_cifar10(
        NUM_CLASSES * images_per_class, NUM_CLASSES * images_per_class
    )
    for split, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:05d}{suffix}")
    return root


def _batch_dict(label: str, images: np.ndarray, labels: np.ndarray) -> dict:
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    return {
        b"batch_label": label.encode(),
        b"labels": [int(value) for value in labels],
        b"data": np.ascontiguousarray(planes, dtype=np.uint8),
        b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(len(images))],
    }


def _add_bytes(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(payload))
