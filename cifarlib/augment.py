"""Data augmentation as a Keras layer, so it runs on the accelerator under every Keras backend.

``RandomCropFlip`` is the standard CIFAR recipe: pad by ``padding`` pixels (reflecting the border), crop a
random 32x32 window, and flip left-right with probability one half; each image of a batch gets its own
crop and flip. It is active only in training (``training=True``). Written with ``keras.ops`` and
``keras.random`` alone, it needs no tf.data and no TensorFlow.

Why not the stock layers: Keras 3's ``RandomCrop`` draws one crop offset per batch, so every image of a batch
moves the same way, which is much weaker augmentation than a crop per image; and it cuts a smaller window
out of the image instead of moving the image within a reflect-padded frame. ``RandomCropFlip`` stays out of saved models (``cifarlib.model.training_model`` puts it in front
of the network only for fitting), so a run's ``best.keras`` loads with plain Keras.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cifarlib")
class RandomCropFlip(keras.layers.Layer):
    """Random translation by up to ``padding`` pixels (reflect-padded) and random horizontal flip."""

    def __init__(self, padding: int = 4, flip: bool = True, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        self.padding = padding
        self.flip = flip
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Augmentation has no weights and changes nothing at inference.
        self.supports_masking = False

    def call(self, images, training=None):
        if not training:
            return images
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        if self.padding:
            pad = self.padding
            padded = ops.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="reflect")
            offsets = keras.random.randint(
                (batch, 2), 0, 2 * pad + 1, dtype="int32", seed=self.seed_generator
            )
            rows = offsets[:, 0:1] + ops.arange(height, dtype="int32")[None, :]
            cols = offsets[:, 1:2] + ops.arange(width, dtype="int32")[None, :]
            # Gather the crop rows, then the crop columns, of each image separately.
            images = ops.take_along_axis(padded, rows[:, :, None, None], axis=1)
            images = ops.take_along_axis(images, cols[:, None, :, None], axis=2)
        if self.flip:
            coin = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            images = ops.where(coin < 0.5, ops.flip(images, axis=2), images)
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "flip": self.flip, "seed": self.seed}
