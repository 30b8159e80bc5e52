"""Bad data gives one line naming the file and what was expected, never a traceback or a silent change."""

import pickle

import numpy as np
import pytest
from PIL import Image

from cifarlib import data, testing
from cifarlib.errors import DataError


def batches_folder(tmp_path, labels_of_batch_2, meta=None):
    """An extracted batches folder whose data_batch_2 holds the given labels (two images per batch)."""
    folder = tmp_path / data.BATCHES_FOLDER
    folder.mkdir()
    for name in (*data.TRAIN_BATCHES, data.TEST_BATCH):
        labels = labels_of_batch_2 if name == "data_batch_2" else [0, 1]
        batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    if meta is not None:
        (folder / data.META_FILE).write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "labels, found",
    [
        ([0, 9.9], "found 9.9 at position 1"),
        ([None, 1], "found None at position 0"),
        ([0, 10**30], f"found 0..{10**30}"),
        ([b"cat", 1], "found b'cat' at position 0"),
        (["3", 1], "found '3' at position 0"),
        ([True, 1], "found True at position 0"),
        (np.array([0.0, 1.0]), "found an array of float64"),
        ("01", "found str"),
    ],
)
def test_labels_must_be_integers_in_range(tmp_path, labels, found):
    folder = batches_folder(tmp_path, labels)
    with pytest.raises(DataError) as error:
        data.load_cifar10(folder)
    message = one_line(error)
    assert message.startswith(f"{folder / 'data_batch_2'}: labels must be integers in 0..9")
    assert found in message


def test_integer_arrays_of_any_width_are_accepted(tmp_path):
    folder = batches_folder(tmp_path, np.array([3, 9], np.uint8))
    (x_train, y_train), _ = data.load_cifar10(folder)
    assert y_train.dtype == np.int64 and y_train[2:4].tolist() == [3, 9]


@pytest.mark.parametrize("names", [5, None, [b"airplane"] * 9 + [7], "airplane"])
def test_batches_meta_label_names_are_checked(tmp_path, names):
    folder = batches_folder(tmp_path, [0, 1], meta={b"label_names": names})
    with pytest.raises(DataError) as error:
        data.load_cifar10(folder)
    assert one_line(error).startswith(
        f"{folder / data.META_FILE}: label_names must be a list of 10 class names"
    )


def test_decompression_bomb_is_one_line(tmp_path):
    testing.write_image_folder(tmp_path, images_per_class=1)
    bomb = tmp_path / "train" / "cat" / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 1-bit pixels: 50 MB claimed, a few kB on disk
    with pytest.raises(DataError) as error:
        data.load_cifar10(tmp_path)
    message = one_line(error)
    assert message.startswith(f"{bomb}: ")
    assert "too many pixels" in message or "20000" in message


def test_image_of_the_wrong_size_is_refused_before_decoding(tmp_path, monkeypatch):
    testing.write_image_folder(tmp_path, images_per_class=1)
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(tmp_path / "train" / "dog" / "big.png")
    with pytest.raises(DataError, match=r"big.png: image of shape \(64, 48, 3\), expected \(32, 32, 3\)"):
        data.load_cifar10(tmp_path)


def test_file_that_is_not_an_archive_is_one_line(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError) as error:
        data.load_cifar10(path)
    assert (
        one_line(error)
        == f"{path}: truncated or corrupt, or not a tar archive at all (expected cifar-10-python.tar.gz)"
    )


def test_train_size_above_the_source_names_the_source(tiny_archive):
    with pytest.raises(
        DataError, match=f"train_size=101 is larger than the 100 training images of {tiny_archive}"
    ):
        data.load_cifar10(tiny_archive, train_size=101)


def test_synthetic_sizes_are_bounded():
    with pytest.raises(
        DataError, match="train_size=999999999: synthetic data is limited to 1,000,000 images"
    ):
        data.load_cifar10("synthetic", train_size=999_999_999)
    with pytest.raises(DataError, match="n_test=2000000: synthetic data is limited"):
        data.synthetic_cifar10(10, 2_000_000)


def test_synthetic_images_do_not_depend_on_the_chunk_size(monkeypatch):
    (x_whole, y_whole), _ = data.synthetic_cifar10(50, 0, seed=3)
    monkeypatch.setattr(data, "SYNTHETIC_CHUNK", 7)
    (x_chunked, y_chunked), _ = data.synthetic_cifar10(50, 0, seed=3)
    np.testing.assert_array_equal(x_whole, x_chunked)
    np.testing.assert_array_equal(y_whole, y_chunked)
