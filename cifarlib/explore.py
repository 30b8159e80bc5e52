"""Data exploration for the ``02_explore_data`` notebook: class counts, a sample grid, colour vs grayscale,
pixel statistics. Each returns a table or a Matplotlib figure (and saves it as PNG given ``save_to``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifarlib.data import CLASS_NAMES, class_counts, samples_per_class, to_grayscale
from cifarlib.results import finish_figure


def describe_split(images: np.ndarray, labels: np.ndarray) -> str:
    """Shape and value range of a split, independent of its size (so a notebook can check it in CI)."""
    return (
        f"images: (N, {', '.join(str(d) for d in images.shape[1:])}) {images.dtype}; "
        f"labels: (N,) integers {labels.min()}..{labels.max()}, {len(np.unique(labels))} classes"
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
        len(CLASS_NAMES), per_class, figsize=(per_class * 0.9, len(CLASS_NAMES) * 0.95)
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

    figure, (left, right) = plt.subplots(1, 2, figsize=(5, 2.8))
    left.imshow(image)
    left.set_title("colour")
    right.imshow(to_grayscale(image[None])[0, ..., 0], cmap="gray", vmin=0, vmax=255)
    right.set_title("grayscale")
    for axis in (left, right):
        axis.axis("off")
    figure.suptitle(title)
    return finish_figure(figure, save_to)
