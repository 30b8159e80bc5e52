"""Data exploration for 02_explore_data: real shapes, and augmented samples that are what training sees."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from cifarlib import explore  # noqa: E402


def images_and_labels(count=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), np.arange(count) % 10


def test_descriptions_give_real_shapes_and_the_common_format():
    images, labels = images_and_labels()
    assert explore.describe_split(images, labels).startswith("images (12, 32, 32, 3) uint8, labels (12,)")
    assert explore.describe_format(images, labels) == (
        "each image 32x32 pixels, 3 channels, uint8 (0 to 255); labels integers 0..9, 10 classes"
    )


def test_flip_only_augmentation_gives_the_image_or_its_mirror():
    images, _ = images_and_labels()
    augmented = explore.augmented_samples(images, padding=0, copies=4, seed=1)
    assert augmented.shape == (4, *images.shape) and augmented.dtype == np.uint8
    mirrored = images[:, :, ::-1]
    for copy in augmented:
        same = np.all(copy == images, axis=(1, 2, 3))
        flipped = np.all(copy == mirrored, axis=(1, 2, 3))
        assert np.all(same | flipped)
    # Over 4 copies of 12 images, both outcomes occur.
    assert np.any(np.all(augmented == images, axis=(2, 3, 4))) and np.any(
        np.all(augmented == mirrored, axis=(2, 3, 4))
    )


def test_crops_shift_the_image_by_at_most_the_padding():
    images, _ = images_and_labels(4)
    augmented = explore.augmented_samples(images, padding=2, copies=3, seed=0)
    assert augmented.shape == (3, *images.shape)
    assert not np.array_equal(augmented, np.broadcast_to(images, augmented.shape))
    # The centre 28x28 of every augmented image appears in its original or its mirror, shifted by <= 2 pixels.
    for copy in augmented:
        for original, result in zip(images, copy):
            centre = result[2:30, 2:30]
            found = any(
                np.array_equal(candidate[2 + dy : 30 + dy, 2 + dx : 30 + dx], centre)
                for candidate in (original, original[:, ::-1])
                for dy in range(-2, 3)
                for dx in range(-2, 3)
            )
            assert found


def test_augmented_plot_titles_its_columns(tmp_path):
    images, labels = images_and_labels()
    figure = explore.plot_augmented(images, labels, padding=2, count=3, copies=2, save_to=tmp_path / "a.png")
    assert figure.get_suptitle() == "Training augmentation: random 2-pixel crops and mirror images"
    assert [axis.get_title() for axis in figure.axes[:3]] == ["original", "augmented 1", "augmented 2"]
    assert (tmp_path / "a.png").stat().st_size > 1000
