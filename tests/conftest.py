"""Shared fixtures: tiny data sets written in the real formats, and quiet TensorFlow logs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from cifarlib import testing  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Extracted archives go to a per-test cache, never to the user's ~/.cache."""
    monkeypatch.setenv("CIFARLIB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory) -> Path:
    """A cifar-10-python.tar.gz in the official layout: 5 x 20 training and 20 test images."""
    return testing.write_cifar10_archive(tmp_path_factory.mktemp("archive") / "cifar-10-python.tar.gz")


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory) -> Path:
    """The same format, large enough (500 training images) for a network to learn something."""
    return testing.write_cifar10_archive(
        tmp_path_factory.mktemp("small") / "cifar-10-python.tar.gz", images_per_batch=100, test_images=100
    )
