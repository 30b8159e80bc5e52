"""Data exploration for the ``02_explore_data`` notebook: shapes, class counts, a sample grid, what the training
augmentation does to an image, colour vs grayscale, pixel statistics. Each returns text, a table or a Matplotlib
figure (and saves it as PNG given ``save_to``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifarlib.data import CLASS_NAMES, class_counts, samples_per_class, to_grayscale
from cifarlib.results import finish_figure


def describe_split(images: np.ndarray, labels: np.ndarray) -> str:
    """The arrays of a split as they are: shapes, types and label range."""
    return (
        f"images {images.shape} {images.dtype}, labels {labels.shape} {labels.dtype} "
        f"from {labels.min()} to {labels.max()}"
    )


def describe_format(images: np.ndarray, labels: np.ndarray) -> str:
    """What every CIFAR-10 split has in common, whatever its size (so a notebook can check it in CI)."""
    height, width, channels = images.shape[1:]
    return (
        f"each image {height}x{width} pixels, {channels} channels, {images.dtype} (0 to 255); "
        f"labels integers {labels.min()}..{labels.max()}, {len(np.unique(labels))} classes"
    )


def class_count_table(y_train: np.ndarray, y_test: np.ndarray) -> pd.DataFrame:
    """Images per class in each split."""
    return pd.DataFrame({"train": class_counts(y_train), "test": class_counts(y_test)})


def pixel_statistics(images: np.ndarray) -> pd.DataFrame:
    """Mean, standard deviation, min and max of each colour channel, in [0, 1] units."""
    channels = images.reshape(-1, images.shape[-1]).astype(np.float32) / 255.0
    names = ["red", "green", "blue"] if images.shape[-1] == 3 else ["gray"]
    return pd.DataFrame(
        {"mean": channels.mean(0), "std": channels.std(0), "min": channels.min(0), "max": channels.max(0)},
        index=names,
    ).round(4)


def plot_sample_grid(
    images: np.ndarray, labels: np.ndarray, *, per_class: int = 10, seed: int = 0, save_to=None
):
    """A grid of random samples: one row per class, labelled with the class name."""
    import matplotlib.pyplot as plt

    grid = samples_per_class(labels, per_class, seed=seed)
    figure, axes = plt.subplots(
        len(CLASS_NAMES),
        per_class,
        figsize=(per_class * 0.9 + 1, len(CLASS_NAMES) * 0.95),
        layout="constrained",
    )
    for row, indices in enumerate(grid):
        for column, index in enumerate(indices):
            axis = axes[row, column]
            axis.imshow(images[index])
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(CLASS_NAMES[row], rotation=0, ha="right", va="center")
    figure.suptitle(f"{per_class} random training images per class")
    return finish_figure(figure, save_to)


def plot_color_and_gray(image: np.ndarray, *, title: str = "", save_to=None):
    """One image in colour and in grayscale (0.299 R + 0.587 G + 0.114 B)."""
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(5, 2.8), layout="constrained")
    left.imshow(image)
    left.set_title("colour")
    right.imshow(to_grayscale(image[None])[0, ..., 0], cmap="gray", vmin=0, vmax=255)
    right.set_title("grayscale")
    for axis in (left, right):
        axis.axis("off")
    figure.suptitle(title)
    return finish_figure(figure, save_to)


def crop_padding(padding: int | None = None) -> int:
    """``padding``, or where it is ``None`` the crop padding of the default recipe (``RunConfig()``)."""
    if padding is not None:
        return padding
    from cifarlib.config import RunConfig

    return RunConfig().crop_padding


def augmented_samples(images: np.ndarray, *, padding: int, copies: int = 3, seed: int = 0) -> np.ndarray:
    """``copies`` augmented versions of each image, as training sees them: shape ``(copies, N, H, W, C)``.

    The augmentation is the training model's own layer (``RandomCropFlip``: random crops from a reflect-padded
    image, and mirror images), called in training mode, so what is shown is what the network learns from.
    """
    from cifarlib.augment import RandomCropFlip

    layer = RandomCropFlip(padding, seed=seed)
    batch = images.astype(np.float32)
    return np.stack([np.asarray(layer(batch, training=True)).astype(images.dtype) for _ in range(copies)])


def plot_augmented(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    padding: int,
    count: int = 6,
    copies: int = 3,
    seed: int = 0,
    save_to=None,
):
    """Original training images (left column) next to ``copies`` random crops-and-flips of each."""
    import matplotlib.pyplot as plt

    chosen = np.random.default_rng(seed).choice(len(images), size=min(count, len(images)), replace=False)
    augmented = augmented_samples(images[chosen], padding=padding, copies=copies, seed=seed)
    figure, axes = plt.subplots(
        len(chosen),
        copies + 1,
        figsize=((copies + 1) * 1.3 + 1, len(chosen) * 1.3),
        layout="constrained",
        squeeze=False,
    )
    for row, index in enumerate(chosen):
        axes[row, 0].imshow(images[index].squeeze(), cmap="gray" if images.shape[-1] == 1 else None)
        axes[row, 0].set_ylabel(CLASS_NAMES[labels[index]], rotation=0, ha="right", va="center")
        for column in range(copies):
            axes[row, column + 1].imshow(augmented[column, row].squeeze())
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
    axes[0, 0].set_title("original", fontsize=9)
    for column in range(copies):
        axes[0, column + 1].set_title(f"augmented {column + 1}", fontsize=9)
    how = f"random {padding}-pixel crops and mirror images" if padding else "mirror images only (no crops)"
    figure.suptitle(f"Training augmentation: {how}")
    return finish_figure(figure, save_to)
