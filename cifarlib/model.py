"""The Inception-v1 style network of the reference notebook, in backend-agnostic Keras 3.

``inception_module`` is one GoogLeNet block: four branches on the same input (1x1; 1x1 reduce then 3x3;
1x1 reduce then 5x5; 3x3 max-pool then 1x1 projection), concatenated on channels, then optional dropout and
batch normalisation and a 2x2 max-pool (``Architecture.pool_after`` says which modules, and whether the stem,
are followed by one). ``dense_block`` is the reference's head unit (Dense, Dropout,
BatchNormalization). ``build_inception`` stacks the modules and the head of an explicit ``Architecture``
(``cifarlib.config`` holds the presets' architectures; this module knows no recipe); ``build_model(config)``
builds the network a ``RunConfig`` trains. ``build_inception("reference")`` is exactly the reference network,
with clean layer names instead of the reference's names with spaces, slashes and colons.

The network takes raw pixel values in [0, 255] (uint8 batches are fine) and scales them itself, so a saved
``best.keras`` needs no separate preprocessing, and the softmax runs in float32 under mixed precision.
Training-only augmentation is not part of the network: ``training_model`` wraps the network in a model that
augments first, and only the network is saved, so ``best.keras`` loads with plain Keras.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from cifarlib.augment import RandomCropFlip
from cifarlib.config import BATCH_NORM_PLACES, Architecture, RunConfig, pool_plan, preset_architecture
from cifarlib.data import IMAGE_SHAPE, NUM_CLASSES

# The reference's L2 factor on every conv kernel and hidden dense kernel (the building blocks' default).
REFERENCE_L2 = Architecture().l2
# Mean and standard deviation of each colour channel over the 50,000 CIFAR-10 training images, in [0, 1]
# units; used when no statistics of the actual training data are passed.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# The same for the grayscale images (0.299 R + 0.587 G + 0.114 B).
CIFAR10_GRAY_MEAN = (0.4809,)
CIFAR10_GRAY_STD = (0.2390,)
# The whitening stem, as airbench builds it: 2x2 patches, and eps added to each eigenvalue so that directions of
# almost no variance are not blown up; both values are airbench94's.
WHITENING_PATCH = 2
WHITENING_EPS = 5e-4
WHITENING_LAYER = "whiten"
# How many training images the patch covariance is estimated from (airbench94 uses 5,000 too).
WHITENING_IMAGES = 5000


def inception_module(
    inputs,
    filters: Sequence[int],
    *,
    name: str,
    l2: float = REFERENCE_L2,
    batch_norm: str = "concat",
    dropout: float = 0.0,
    pool: bool = True,
    batch_norm_momentum: float = 0.99,
    batch_norm_scale: bool = True,
    activation: str = "relu",
):
    """One Inception block on ``inputs``; ``filters`` is ``[1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj]``.

    ``batch_norm="concat"`` normalises after the concatenation (the reference); ``"branch"`` puts
    BatchNormalization between every convolution and its ReLU; ``"none"`` uses neither. ``batch_norm_momentum``
    and ``batch_norm_scale`` are passed to every BatchNormalization (Keras's defaults: 0.99, with a scale);
    ``activation`` follows every convolution.
    """
    if len(filters) != 6 or any(int(f) <= 0 for f in filters):
        raise ValueError(
            f"filters must be six positive counts [1x1, 3x3r, 3x3, 5x5r, 5x5, proj], got {filters}"
        )
    if batch_norm not in BATCH_NORM_PLACES:
        raise ValueError(f"batch_norm must be one of {BATCH_NORM_PLACES}, got {batch_norm!r}")
    f1, f3r, f3, f5r, f5, fpool = (int(f) for f in filters)

    norm = dict(momentum=batch_norm_momentum, scale=batch_norm_scale)

    def conv(x, count, kernel, suffix):
        return _conv_unit(
            x,
            count,
            kernel,
            f"{name}_{suffix}",
            l2=l2,
            branch_bn=batch_norm == "branch",
            norm=norm,
            activation=activation,
        )

    branch_1x1 = conv(inputs, f1, 1, "1x1")
    branch_3x3 = conv(conv(inputs, f3r, 1, "3x3_reduce"), f3, 3, "3x3")
    branch_5x5 = conv(conv(inputs, f5r, 1, "5x5_reduce"), f5, 5, "5x5")
    pooled = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(inputs)
    branch_pool = conv(pooled, fpool, 1, "pool_proj")
    x = layers.Concatenate(axis=-1, name=f"{name}_concat")([branch_1x1, branch_3x3, branch_5x5, branch_pool])
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    if batch_norm == "concat":
        x = layers.BatchNormalization(name=f"{name}_bn", **norm)(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_downsample")(x)
    return x


def dense_block(
    inputs,
    units: int,
    *,
    name: str,
    l2: float = REFERENCE_L2,
    dropout: float = 0.5,
    batch_norm: bool = True,
    batch_norm_momentum: float = 0.99,
    batch_norm_scale: bool = True,
    activation: str = "relu",
):
    """The reference head unit: Dense (ReLU, L2) then Dropout then BatchNormalization."""
    if int(units) <= 0:
        raise ValueError(f"units must be positive, got {units}")
    x = layers.Dense(int(units), activation=activation, kernel_regularizer=_l2(l2), name=name)(inputs)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    if batch_norm:
        x = layers.BatchNormalization(
            name=f"{name}_bn", momentum=batch_norm_momentum, scale=batch_norm_scale
        )(x)
    return x


def build_inception(
    architecture: Architecture | str = "reference",
    *,
    width: float = 1.0,
    input_shape: tuple[int, int, int] = IMAGE_SHAPE,
    num_classes: int = NUM_CLASSES,
    channel_mean: Sequence[float] | None = None,
    channel_std: Sequence[float] | None = None,
    name: str | None = None,
    stem_images: np.ndarray | None = None,
    **changes,
) -> keras.Model:
    """Build the network of ``architecture``, without its training-only augmentation.

    Args:
        architecture: an ``Architecture``, or the name of a preset (``"reference"`` or ``"tuned"``) for its one.
        width: scales every filter and unit count (``0.25`` for fast tests and CPU runs); ``1.0`` keeps the
            architecture's sizes, so ``build_inception("reference")`` is exactly the reference network.
        input_shape: ``(32, 32, 3)``, or ``(32, 32, 1)`` for grayscale.
        channel_mean, channel_std: per-channel statistics in [0, 1] units for ``per_channel``
            normalisation (default: CIFAR-10's).
        name: the model's name (default: ``inception_<preset>`` for a preset name, else ``inception``).
        stem_images: training images (N, H, W, C) in [0, 255] whose patches the ``"whiten"`` stem whitens;
            without them that stem keeps its initial weights, which gives the right shapes and counts only.
        **changes: fields of ``Architecture`` to change (``batch_norm="branch"``, ``head_dropout=0.2``, ...).
    """
    if isinstance(architecture, str):
        name = name or f"inception_{architecture}"
        try:
            architecture = preset_architecture(architecture)
        except ValueError as error:
            raise ValueError(str(error)) from None
    unknown = set(changes) - set(Architecture.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown architecture options {sorted(unknown)}")
    if changes:
        architecture = Architecture(**{**architecture.__dict__, **changes})
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < float("inf"):
        raise ValueError(f"width must be a positive number, got {width!r}")
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ValueError(f"input_shape must be (height, width, 1 or 3), got {input_shape}")

    def scaled(count: int) -> int:
        return max(1, round(count * width))

    inputs = keras.Input(shape=input_shape, name="images")
    normalization = _normalization_layer(
        architecture.normalization, input_shape[-1], channel_mean, channel_std
    )
    x = normalization(inputs)
    if architecture.stem == "whiten":
        x = _whitening_stem(x, normalization, stem_images, bias=architecture.whitening_bias_epochs > 0)
    pool_after = pool_plan(architecture)
    if 0 in pool_after:
        x = layers.MaxPooling2D(2, name="stem_downsample")(x)
    norm = dict(
        batch_norm_momentum=architecture.batch_norm_momentum,
        batch_norm_scale=architecture.batch_norm_scale,
        activation=architecture.activation,
    )
    for index, filters in enumerate(architecture.modules, start=1):
        x = inception_module(
            x,
            [scaled(f) for f in filters],
            name=f"inception_{index}",
            l2=architecture.l2,
            batch_norm=architecture.batch_norm,
            dropout=architecture.module_dropout,
            pool=index in pool_after,
            **norm,
        )
    if architecture.head_pool == "global":
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    elif architecture.head_pool == "global_max":  # airbench's head: the largest response of each channel
        x = layers.GlobalMaxPooling2D(name="global_pool")(x)
    else:
        x = layers.AveragePooling2D(2, name="average_pool")(x)
        x = layers.Flatten(name="flatten")(x)
    for index, units in enumerate(architecture.head_units, start=1):
        x = dense_block(
            x,
            scaled(units),
            name=f"dense_{index}",
            l2=architecture.l2,
            dropout=architecture.head_dropout,
            **norm,
        )
    # The class probabilities stay float32 under mixed precision, so the loss is computed in float32.
    if architecture.logit_temperature == 1.0:
        outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    else:
        # airbench scales its logits down (by 1/9): small logits keep the softmax from saturating early.
        logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
        logits = layers.Rescaling(1.0 / architecture.logit_temperature, dtype="float32", name="temperature")(
            logits
        )
        outputs = layers.Activation("softmax", dtype="float32", name="predictions")(logits)
    network = keras.Model(inputs, outputs, name=name or "inception")
    if architecture.identity_init:
        identity_initialize(network)
    return network


def build_model(
    config: RunConfig,
    *,
    input_shape: tuple[int, int, int] | None = None,
    channel_mean: Sequence[float] | None = None,
    channel_std: Sequence[float] | None = None,
    stem_images: np.ndarray | None = None,
) -> keras.Model:
    """The network ``train`` trains for ``config``: its architecture, width and channels (grayscale or colour).

    ``channel_mean`` / ``channel_std`` are the training split's statistics (``cifarlib.data.channel_statistics``);
    without them, CIFAR-10's are used, which changes no shape or parameter count. ``stem_images`` are the
    training images a ``"whiten"`` stem is fitted to (see ``build_inception``).
    """
    if input_shape is None:
        input_shape = (*IMAGE_SHAPE[:2], 1 if config.grayscale else 3)
    return build_inception(
        config.architecture,
        width=config.width,
        input_shape=input_shape,
        channel_mean=channel_mean,
        channel_std=channel_std,
        name=f"inception_{config.preset}",
        stem_images=stem_images,
    )


def training_model(
    network: keras.Model, crop_padding: int, *, seed: int | None = None, flip: str = "random"
) -> keras.Model:
    """``network`` behind random crops and flips (training only), or ``network`` itself when ``crop_padding`` is 0.

    Fitting this model trains the network's own weights; saving ``network`` leaves the augmentation out, so the
    saved model needs no cifarlib class. The crops and flips act on the raw pixels, before the network's
    normalisation: both only move pixels, so the order changes no value. ``flip`` is ``"random"`` or
    ``"alternate"`` (``cifarlib.augment.RandomCropFlip``; ``"alternate"`` needs the ``FlipEpoch`` callback).
    """
    if not crop_padding:
        return network
    inputs = keras.Input(shape=network.input_shape[1:], name="images")
    augmented = RandomCropFlip(crop_padding, flip=flip, seed=seed, name="augment")(inputs)
    return keras.Model(inputs, network(augmented), name=f"{network.name}_training")


def _conv_unit(
    x,
    filters: int,
    kernel: int,
    name: str,
    *,
    l2: float,
    branch_bn: bool,
    norm: dict | None = None,
    activation: str = "relu",
):
    if not branch_bn:
        return layers.Conv2D(
            filters, kernel, padding="same", activation=activation, kernel_regularizer=_l2(l2), name=name
        )(x)
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, kernel_regularizer=_l2(l2), name=name)(
        x
    )
    x = layers.BatchNormalization(name=f"{name}_bn", **(norm or {}))(x)
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


def _l2(factor: float):
    return keras.regularizers.L2(factor) if factor else None


def _normalization_layer(kind: str, channels: int, mean, std) -> layers.Layer:
    # The input standardisation and the whitening stem run in float32 under mixed precision too: in bfloat16 the
    # weakest whitened directions carry rounding errors of several percent. Keras casts their float32 output to
    # the first module's compute dtype.
    if kind == "scale":
        return layers.Rescaling(1.0 / 255.0, name="rescale", dtype="float32")
    mean = list(mean if mean is not None else (CIFAR10_MEAN if channels == 3 else CIFAR10_GRAY_MEAN))
    std = list(std if std is not None else (CIFAR10_STD if channels == 3 else CIFAR10_GRAY_STD))
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ValueError(f"channel_mean/channel_std need {channels} values with std > 0, got {mean}, {std}")
    # (pixel / 255 - mean) / std as one multiply-add per channel, with no weights to save or count.
    scale = [1.0 / (255.0 * s) for s in std]
    offset = [-m / s for m, s in zip(mean, std)]
    return layers.Rescaling(scale, offset, name="standardize", dtype="float32")


def load_network(path) -> keras.Model:
    """A saved network (a run's ``best.keras``), with the whitening stem's kernel frozen again where the stem has a
    trainable bias: the ``.keras`` format keeps a layer's trainable flag but not one weight's."""
    network = keras.saving.load_model(path)
    if stem := whitening_stem_with_bias(network):
        stem.kernel.trainable = False
    return network


def whitening_stem_with_bias(model: keras.Model) -> layers.Conv2D | None:
    """The whitening stem of ``model`` (nested models included) when it has a bias (``whitening_bias_epochs``)."""
    for layer in nested_layers(model):
        if layer.name == WHITENING_LAYER and getattr(layer, "use_bias", False):
            return layer
    return None


def nested_layers(model):
    """Every layer of ``model``, and of the models nested in it, depth first."""
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from nested_layers(layer)


def identity_initialize(network: keras.Model) -> None:
    """Make each convolution with a trainable kernel pass its first ``min(inputs, outputs)`` channels through.

    airbench's Dirac initialisation: filter ``i`` (for ``i`` below that count) becomes 1 at the kernel's centre on
    input channel ``i`` and 0 elsewhere; the other filters keep their random initialisation. Applied to the
    built network's weights, so no custom initializer is saved with it.
    """
    for layer in network.layers:
        # Not the whitening stem, whose kernel is fitted and frozen even where its bias trains.
        if isinstance(layer, layers.Conv2D) and layer.trainable and layer.kernel.trainable:
            kernel = np.array(layer.kernel)
            height, width, inputs, outputs = kernel.shape
            count = min(inputs, outputs)
            kernel[..., :count] = 0.0
            kernel[height // 2, width // 2, np.arange(count), np.arange(count)] = 1.0
            layer.kernel.assign(kernel)


def patch_whitening_kernel(images: np.ndarray, *, patch: int = WHITENING_PATCH, eps: float = WHITENING_EPS):
    """A conv kernel ``(patch, patch, C, 2 * patch * patch * C)`` that whitens the ``patch`` x ``patch`` patches of
    ``images`` (N, H, W, C, already normalised), as airbench's first layer.

    The patch second-moment matrix is ``V diag(lambda) V^T``; the first half of the filters are the eigenvectors
    divided by ``sqrt(lambda + eps)``, so their outputs over the same patches have the second-moment matrix
    ``diag(lambda / (lambda + eps))``, the identity up to ``eps``. The second half are the same filters negated,
    so that the activation after the stem (GELU) loses no sign.
    """
    images = np.asarray(images, dtype=np.float64)
    channels = images.shape[-1]
    size = patch * patch * channels
    moment, count = np.zeros((size, size)), 0
    # In chunks, so 5,000 images' ~5 M patches never sit in memory at once.
    for start in range(0, len(images), 500):
        patches = _patches(images[start : start + 500], patch)
        moment += patches.T @ patches
        count += len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(moment / count)
    filters = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0.0) + eps)
    kernel = filters.reshape(patch, patch, channels, size)
    return np.concatenate([kernel, -kernel], axis=-1).astype("float32")


def _patches(images: np.ndarray, patch: int) -> np.ndarray:
    """Every ``patch`` x ``patch`` window of ``images`` as a row, in the (row, column, channel) order of a kernel."""
    height, width = images.shape[1] - patch + 1, images.shape[2] - patch + 1
    windows = [images[:, dy : dy + height, dx : dx + width, :] for dy in range(patch) for dx in range(patch)]
    return np.stack(windows, axis=3).reshape(-1, patch * patch * images.shape[-1])


def _whitening_stem(x, normalization: layers.Layer, images: np.ndarray | None, *, bias: bool = False):
    """airbench's frozen patch-whitening convolution, then GELU; fitted to ``images`` when they are given.

    Padding ``"valid"``, as airbench: the grid shrinks to 31x31, which keeps the network within the reference
    network's multiply-adds (with ``"same"`` padding, the first module's 1x1 convolutions on 24 channels instead of
    3 would cost more than the reference network; tests/test_airbench.py checks the limit, and bench-accuracy
    prints each recipe's multiply-adds).

    ``bias``: the convolution gets a bias, starting at zero, which is its one trainable weight (the kernel stays
    frozen); training freezes it after ``whitening_bias_epochs`` (``cifarlib.optimizer.FreezeAfter``). Keras saves
    no per-weight trainable flag, so ``load_network`` freezes the kernel again when a saved network is loaded.
    """
    channels = x.shape[-1]
    stem = layers.Conv2D(
        2 * WHITENING_PATCH * WHITENING_PATCH * channels,
        WHITENING_PATCH,
        padding="valid",
        use_bias=bias,
        trainable=bias,
        name=WHITENING_LAYER,
        dtype="float32",  # see _normalization_layer
    )
    x = stem(x)
    if bias:
        stem.kernel.trainable = False
    if images is not None:
        sample = np.asarray(images[:WHITENING_IMAGES], dtype="float32")
        normalized = keras.ops.convert_to_numpy(normalization(sample))
        stem.kernel.assign(patch_whitening_kernel(normalized))
    return layers.Activation("gelu", name="whiten_gelu", dtype="float32")(x)
