"""Every loader on data written in the real formats, and every kind of bad input the issue names."""

import io
import os
import pickle
import tarfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from cifarlib import data, testing
from cifarlib.errors import DataError, UnsafeArchiveError


def test_archive_loads_in_official_shapes(tiny_archive):
    (x_train, y_train), (x_test, y_test) = data.load_cifar10(tiny_archive)
    assert x_train.shape == (100, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (100,) and x_test.shape == (20, 32, 32, 3) and y_test.shape == (20,)
    assert set(np.unique(y_train)) <= set(range(10))
    # The archive holds exactly the synthetic images it was written from, so the plane layout round-trips.
    (expected_x, expected_y), (expected_test_x, _) = data.synthetic_cifar10(100, 20, seed=0)
    np.testing.assert_array_equal(x_train, expected_x)
    np.testing.assert_array_equal(y_train, expected_y)
    np.testing.assert_array_equal(x_test, expected_test_x)


def test_batch_layout_is_red_then_green_then_blue_planes(tmp_path):
    folder = tmp_path / data.BATCHES_FOLDER
    folder.mkdir()
    flat = np.zeros((2, 3072), np.uint8)
    flat[:, :1024] = 200  # the red plane
    flat[:, 2048:] = 7  # the blue plane
    for name in (*data.TRAIN_BATCHES, data.TEST_BATCH):
        (folder / name).write_bytes(pickle.dumps({b"data": flat, b"labels": [3, 9]}, protocol=2))
    (x_train, y_train), _ = data.load_cifar10(folder)
    assert (x_train[..., 0] == 200).all() and (x_train[..., 1] == 0).all() and (x_train[..., 2] == 7).all()
    assert list(y_train[:2]) == [3, 9]


def test_extracted_folder_and_archive_agree(tiny_archive, tmp_path):
    data.safe_extract(tiny_archive, tmp_path / "out")
    folder = tmp_path / "out" / data.BATCHES_FOLDER
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*data.TRAIN_BATCHES, data.TEST_BATCH, data.META_FILE, "readme.html"]
    )
    from_folder = data.load_cifar10(folder)
    from_archive = data.load_cifar10(tiny_archive)
    np.testing.assert_array_equal(from_folder[0][0], from_archive[0][0])
    np.testing.assert_array_equal(from_folder[1][1], from_archive[1][1])


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_image_folder(tmp_path, suffix):
    testing.write_image_folder(tmp_path, images_per_class=2, suffix=suffix)
    (x_train, y_train), (x_test, y_test) = data.load_cifar10(tmp_path)
    assert x_train.shape == (20, 32, 32, 3) and x_test.shape == (20, 32, 32, 3)
    assert data.class_counts(y_train) == {name: 2 for name in data.CLASS_NAMES}


def test_image_folder_without_test_split(tmp_path):
    testing.write_image_folder(tmp_path, images_per_class=1)
    for file in (tmp_path / "test").rglob("*.png"):
        file.unlink()
    for folder in sorted((tmp_path / "test").iterdir()):
        folder.rmdir()
    (tmp_path / "test").rmdir()
    (x_train, _), (x_test, y_test) = data.load_cifar10(tmp_path)
    assert x_train.shape == (10, 32, 32, 3) and x_test.shape == (0, 32, 32, 3) and y_test.shape == (0,)


def test_synthetic_and_train_size():
    (x_train, y_train), (x_test, _) = data.load_cifar10("synthetic", train_size=50)
    assert x_train.shape == (50, 32, 32, 3) and y_train.shape == (50,) and x_test.shape == (500, 32, 32, 3)
    with pytest.raises(ValueError, match="train_size"):
        data.load_cifar10("synthetic", train_size=0)


def test_train_size_larger_than_the_data(tiny_archive):
    with pytest.raises(ValueError, match="train_size=1000 is larger than the 100 training images"):
        data.load_cifar10(tiny_archive, train_size=1000)


def test_keras_source_without_network_says_what_to_do(monkeypatch):
    import keras

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(DataError, match="pass a local cifar-10-python.tar.gz"):
        data.load_cifar10("keras")


def test_keras_source_verifies_the_official_hash(monkeypatch, tiny_archive):
    import keras

    seen = {}

    def fake_get_file(**kwargs):
        seen.update(kwargs)
        return str(tiny_archive)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    (x_train, _), _ = data.load_cifar10("keras")
    assert x_train.shape == (100, 32, 32, 3)
    assert seen["file_hash"] == data.OFFICIAL_SHA256 and seen["origin"] == data.OFFICIAL_URL


# ------------------------------------------------------------------------------------------- bad input


def test_missing_path():
    with pytest.raises(DataError, match="no-such-file.tar.gz: no such file"):
        data.load_cifar10("no-such-file.tar.gz")


def test_truncated_archive(tiny_archive, tmp_path):
    truncated = tmp_path / "cifar-10-python.tar.gz"
    truncated.write_bytes(tiny_archive.read_bytes()[: tiny_archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as error:
        data.load_cifar10(truncated)
    assert str(truncated) in str(error.value)
    # A failed extraction leaves no half-extracted copy behind to be mistaken for a good one.
    assert not list((Path(os.environ["CIFARLIB_CACHE"]) / "extracted").glob("cifar-10-*"))


def test_corrupt_archive(tmp_path):
    corrupt = tmp_path / "cifar-10-python.tar.gz"
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(DataError, match="truncated or corrupt"):
        data.load_cifar10(corrupt)


def test_truncated_batch_file(tiny_archive, tmp_path):
    data.safe_extract(tiny_archive, tmp_path)
    batch = tmp_path / data.BATCHES_FOLDER / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3: not a readable CIFAR-10 batch"):
        data.load_cifar10(tmp_path / data.BATCHES_FOLDER)


def test_missing_batch_file(tiny_archive, tmp_path):
    data.safe_extract(tiny_archive, tmp_path)
    (tmp_path / data.BATCHES_FOLDER / "test_batch").unlink()
    with pytest.raises(DataError, match=r"missing CIFAR-10 batch files \['test_batch'\]"):
        data.load_cifar10(tmp_path / data.BATCHES_FOLDER)


class _RunsCode:
    """A pickle payload that would create a file when unpickled by an unrestricted loader."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_runs_nothing(tiny_archive, tmp_path):
    data.safe_extract(tiny_archive, tmp_path)
    marker = tmp_path / "pwned"
    batch = tmp_path / data.BATCHES_FOLDER / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": _RunsCode(marker), b"labels": []}, protocol=2))
    with pytest.raises(UnsafeArchiveError, match=r"refused to unpickle (posix|os)\.system"):
        data.load_cifar10(tmp_path / data.BATCHES_FOLDER)
    assert not marker.exists()


def _tar_with(path: Path, member: tarfile.TarInfo, payload: bytes = b"evil") -> Path:
    with tarfile.open(path, "w:gz") as archive:
        good = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        good.size = 2
        archive.addfile(good, io.BytesIO(b"ok"))
        if member.isfile():
            member.size = len(payload)
            archive.addfile(member, io.BytesIO(payload))
        else:
            archive.addfile(member)
    return path


@pytest.mark.parametrize("name", ["../escaped.txt", "cifar-10-batches-py/../../escaped.txt"])
def test_path_traversal_archive_writes_nothing_outside(tmp_path, name):
    archive = _tar_with(tmp_path / "evil.tar.gz", tarfile.TarInfo(name))
    target = tmp_path / "deep" / "target"
    with pytest.raises(UnsafeArchiveError, match="refused member"):
        data.safe_extract(archive, target)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (target / "cifar-10-batches-py").exists()  # refused before anything was written


def test_absolute_path_archive(tmp_path):
    archive = _tar_with(tmp_path / "evil.tar.gz", tarfile.TarInfo(str(tmp_path / "absolute.txt")))
    with pytest.raises(UnsafeArchiveError, match="absolute path"):
        data.safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "absolute.txt").exists()


def test_link_out_of_target_is_refused(tmp_path):
    link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../../../etc/passwd"
    archive = _tar_with(tmp_path / "evil.tar.gz", link)
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        data.load_cifar10(archive)


def test_labels_outside_range(tmp_path):
    folder = tmp_path / data.BATCHES_FOLDER
    folder.mkdir()
    for name in (*data.TRAIN_BATCHES, data.TEST_BATCH):
        batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10 if name == "data_batch_2" else 1]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2: labels must be integers in 0..9, found 0..10"):
        data.load_cifar10(folder)


def test_wrong_batch_shape(tmp_path):
    folder = tmp_path / data.BATCHES_FOLDER
    folder.mkdir()
    for name in (*data.TRAIN_BATCHES, data.TEST_BATCH):
        batch = {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"shape \(N, 3072\), found \(2, 1024\)"):
        data.load_cifar10(folder)


def test_wrong_image_shape_in_folder(tmp_path):
    testing.write_image_folder(tmp_path, images_per_class=1)
    odd = tmp_path / "train" / "cat" / "odd.png"
    Image.fromarray(np.zeros((33, 32, 3), np.uint8)).save(odd)
    with pytest.raises(DataError, match=r"odd.png: image of shape \(33, 32, 3\), expected \(32, 32, 3\)"):
        data.load_cifar10(tmp_path)


def test_unreadable_image_in_folder(tmp_path):
    testing.write_image_folder(tmp_path, images_per_class=1)
    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        data.load_cifar10(tmp_path)


def test_empty_and_unknown_class_folders(tmp_path):
    testing.write_image_folder(tmp_path, images_per_class=1)
    (tmp_path / "train" / "unicorn").mkdir()
    with pytest.raises(DataError, match=r"unknown class folders \['unicorn'\]"):
        data.load_cifar10(tmp_path)
    (tmp_path / "train" / "unicorn").rmdir()
    for file in (tmp_path / "train" / "frog").iterdir():
        file.unlink()
    with pytest.raises(DataError, match="frog: empty class folder"):
        data.load_cifar10(tmp_path)


def test_folder_that_is_not_cifar(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(DataError, match="found neither CIFAR-10 batches"):
        data.load_cifar10(tmp_path)


def test_an_archive_without_cifar_names_the_users_file_and_keeps_no_copy(tmp_path, monkeypatch):
    import tarfile

    cache = tmp_path / "cache"
    monkeypatch.setenv("CIFARLIB_CACHE", str(cache))
    (tmp_path / "notes.txt").write_text("not images")
    archive = tmp_path / "holiday-photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "notes.txt", arcname="notes.txt")
    with pytest.raises(DataError) as raised:
        data.load_cifar10(archive)
    message = str(raised.value)
    assert message.startswith(f"{archive}: an archive without CIFAR-10 in it") and str(cache) not in message
    assert not [p for p in (cache / "extracted").iterdir()], "no extracted copy left behind"


# ------------------------------------------------------------------------------------- array helpers


def test_grayscale_formula():
    images = np.zeros((1, 32, 32, 3), np.uint8)
    images[0, 0, 0] = (100, 50, 200)
    gray = data.to_grayscale(images)
    assert gray.shape == (1, 32, 32, 1) and gray.dtype == np.float32
    assert gray[0, 0, 0, 0] == pytest.approx(0.299 * 100 + 0.587 * 50 + 0.114 * 200)
    scaled = data.to_grayscale(data.scale_pixels(images))
    assert scaled[0, 0, 0, 0] == pytest.approx((0.299 * 100 + 0.587 * 50 + 0.114 * 200) / 255, rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        data.to_grayscale(np.zeros((32, 32, 3)))


def test_scaling_and_one_hot():
    assert data.scale_pixels(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    np.testing.assert_array_equal(data.one_hot(np.array([2, 0]))[:, :3], [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(DataError, match="labels must be integers in 0..9"):
        data.one_hot(np.array([11]))


def test_sample_grid_has_one_row_per_class():
    _, y = data.synthetic_cifar10(300, 0)[0]
    grid = data.samples_per_class(y, 10, seed=1)
    assert grid.shape == (10, 10)
    for label, row in enumerate(grid):
        assert (y[row] == label).all() and len(set(row)) == 10


def test_validation_split_is_balanced_and_reproducible():
    x, y = data.synthetic_cifar10(1000, 0)[0]
    (x_train, y_train), (x_val, y_val) = data.split_validation(x, y, 0.1, seed=3)
    assert len(x_val) == 100 and len(x_train) == 900
    assert set(data.class_counts(y_val).values()) == {10}
    _, (x_again, y_again) = data.split_validation(x, y, 0.1, seed=3)
    np.testing.assert_array_equal(x_again, x_val)
    np.testing.assert_array_equal(y_again, y_val)
    _, (x_other, _) = data.split_validation(x, y, 0.1, seed=4)
    assert not np.array_equal(x_other, x_val)
    with pytest.raises(ValueError, match="validation fraction"):
        data.split_validation(x, y, 1.5)


def test_meta_with_wrong_class_names(tiny_archive, tmp_path):
    data.safe_extract(tiny_archive, tmp_path)
    meta = tmp_path / data.BATCHES_FOLDER / data.META_FILE
    meta.write_bytes(pickle.dumps({b"label_names": [b"a"] * 10}, protocol=2))
    with pytest.raises(DataError, match="label_names"):
        data.load_cifar10(tmp_path / data.BATCHES_FOLDER)


def test_safe_extract_missing_archive(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        data.safe_extract(tmp_path / "absent.tar.gz", tmp_path / "out")


def test_download_can_be_interrupted():
    # The download wrapper must not swallow KeyboardInterrupt (a user stopping a slow download).
    import keras

    with mock.patch.object(keras.utils, "get_file", side_effect=KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            data.load_cifar10("keras")


def test_real_training_images_load(tmp_path):
    """The real CIFAR-10 training images ($CIFARLIB_ACCURACY_DATA, else kept beside a development checkout; never
    committed), where present."""
    from cifarlib.bench_accuracy import default_data

    images = Path(
        default_data() or Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg-train.tar.gz"
    )
    if not images.exists():
        pytest.skip(f"{images} is absent: the real images are only on the development machines")
    (x_train, y_train), (x_test, _) = data.load_cifar10(images)
    assert (
        x_train.shape == (50_000, 32, 32, 3) and x_train.dtype == np.uint8 and x_test.shape == (0, 32, 32, 3)
    )
    assert set(data.class_counts(y_train).values()) == {5000}
    # The class-sorted files are mixed, so the first 1,000 images hold every class.
    assert len(np.unique(y_train[:1000])) == 10


def test_two_extractions_of_one_archive_at_once_both_succeed(tiny_archive, monkeypatch):
    real_extract = data.safe_extract
    final = Path(os.environ["CIFARLIB_CACHE"]) / "extracted" / data.cache_folder_name(tiny_archive)

    def extract_while_another_process_finishes(archive, target):
        real_extract(archive, target)
        # Another process extracting the same archive renames its finished copy into place first, so this one's
        # rename meets a full folder (ENOTEMPTY).
        other = Path(target).parent / ".other-process"
        real_extract(archive, other)
        os.replace(other, final)

    monkeypatch.setattr(data, "safe_extract", extract_while_another_process_finishes)
    (x_train, _), _ = data.load_cifar10(tiny_archive)
    assert len(x_train) == 100
    assert [p.name for p in final.parent.iterdir()] == [final.name]


def test_gzip_checksum_is_checked(tiny_archive, tmp_path):
    damaged = tmp_path / "cifar-10-python.tar.gz"
    payload = bytearray(tiny_archive.read_bytes())
    payload[-8:] = bytes(8)  # the gzip trailer: CRC-32 and length of the unpacked stream
    damaged.write_bytes(bytes(payload))
    with pytest.raises(DataError, match="truncated or corrupt.*CRC check failed") as error:
        data.load_cifar10(damaged)
    assert str(damaged) in str(error.value)


def test_gzip_bomb_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_UNPACKED_BYTES", 2**20)
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as archive:
        member = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        member.size = 3 * 2**20
        archive.addfile(member, io.BytesIO(bytes(member.size)))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb.tar.gz: refused, it unpacks to more than 1 MiB"):
        data.load_cifar10(bomb)
    extracted = Path(os.environ["CIFARLIB_CACHE"]) / "extracted"
    assert not extracted.exists() or not any(extracted.rglob("data_batch_1"))


def test_png_whose_text_chunk_inflates_past_the_limit_is_named(tmp_path):
    from PIL import PngImagePlugin

    testing.write_image_folder(tmp_path, images_per_class=1)
    text = PngImagePlugin.PngInfo()
    text.add_text("comment", "a" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), zip=True)
    bomb = tmp_path / "train" / "cat" / "bomb.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bomb, pnginfo=text)
    with pytest.raises(DataError, match="bomb.png: not a readable image"):
        data.load_cifar10(tmp_path)
