"""CIFAR-10 from every place people keep it, read safely, plus the small array helpers around it.

Sources (``load_cifar10(source=...)``):

- ``"keras"``: the official archive, downloaded once through ``keras.utils.get_file`` and checked against its
  SHA-256, then read like a local archive (so the safe reader below is used for downloads too);
- a path to ``cifar-10-python.tar.gz`` (or any ``.tar.gz`` holding one of the layouts below);
- a path to an extracted ``cifar-10-batches-py`` folder;
- a folder of images laid out ``train/<class>/*`` and ``test/<class>/*`` (png or jpg);
- ``"synthetic"``: a small generated, learnable set for smoke runs and CI, announced as such.

Every loader returns ``((x_train, y_train), (x_test, y_test))`` with uint8 images ``(N, 32, 32, 3)`` and
integer labels ``(N,)``. Images stay uint8 here: scaling to [0, 1] happens per batch inside the model or the
input pipeline, so no float copy of the dataset is ever made.

The official archive is a tar of Python pickles. Unpickling runs code named in the file, so batches are read
with an unpickler that allows only what CIFAR-10 batches hold, and archives are extracted member by member with
checks against absolute paths, ``..`` and links that leave the target folder.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import logging
import lzma
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cifarlib.errors import DataError, UnsafeArchiveError

if TYPE_CHECKING:
    from cifarlib.config import RunConfig

log = logging.getLogger(__name__)

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (32, 32, 3)

# The official archive, as keras.datasets.cifar10 downloads it, with the SHA-256 Keras checks it against.
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_SHA256 = (
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"  # pragma: allowlist secret
)
BATCHES_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"

# Synthetic sets are for smoke runs; the cap (20 times CIFAR-10's training set, 3 GB of uint8 pixels) stops a
# mistyped size from allocating until the machine runs out of memory.
MAX_SYNTHETIC_IMAGES = 1_000_000
# Images are generated this many at a time, so the float arithmetic never holds more than one chunk.
SYNTHETIC_CHUNK = 10_000

# The most an archive may unpack to. CIFAR-10's 60,000 images are 184 MB of pixels; as the official pickles
# they unpack to 178 MB, and as one PNG or JPEG file each (a tar header and padding per file, about 4 KB) to
# about 250 MB. Twice that leaves room for other layouts, and stops a small "gzip bomb" from filling the disk.
MAX_UNPACKED_BYTES = 512 * 2**20
# How each compressed tar starts, for checking the whole compressed stream (its checksum) before extraction.
GZIP_MAGIC, BZIP2_MAGIC, XZ_MAGIC = b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# ITU-R BT.601 luma weights, as the reference notebook used them.
GRAYSCALE_WEIGHTS = (0.299, 0.587, 0.114)

Split = tuple[np.ndarray, np.ndarray]

# Sources named by a word rather than a path.
NAMED_SOURCES = ("keras", "synthetic")


# --------------------------------------------------------------------------------------------- public API


def absolute_source(source: str) -> str:
    """A data source as a run stores it: a named source as it is, a path made absolute (``~`` expanded).

    Stored absolute, a path names the same images from any working directory: ``x.tar.gz`` and ``./x.tar.gz`` are
    one setting, and a run resumed, evaluated or trained by a sweep's notebook (which runs in its own folder)
    finds the file it was given. Symbolic links are kept as typed (``os.path.abspath``, not ``resolve``), so a
    path through a mount point such as Colab's Drive stays the one the user knows.
    """
    if source in NAMED_SOURCES or not source:
        return source
    return os.path.abspath(os.path.expanduser(source))


def load_cifar10(
    source: str | os.PathLike = "keras",
    *,
    train_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    synthetic_size: tuple[int, int] = (2000, 500),
    seed: int = 0,
) -> tuple[Split, Split]:
    """Load CIFAR-10 as uint8 images ``(N, 32, 32, 3)`` and integer labels ``(N,)``.

    Args:
        source: ``"keras"``, ``"synthetic"``, or a path to an archive, a batches folder or an image folder.
        train_size: keep only the first ``train_size`` training images (quick runs); ``None`` keeps all.
        cache_dir: where archives are extracted and downloads kept (default ``$CIFARLIB_CACHE`` or
            ``~/.cache/cifarlib``).
        synthetic_size: (train, test) image counts for ``source="synthetic"``.
        seed: seed of the synthetic generator.
    """
    if train_size is not None and (not isinstance(train_size, int) or train_size <= 0):
        raise ValueError(f"train_size must be a positive integer or None, got {train_size!r}")
    source_text = os.fspath(source)
    if source_text == "synthetic":
        if train_size is not None and train_size > MAX_SYNTHETIC_IMAGES:
            raise DataError(
                f"train_size={train_size}: synthetic data is limited to {MAX_SYNTHETIC_IMAGES:,} images"
            )
        # Generated data has no fixed size: make exactly the training images asked for.
        (x_train, y_train), test = synthetic_cifar10(
            train_size or synthetic_size[0], synthetic_size[1], seed=seed
        )
    elif source_text == "keras":
        (x_train, y_train), test = _load_path(download_official(cache_dir), cache_dir)
    else:
        (x_train, y_train), test = _load_path(Path(source_text).expanduser(), cache_dir)
    if train_size is not None:
        if train_size > len(x_train):
            raise DataError(
                f"train_size={train_size} is larger than the {len(x_train)} training images of {source_text}"
            )
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    return (x_train, y_train), test


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder for downloads and extracted archives."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("CIFARLIB_CACHE", "~/.cache/cifarlib")).expanduser()


def synthetic_cifar10(n_train: int = 2000, n_test: int = 500, *, seed: int = 0) -> tuple[Split, Split]:
    """A small generated stand-in for CIFAR-10 that a network can learn in a few epochs.

    Each class has its own colour and stripe direction, blurred by noise; nothing here resembles real
    photographs, so numbers measured on it say only that the machinery works. A log line says so.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if value > MAX_SYNTHETIC_IMAGES:
            raise DataError(f"{name}={value}: synthetic data is limited to {MAX_SYNTHETIC_IMAGES:,} images")
    log.warning("Using SYNTHETIC data (generated images, not CIFAR-10): accuracy on it means nothing.")
    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 216, size=(NUM_CLASSES, 3))
    rows, cols = np.mgrid[0:32, 0:32]

    def make(n: int) -> Split:
        labels = np.arange(n) % NUM_CLASSES
        rng.shuffle(labels)
        images = np.empty((n, *IMAGE_SHAPE), np.uint8)
        # Chunk by chunk: the generator's draws continue from one chunk to the next, so the images are the
        # same as from one draw of the whole set, without its float64 copy.
        for start in range(0, n, SYNTHETIC_CHUNK):
            chunk = labels[start : start + SYNTHETIC_CHUNK]
            angles = chunk * np.pi / NUM_CLASSES
            stripes = np.sin(
                (rows[None] * np.cos(angles)[:, None, None] + cols[None] * np.sin(angles)[:, None, None])
                / 2.0
            )
            values = palette[chunk][:, None, None, :] + 40.0 * stripes[..., None]
            values += rng.normal(0.0, 25.0, size=values.shape)
            images[start : start + len(chunk)] = np.clip(values, 0, 255).astype(np.uint8)
        return images, labels.astype(np.int64)

    return make(n_train), make(n_test)


def safe_extract(archive_path: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a tar archive into ``target``, refusing members that would land or point outside it.

    Absolute names, ``..`` components, links leaving the target and device files raise
    ``UnsafeArchiveError`` before anything is written; a truncated or corrupt archive raises ``DataError``.
    The checks are Python's own ``filter="data"``, run over every member first (so a bad member late in the
    archive stops the extraction before its good members are written) and again by the extraction itself.
    """
    archive_path, target = Path(archive_path), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        check_compressed_stream(archive_path)
        with tarfile.open(archive_path, "r:*") as archive:
            members = archive.getmembers()
            unpacked = sum(member.size for member in members)
            if unpacked > MAX_UNPACKED_BYTES:
                raise DataError(_too_large(archive_path, unpacked, MAX_UNPACKED_BYTES))
            for member in members:
                # filter="data" would strip a leading "/" and extract the member anyway; an archive that
                # names absolute paths is not a dataset archive, so it is refused.
                if member.name.startswith(("/", "\\")) or os.path.isabs(member.name):
                    raise UnsafeArchiveError(
                        f"{archive_path}: refused member {member.name!r} (absolute path)"
                    )
                try:
                    tarfile.data_filter(member, str(root))
                except tarfile.FilterError as error:
                    raise UnsafeArchiveError(_refusal(archive_path, member, error)) from error
            archive.extractall(root, members=members, filter="data")
    except DataError:
        raise
    except tarfile.FilterError as error:
        raise UnsafeArchiveError(f"{archive_path}: refused unsafe member ({error})") from error
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as error:
        if isinstance(error, FileNotFoundError) and not archive_path.exists():
            raise DataError(f"{archive_path}: no such file (expected a .tar.gz archive)") from error
        if isinstance(error, tarfile.ReadError) and "could not be opened successfully" in str(error):
            raise DataError(
                f"{archive_path}: truncated or corrupt, or not a tar archive at all (expected cifar-10-python.tar.gz)"
            ) from error
        reason = " ".join(str(error).split())
        raise DataError(f"{archive_path}: the archive is truncated or corrupt ({reason})") from error
    return target


def check_compressed_stream(archive_path: str | os.PathLike, limit: int | None = None) -> int:
    """Decompress the whole archive once, without writing it, and return its unpacked size.

    tarfile stops reading at the tar's end marker, so the compressed stream's trailer (gzip's CRC-32 and length,
    bzip2's and xz's checks) is otherwise never read: a flipped bit would load altered pixels without an error.
    Reading to the end checks it. More than ``limit`` unpacked bytes (default ``MAX_UNPACKED_BYTES``) raise ``DataError`` before any is written.
    """
    path = Path(archive_path)
    limit = MAX_UNPACKED_BYTES if limit is None else limit
    with open(path, "rb") as handle:
        magic = handle.read(6)
    opener = next(
        (
            module.open
            for prefix, module in ((GZIP_MAGIC, gzip), (BZIP2_MAGIC, bz2), (XZ_MAGIC, lzma))
            if magic.startswith(prefix)
        ),
        None,
    )
    if opener is None:  # not compressed: tarfile reads every byte it extracts, and the file's size bounds it
        size = path.stat().st_size
        if size > limit:
            raise DataError(_too_large(path, size, limit))
        return size
    unpacked = 0
    with opener(path, "rb") as stream:
        while chunk := stream.read(2**20):
            unpacked += len(chunk)
            if unpacked > limit:
                raise DataError(_too_large(path, unpacked, limit))
    return unpacked


def _too_large(path: Path, size: int, limit: int) -> str:
    return (
        f"{path}: refused, it unpacks to more than {limit // 2**20} MiB (at least {size / 2**20:,.0f}"
        " MiB), more than any CIFAR-10 archive holds"
    )


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """``0.299 R + 0.587 G + 0.114 B`` as float32 of shape ``(N, 32, 32, 1)``, in the input's value range."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    weights = np.asarray(GRAYSCALE_WEIGHTS, dtype=np.float32)
    return (images.astype(np.float32) @ weights)[..., None]


def scale_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1], for exploration and the reference notebook's way of training."""
    return np.asarray(images, dtype=np.float32) / 255.0


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Integer labels ``(N,)`` to float32 one-hot rows ``(N, num_classes)``."""
    labels = np.asarray(labels)
    _check_labels(labels, "labels")
    from keras.utils import to_categorical

    return to_categorical(labels, num_classes).astype(np.float32)


def class_counts(labels: np.ndarray) -> dict[str, int]:
    """How many images of each class, by class name."""
    counts = np.bincount(np.asarray(labels), minlength=NUM_CLASSES)
    return {name: int(count) for name, count in zip(CLASS_NAMES, counts)}


def samples_per_class(labels: np.ndarray, per_class: int = 10, *, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` random images of each class, as a ``(10, per_class)`` grid (row = class)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    grid = []
    for label in range(NUM_CLASSES):
        candidates = np.flatnonzero(labels == label)
        if len(candidates) < per_class:
            raise ValueError(f"class {CLASS_NAMES[label]!r} has {len(candidates)} images, need {per_class}")
        grid.append(rng.choice(candidates, per_class, replace=False))
    return np.stack(grid)


def split_validation(
    images: np.ndarray, labels: np.ndarray, fraction: float, *, seed: int = 0
) -> tuple[Split, Split]:
    """A fixed, seeded, class-balanced validation slice of the training set.

    Unlike Keras's ``validation_split`` (the last images, whatever their classes), every class gives the same
    share, and the same seed always picks the same images, so runs compare fairly.
    Returns ``((x_train, y_train), (x_val, y_val))``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction!r}")
    labels = np.asarray(labels)
    if fraction == 0.0:
        return (images, labels), (images[:0], labels[:0])
    rng = np.random.default_rng(seed)
    validation = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = int(round(len(members) * fraction))
        validation.append(rng.choice(members, take, replace=False))
    val_index = np.sort(np.concatenate(validation))
    if len(val_index) == 0:
        raise ValueError(f"validation fraction {fraction} of {len(labels)} images selects no image")
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[val_index] = False
    return (images[train_mask], labels[train_mask]), (images[val_index], labels[val_index])


# ------------------------------------------------------------------------------------------ resolving paths


def load_run_splits(config: RunConfig) -> tuple[Split, Split, Split]:
    """The (train, validation, test) images and labels a run of ``config`` trains and is scored on.

    The source, the first ``train_size`` images, the seeded class-balanced validation split and the grayscale
    conversion all follow ``config``, so a finished run is evaluated on exactly the images it was split from.
    """
    train, test = load_cifar10(config.data, train_size=config.train_size, seed=config.seed)
    train, validation = split_validation(*train, config.validation_fraction, seed=config.seed)
    splits = [train, validation, test]
    if config.grayscale:
        # Rounded back to uint8 once, so the input pipeline still moves bytes, not floats.
        splits = [(np.round(to_grayscale(images)).astype(np.uint8), labels) for images, labels in splits]
    return splits[0], splits[1], splits[2]


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each channel of uint8 ``images``, in [0, 1] units (for normalisation).

    The standard deviation is kept at least 1e-3, so a constant channel cannot divide by zero.
    """
    mean = np.mean(images, axis=(0, 1, 2), dtype=np.float64) / 255.0
    std = np.std(images, axis=(0, 1, 2), dtype=np.float64) / 255.0
    return mean.tolist(), np.maximum(std, 1e-3).tolist()


def official_archive_cached(cache_dir=None) -> bool:
    """Whether ``download_official`` has the archive already (then it only checks its SHA-256)."""
    return (default_cache_dir(cache_dir) / "downloads" / "cifar-10-python.tar.gz").is_file()


def download_official(cache_dir=None) -> Path:
    """The official archive, downloaded once into the cache and checked against its SHA-256."""
    import keras

    target = default_cache_dir(cache_dir)
    target.mkdir(parents=True, exist_ok=True)
    try:
        return Path(
            keras.utils.get_file(
                fname="cifar-10-python.tar.gz",
                origin=OFFICIAL_URL,
                file_hash=OFFICIAL_SHA256,
                cache_dir=str(target),
                cache_subdir="downloads",
            )
        )
    except Exception as error:  # noqa: BLE001 - Keras raises several kinds for a failed download.
        raise DataError(
            f"could not download CIFAR-10 through Keras ({type(error).__name__}: {error}); with no network, "
            "pass a local cifar-10-python.tar.gz, an extracted cifar-10-batches-py folder, "
            "an image folder, or 'synthetic' as the data source"
        ) from error


def _load_path(path: Path, cache_dir) -> tuple[Split, Split]:
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder (expected 'keras', 'synthetic', a cifar-10-python.tar.gz, "
            "a cifar-10-batches-py folder, or a folder with train/<class>/ images)"
        )
    if path.is_file():
        extracted = _extract_cached(path, cache_dir)
        try:
            folder = _find_dataset_folder(extracted)
        except DataError:
            # An archive of something else: named as the user named it, and its extracted copy not kept.
            shutil.rmtree(extracted, ignore_errors=True)
            raise DataError(
                f"{path}: an archive without CIFAR-10 in it (expected {BATCHES_FOLDER}/data_batch_1 ... or "
                "train/<class>/*.png|jpg inside)"
            ) from None
    else:
        folder = _find_dataset_folder(path)
    if (folder / TRAIN_BATCHES[0]).exists() or folder.name == BATCHES_FOLDER:
        return _read_batches_folder(folder)
    return _read_image_folder(folder)


def _extract_cached(archive: Path, cache_dir) -> Path:
    """Extract an archive once into the cache; a half-finished extraction never becomes the cached copy."""
    stem = archive.name.split(".")[0]
    cache = default_cache_dir(cache_dir) / "extracted"
    final = cache / cache_folder_name(archive)
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=cache))
    try:
        safe_extract(archive, staging)
        try:
            os.replace(staging, final)
        except OSError:
            # Another process extracted the same archive meanwhile and renamed its copy in first: use that one.
            if not final.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def cache_folder_name(archive: Path) -> str:
    """The cache folder of an archive's extracted copy: its name, and a key that changes when the file does."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return f"{archive.name.split('.')[0]}-{key}"


def _find_dataset_folder(path: Path) -> Path:
    """The folder that holds the batches or the ``train/`` images, at ``path`` or up to two levels below."""
    for depth in range(3):
        for candidate in sorted(path.glob("/".join(["*"] * depth))) if depth else [path]:
            if not candidate.is_dir():
                continue
            if (candidate / TRAIN_BATCHES[0]).exists() or (candidate / "train").is_dir():
                return candidate
    if path.name == BATCHES_FOLDER:
        return path
    raise DataError(
        f"{path}: found neither CIFAR-10 batches ({BATCHES_FOLDER}/data_batch_1 ...) "
        "nor an image folder (train/<class>/*.png|jpg)"
    )


# --------------------------------------------------------------------------------------- the batch format


class _CifarUnpickler(pickle.Unpickler):
    """Allows only the globals a CIFAR-10 batch pickle refers to: numpy array reconstruction and bytes."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Protocol-2 pickles written by Python 3 encode bytes objects through _codecs.encode.
        ("_codecs", "encode"),
    }

    def __init__(self, file, source: Path):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise UnsafeArchiveError(
                f"{self.source}: refused to unpickle {module}.{name}; a CIFAR-10 batch holds only dicts, "
                "lists, bytes, numbers and numpy arrays"
            )
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def read_batch(path: str | os.PathLike) -> dict:
    """Read one pickled batch with the restricted unpickler; keys come back as ``str``."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            loaded = _CifarUnpickler(io.BufferedReader(file), path).load()
    except UnsafeArchiveError:
        raise
    except FileNotFoundError as error:
        raise DataError(f"{path}: missing CIFAR-10 batch file") from error
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataError(f"{path}: not a readable CIFAR-10 batch, truncated or corrupt ({error})") from error
    if not isinstance(loaded, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(loaded).__name__}")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in loaded.items()}


def _batch_arrays(path: Path) -> Split:
    batch = read_batch(path)
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{path}: a CIFAR-10 batch needs 'data' and 'labels', found {sorted(batch)}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{path}: 'data' must be an array of shape (N, 3072), found {shape}")
    if data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' must hold uint8 pixels, found {data.dtype}")
    labels = _integer_labels(batch["labels"], path)
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but {labels.size} labels")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _read_batches_folder(folder: Path) -> tuple[Split, Split]:
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: missing CIFAR-10 batch files {missing}")
    if (folder / META_FILE).is_file():
        names = read_batch(folder / META_FILE).get("label_names")
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
            raise DataError(
                f"{folder / META_FILE}: label_names must be a list of {NUM_CLASSES} class names, found {names!r:.80}"
            )
        try:
            decoded = tuple(n.decode() if isinstance(n, bytes) else n for n in names)
        except UnicodeDecodeError as error:
            raise DataError(f"{folder / META_FILE}: label_names are not text ({error})") from error
        if decoded != CLASS_NAMES:
            raise DataError(
                f"{folder / META_FILE}: label_names {decoded} differ from CIFAR-10's {CLASS_NAMES}"
            )
    train = [_batch_arrays(folder / name) for name in TRAIN_BATCHES]
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return (x_train, y_train), _batch_arrays(folder / TEST_BATCH)


def _refusal(archive_path: Path, member: tarfile.TarInfo, error: tarfile.FilterError) -> str:
    """One line saying which member ``filter="data"`` refused, and why, in words."""
    if isinstance(error, (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError)):
        return f"{archive_path}: refused link {member.name!r} -> {member.linkname!r} (points outside the target folder)"
    if isinstance(error, tarfile.AbsolutePathError):
        reason = "absolute path"
    elif isinstance(error, tarfile.OutsideDestinationError):
        reason = "'..' would write outside the target folder"
    elif isinstance(error, tarfile.SpecialFileError):
        reason = "not a file or folder"
    else:
        reason = str(error)
    return f"{archive_path}: refused member {member.name!r} ({reason})"


def _integer_labels(raw, path: Path) -> np.ndarray:
    """A batch's labels as int64, refusing anything but integers in 0..9 (no silent truncation of 9.9)."""
    expected = f"labels must be integers in 0..{NUM_CLASSES - 1}"
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind not in "iu" or raw.ndim != 1:
            raise DataError(f"{path}: {expected}, found an array of {raw.dtype} with shape {raw.shape}")
        values = raw.tolist()
    elif isinstance(raw, (list, tuple)):
        values = raw
    else:
        raise DataError(f"{path}: {expected}, found {type(raw).__name__}")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(f"{path}: {expected}, found {value!r:.40} at position {index}")
    # Compared as Python integers, so a huge value is reported rather than overflowing int64.
    if values and (min(values) < 0 or max(values) >= NUM_CLASSES):
        raise DataError(f"{path}: {expected}, found {min(values)}..{max(values)}")
    return np.asarray(values, dtype=np.int64)


def _check_labels(labels: np.ndarray, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(
            f"{where}: labels must be integers in 0..{NUM_CLASSES - 1}, found {labels.min()}..{labels.max()}"
        )


# ------------------------------------------------------------------------------------------ image folders


def _read_image_folder(root: Path) -> tuple[Split, Split]:
    train = _read_split(root / "train")
    if (root / "test").is_dir():
        test = _read_split(root / "test")
    else:
        log.warning(
            "%s has no test/ folder: the test split is empty; hold out a validation split instead", root
        )
        test = (np.zeros((0, *IMAGE_SHAPE), np.uint8), np.zeros((0,), np.int64))
    return train, test


def read_image(file: Path, *, resize: bool = False) -> tuple[np.ndarray, tuple[int, int] | None]:
    """One image file as a (32, 32, 3) uint8 array, and its (width, height) where it was resized (else None).

    An image of another size raises ``DataError``, unless ``resize`` (used to classify a user's own pictures),
    which scales the whole picture to 32x32 pixels.
    """
    from PIL import Image, UnidentifiedImageError

    resized = None
    try:
        with Image.open(file) as image:
            # The header's size is checked before any pixel is decoded, so a huge image costs nothing.
            width, height = image.size
            if (height, width) != IMAGE_SHAPE[:2]:
                if not resize:
                    raise DataError(f"{file}: image of shape ({height}, {width}, 3), expected {IMAGE_SHAPE}")
                resized = (width, height)
                image = image.convert("RGB").resize(IMAGE_SHAPE[1::-1], Image.Resampling.BOX)
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except DataError:
        raise  # already names the file (DataError is a ValueError too)
    except Image.DecompressionBombError as error:
        raise DataError(f"{file}: refused, the image claims too many pixels ({error})") from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        # Pillow raises ValueError for a text chunk that inflates past its limit, and SyntaxError for some
        # broken PNG chunks.
        raise DataError(f"{file}: not a readable image ({error})") from error
    if array.shape != IMAGE_SHAPE:
        raise DataError(f"{file}: image of shape {array.shape}, expected {IMAGE_SHAPE}")
    return array, resized


def image_files(paths) -> list[Path]:
    """The PNG and JPEG files among ``paths``: files as given, folders searched (sorted, subfolders included).

    A path that does not exist, or a folder without images, raises ``DataError`` naming it.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise DataError(f"{path}: no png or jpg images in this folder")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path}: no such image file or folder")
    return found


def _read_split(folder: Path) -> Split:
    if not folder.is_dir():
        raise DataError(f"{folder}: missing folder (expected {folder.name}/<class>/ with png or jpg images)")
    class_folders = sorted(p for p in folder.iterdir() if p.is_dir())
    unknown = [p.name for p in class_folders if p.name not in CLASS_NAMES]
    if unknown:
        raise DataError(f"{folder}: unknown class folders {unknown}; expected names from {list(CLASS_NAMES)}")
    if not class_folders:
        raise DataError(
            f"{folder}: no class folders (expected {folder.name}/<class>/ with png or jpg images)"
        )
    images, labels = [], []
    for class_folder in class_folders:
        files = sorted(p for p in class_folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{class_folder}: empty class folder (expected png or jpg images)")
        label = CLASS_NAMES.index(class_folder.name)
        for file in files:
            images.append(read_image(file)[0])
            labels.append(label)
    # Files are read class by class; a fixed permutation mixes the classes as in the official batches, so
    # that "the first N images" (train_size) is a fair sample rather than the first classes only.
    order = np.random.default_rng(0).permutation(len(images))
    return np.stack(images)[order], np.asarray(labels, dtype=np.int64)[order]
