"""Input pipelines that keep images as uint8 until they reach the model.

Under the TensorFlow backend the arrays become a ``tf.data`` pipeline: shuffled with a seed (a new order every
epoch), batched, labels one-hot where label smoothing needs it, and prefetched so the next batch is ready
while the accelerator works. Under JAX or PyTorch, where TensorFlow may be absent, the uint8 NumPy arrays go
to ``model.fit`` as they are and Keras batches and shuffles them, or, for training batches that must all be
full, a ``keras.utils.PyDataset`` does (Keras's own array batching always ends on the partial batch). Either
way the conversion to floats (and the augmentation) happens per batch inside the model, so no float copy of the
dataset is ever made.

Training drops the last partial batch (``drop_remainder``): with 45,000 images in batches of 64, every epoch
would otherwise end on an 8-image batch whose BatchNormalization statistics are far noisier than the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from cifarlib.data import NUM_CLASSES


@dataclass
class Inputs:
    """What to pass to ``model.fit``: ``data`` (a tf.data.Dataset or an array) and, for arrays, the rest."""

    data: object
    labels: np.ndarray | None = None
    batch_size: int | None = None
    shuffle: bool = False

    def as_validation(self):
        return self.data if self.labels is None else (self.data, self.labels)


def make_inputs(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    one_hot: bool = False,
    drop_remainder: bool = False,
    backend: str | None = None,
) -> Inputs:
    """The fastest input for the active backend (see the module docstring)."""
    if images.dtype != np.uint8:
        raise ValueError(f"images must stay uint8 until they reach the model, got {images.dtype}")
    backend = backend or keras.backend.backend()
    # One-hot rows take 40 bytes an image, next to 3,072 bytes of pixels, so they are made once, up front.
    targets = (
        keras.utils.to_categorical(labels, NUM_CLASSES).astype(np.float32)
        if one_hot
        else labels.astype(np.int32)
    )
    if drop_remainder and len(images) < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the {len(images)} images to batch")
    if backend != "tensorflow":
        if drop_remainder:
            return Inputs(FullBatches(images, targets, batch_size, shuffle=shuffle, seed=seed))
        return Inputs(images, targets if one_hot else labels, batch_size, shuffle)

    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, targets))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return Inputs(dataset.prefetch(tf.data.AUTOTUNE))


def full_batches(images: int, batch_size: int) -> int:
    """How many full batches ``images`` make: the training steps per epoch when the last partial one is dropped."""
    return images // batch_size


class FullBatches(keras.utils.PyDataset):
    """Full batches of uint8 arrays in a new seeded order every epoch, for backends without tf.data."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, batch_size: int, *, shuffle: bool, seed: int):
        super().__init__()
        self.images, self.targets, self.batch_size = images, targets, int(batch_size)
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = self._new_order()

    def _new_order(self) -> np.ndarray:
        return self._rng.permutation(len(self.images)) if self.shuffle else np.arange(len(self.images))

    def __len__(self) -> int:
        return full_batches(len(self.images), self.batch_size)

    def __getitem__(self, index: int):
        rows = np.sort(self._order[index * self.batch_size : (index + 1) * self.batch_size])
        return self.images[rows], self.targets[rows]

    def on_epoch_end(self) -> None:
        self._order = self._new_order()
