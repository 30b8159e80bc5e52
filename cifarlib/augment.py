"""Data augmentation as a Keras layer, so it runs on the accelerator under every Keras backend.

``RandomCropFlip`` is the standard CIFAR recipe: pad by ``padding`` pixels (reflecting the border), crop a
random 32x32 window, and flip left-right with probability one half; each image of a batch gets its own
crop and flip. It is active only in training (``training=True``). Written with ``keras.ops`` and
``keras.random`` alone, it needs no tf.data and no TensorFlow.

``flip="alternate"`` is airbench's alternating flip: each image is mirrored on every other epoch, half of the
images on even epochs and the other half on odd ones, so that every pair of consecutive epochs shows each image
both ways, where random flips show about a quarter of the images the same way twice. airbench flips a random
half of its images once and then all of them on odd epochs; here the half an image belongs to is the parity of
its pixel sum, which needs no image index (the data is shuffled) and is the same on every epoch and after a
resume. ``FlipEpoch`` tells the layer which epoch it is.

Why not the stock layers: Keras 3's ``RandomCrop`` draws one crop offset per batch, so every image of a batch
moves the same way, which is much weaker augmentation than a crop per image; and it cuts a smaller window
out of the image instead of moving the image within a reflect-padded frame. ``RandomCropFlip`` stays out of saved models (``cifarlib.model.training_model`` puts it in front
of the network only for fitting), so a run's ``best.keras`` loads with plain Keras.
"""

from __future__ import annotations

import keras
from keras import ops

from cifarlib.config import FLIPS


@keras.saving.register_keras_serializable(package="cifarlib")
class RandomCropFlip(keras.layers.Layer):
    """Random translation by up to ``padding`` pixels (reflect-padded) and a horizontal flip.

    ``flip``: ``True`` or ``"random"`` (each image with probability one half), ``"alternate"`` (each image on
    every other epoch, see the module docstring), or ``False``.
    """

    def __init__(self, padding: int = 4, flip: bool | str = True, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        if flip not in (True, False, *FLIPS):
            raise ValueError(f"flip must be True, False or one of {FLIPS}, got {flip!r}")
        self.padding = padding
        self.flip = flip
        if flip == "alternate":
            # Which epoch it is, set by FlipEpoch; a variable, so compiled training steps read its current value.
            self.epoch = self.add_weight(
                shape=(), initializer="zeros", dtype="int32", trainable=False, name="epoch"
            )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Augmentation has no weights and changes nothing at inference.
        self.supports_masking = False

    def call(self, images, training=None):
        if not training:
            return images
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        if self.flip == "alternate":
            # Pixel values are whole numbers in [0, 255]: their float32 sum is exact, so its parity is stable.
            total = ops.sum(ops.cast(images, "float32"), axis=(1, 2, 3))
            half = ops.cast(ops.mod(ops.floor(total), 2.0), "int32")
            mirrored = ops.equal(ops.mod(half + self.epoch, 2), 1)[:, None, None, None]
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
        if self.flip == "alternate":
            images = ops.where(mirrored, ops.flip(images, axis=2), images)
        elif self.flip:
            coin = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            images = ops.where(coin < 0.5, ops.flip(images, axis=2), images)
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "flip": self.flip, "seed": self.seed}


class FlipEpoch(keras.callbacks.Callback):
    """Sets the epoch of every ``RandomCropFlip(flip="alternate")`` among the model's layers as each epoch begins.

    (``cifarlib.model.training_model`` puts the augmentation layer at the top level of the model it returns.)
    """

    def on_epoch_begin(self, epoch, logs=None):
        for layer in self.model.layers:
            if isinstance(layer, RandomCropFlip) and layer.flip == "alternate":
                layer.epoch.assign(epoch)
