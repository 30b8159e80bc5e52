"""Every setting of a training run in one typed, validated dataclass, and the presets: one table of recipes.

A preset is one complete, named recipe: the network, the data split, the optimisation and the evaluation.
``PRESETS`` is the only place a recipe's values are written; ``RunConfig``'s defaults are read from the default
preset (``"tuned"``, cifarlib's accuracy recipe), and ``RunConfig.from_preset("reference")`` is the 2019
notebook's recipe. A ``RunConfig`` holds resolved values only, so the ``config.json`` of a run records exactly
what trained. The command line, the notebooks, ``sweep`` and the benchmarks read their defaults from here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from cifarlib.data import IMAGE_SHAPE, MAX_SYNTHETIC_IMAGES, absolute_source
from cifarlib.errors import RunConfigError
from cifarlib.evaluation import translate_problem

_FLOAT_TYPES = ("float", "float | None")  # RunConfig's annotations, as strings (postponed evaluation)
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("plateau", "cosine", "constant")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = ("auto", "none", "mirrored", "tpu")
EVALUATION_SPLITS = ("test", "validation")  # what `evaluate --split` can score a finished run on
BATCH_NORM_PLACES = ("concat", "branch", "none")
HEAD_POOLS = ("average2x2", "global", "global_max")
NORMALIZATIONS = ("scale", "per_channel")
STEMS = ("none", "whiten")  # what comes between the input normalisation and the first Inception module
FLIPS = ("random", "alternate")  # how training flips images (with crops, when crop_padding > 0)
ACTIVATIONS = ("relu", "gelu")
DEFAULT_PRESET = "tuned"
# Settings that say how to run on this machine, not what to train: a run resumed on another device (a new Colab
# runtime after a disconnect) is the same run, so they are left out of its default id, of the check that an
# existing run holds the same settings, and of what sets runs apart when results are compared.
DEVICE_FIELDS = ("precision", "jit_compile", "distribute")
# Upper bounds that no meant setting reaches: 100 times the reference's 100-epoch budget, and a batch no larger
# than the largest data set cifarlib loads (data.MAX_SYNTHETIC_IMAGES; train refuses one larger than the actual
# training split). Past them a typo would fail deep inside TensorFlow, after the run folder was made.
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = MAX_SYNTHETIC_IMAGES
# A cosine warm-up never takes more than this share of the epoch budget, so a preset's warm-up fits any budget
# of at least one epoch (a 1-epoch run of the tuned recipe warms up over half an epoch, then decays).
MAX_WARMUP_SHARE = 0.5

# Filters per module as [1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj], from the reference notebook
# (GoogLeNet's inception 3a, 3b, 4a and 4b).
REFERENCE_MODULES = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
)

# The 2019 notebook's recipe: its network (four Inception modules, BatchNormalization after each, an L2 factor
# on every kernel, a head of two Dense-Dropout-BatchNormalization units), Adam 1e-3 with ReduceLROnPlateau and
# early stopping, batch 256, up to 100 epochs; trained with the honest loss (categorical cross-entropy) instead
# of the reference's binary one.
REFERENCE = {
    # Network
    "modules": REFERENCE_MODULES,
    "head_units": (128, 64),
    "head_dropout": 0.5,
    "batch_norm": "concat",
    "module_dropout": 0.0,
    "l2": 2e-4,
    "head_pool": "average2x2",
    "normalization": "scale",
    "crop_padding": 0,
    # Options from airbench (Keller Jordan's CIFAR-10 speed runs), off here (docs/accuracy.md measures each);
    # these values build and train exactly the network and recipe above.
    "stem": "none",
    # airbench trains the whitening convolution's bias (from zero) for its first 3 epochs, then freezes it.
    "whitening_bias_epochs": 0,
    "batch_norm_momentum": 0.99,  # Keras's default
    "batch_norm_scale": True,
    "logit_temperature": 1.0,
    "activation": "relu",
    "identity_init": False,
    "flip": "random",
    # Where the grid halves: a 2x2 max-pool after every module (None), or after the layers listed.
    "pool_after": None,
    "ema_momentum": 0.0,
    # airbench's lookahead syncs every 5 optimizer steps.
    "lookahead_steps": 0,
    # Data
    "validation_fraction": 0.2,
    # Optimisation
    "batch_size": 256,
    "epochs": 100,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "momentum": 0.9,
    # airbench's "bias_scaler": its BatchNorm offsets learn 64 times faster than its other weights.
    "offset_learning_rate_scale": 1.0,
    "weight_decay": 0.0,
    "decay_kernels_only": False,
    "label_smoothing": 0.0,
    "schedule": "plateau",
    "warmup_epochs": 0.0,
    "monitor": "val_loss",
    "early_stopping_patience": 10,
    "reduce_lr_factor": 0.3,
    "reduce_lr_patience": 4,
    "reduce_lr_min_delta": 1e-4,
    # Evaluation
    "tta": False,
    "tta_translate": 0,
}

# cifarlib's accuracy recipe. Why each value, with the measurements behind it: docs/accuracy.md.
TUNED = {
    **REFERENCE,
    # The same four modules and widths, with conv-BN-ReLU in every branch (better than BN after the
    # concatenation), per-channel standardisation, random crops and flips, and global average pooling into a
    # single softmax layer.
    "head_units": (),
    "head_dropout": 0.0,
    "batch_norm": "branch",
    "l2": 0.0,  # decoupled weight decay in the optimizer instead
    "head_pool": "global",
    "normalization": "per_channel",
    # airbench's frozen patch-whitening convolution as the stem, and pools after modules 1, 2 and 4 (not 3), so the
    # last module sees a 7x7 grid instead of 3x3: more accurate at the same cost per epoch (docs/accuracy.md).
    "stem": "whiten",
    "pool_after": (1, 2, 4),
    # 2-pixel crops, not the usual 4: on a short budget the network underfits (docs/accuracy.md).
    "crop_padding": 2,
    # A 45,000 / 5,000 split, as is usual for CIFAR-10 recipes.
    "validation_fraction": 0.1,
    # More optimizer steps on a fixed epoch budget, at about the same images per second (docs/accuracy.md).
    "batch_size": 64,
    "epochs": 40,
    "optimizer": "sgd",
    "learning_rate": 0.1,
    "momentum": 0.9,
    # Keras's decay is decoupled (w -= lr * wd * w each step) and bypasses momentum, so 5e-3 here is about
    # PyTorch's coupled 5e-4 at momentum 0.9; on kernels only (docs/accuracy.md).
    "weight_decay": 5e-3,
    "decay_kernels_only": True,
    "label_smoothing": 0.1,
    # A fixed budget: linear warm-up then cosine decay to zero, no early stop, the best epoch by accuracy.
    "schedule": "cosine",
    "warmup_epochs": 1.0,
    "monitor": "val_accuracy",
    "early_stopping_patience": None,
    # Mirror and 1-pixel shifts at evaluation, the kinds of change the network saw in training (docs/accuracy.md).
    "tta": True,
    "tta_translate": 1,
}

PRESETS: dict[str, dict[str, Any]] = {"reference": REFERENCE, "tuned": TUNED}
# Settings added after runs were first stored. A stored config.json without one of them trained with it off
# (the reference's value), so it loads that way even where a preset has since turned it on.
LATER_OPTIONS = (
    "decay_kernels_only",
    "tta_translate",
    "stem",
    "batch_norm_momentum",
    "batch_norm_scale",
    "logit_temperature",
    "activation",
    "identity_init",
    "flip",
    "ema_momentum",
    "pool_after",
    "offset_learning_rate_scale",
    "whitening_bias_epochs",
    "lookahead_steps",
)
# The later options that came after default run ids were first derived from every setting: left out of the id
# while off (the reference's value), so an unfinished run started before they existed resumes under the same command.
OPTIONS_OUTSIDE_OLD_RUN_IDS = (
    "pool_after",
    "offset_learning_rate_scale",
    "whitening_bias_epochs",
    "lookahead_steps",
)
# Names that runs written by earlier versions carry in their config.json.
OLD_PRESET_NAMES = {"seed": "reference"}


def _setting(default, help_text: str):
    """A RunConfig field whose help text the command line shows (one place for each setting's meaning)."""
    return field(default=default, metadata={"help": help_text})


def _recipe(name: str, help_text: str):
    """A RunConfig field that each preset sets; its default is the default preset's value."""
    return field(default=PRESETS[DEFAULT_PRESET][name], metadata={"help": help_text, "recipe": True})


# The RunConfig fields that shape the network (build_inception builds an Architecture of them); each is declared,
# with its type and help, once in RunConfig.
ARCHITECTURE_FIELDS = (
    "modules",
    "head_units",
    "head_dropout",
    "batch_norm",
    "module_dropout",
    "l2",
    "head_pool",
    "normalization",
    "crop_padding",
    "stem",
    "whitening_bias_epochs",
    "batch_norm_momentum",
    "batch_norm_scale",
    "logit_temperature",
    "activation",
    "identity_init",
    "pool_after",
)


def preset_architecture(preset: str) -> Architecture:
    """The network of a preset (``"reference"`` or ``"tuned"``)."""
    return RunConfig.from_preset(preset).architecture


@dataclass(frozen=True)
class RunConfig:
    """A training run's settings, resolved; each field's help (shown by ``--help``) gives its unit or choices."""

    preset: str = _setting(DEFAULT_PRESET, f"the recipe this run starts from: one of {sorted(PRESETS)}")
    # Data
    data: str = _setting(
        "keras", "'keras', 'synthetic', or a path to an archive / batches folder / image folder"
    )
    train_size: int | None = _setting(None, "first N training images (quick runs); None: all")
    validation_fraction: float = _recipe(
        "validation_fraction", "seeded, class-balanced share of the training images held out"
    )
    grayscale: bool = _setting(False, "train on 0.299 R + 0.587 G + 0.114 B, one channel")
    seed: int = _setting(0, "seeds the split, the shuffling, the weights and the augmentation")
    # Network
    width: float = _setting(1.0, "multiplies every filter and unit count")
    modules: tuple[tuple[int, ...], ...] = _recipe(
        "modules",
        "filters of each Inception module as JSON [[1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj], ...]",
    )
    head_units: tuple[int, ...] = _recipe(
        "head_units", "units of the head's hidden Dense layers, as JSON [128, 64]"
    )
    head_dropout: float = _recipe("head_dropout", "dropout rate after each hidden dense layer")
    batch_norm: str = _recipe("batch_norm", "'concat' (after each module), 'branch' (conv-BN-ReLU) or 'none'")
    module_dropout: float = _recipe("module_dropout", "dropout rate after each module's concatenation")
    l2: float = _recipe("l2", "L2 factor on conv and hidden dense kernels; 0: none")
    head_pool: str = _recipe(
        "head_pool",
        "'average2x2' then Flatten (reference), 'global' average pooling, or 'global_max' pooling (airbench's)",
    )
    normalization: str = _recipe(
        "normalization",
        "'scale': pixels / 255; 'per_channel': standardised with the training split's statistics",
    )
    crop_padding: int = _recipe(
        "crop_padding", "pixels of random-crop padding (with flips); 0 disables augmentation"
    )
    stem: str = _recipe(
        "stem",
        "'none', or 'whiten': a frozen 2x2 convolution that whitens the training images' patches (airbench)",
    )
    whitening_bias_epochs: int = _recipe(
        "whitening_bias_epochs",
        "stem 'whiten' with SGD: the whitening convolution has a bias, learnt in the first this many epochs and "
        "frozen after them (airbench: 3); 0: no bias",
    )
    batch_norm_momentum: float = _recipe(
        "batch_norm_momentum", "share of every BatchNorm moving average kept at each step (airbench: 0.6)"
    )
    batch_norm_scale: bool = _recipe(
        "batch_norm_scale", "BatchNorm learns a scale as well as an offset; False: offset only (airbench)"
    )
    logit_temperature: float = _recipe(
        "logit_temperature", "the logits are divided by this before the softmax (airbench: 9)"
    )
    activation: str = _recipe(
        "activation", "of every convolution and hidden dense layer: 'relu' or 'gelu' (airbench)"
    )
    identity_init: bool = _recipe(
        "identity_init",
        "each convolution starts as the identity on its first min(inputs, outputs) channels (airbench's Dirac "
        "initialisation); False: Keras's default initialisation",
    )
    pool_after: tuple[int, ...] | None = _recipe(
        "pool_after",
        "2x2 max-pools after these layers, as JSON [0, 2, 4]: 0 is the stem (the normalised input, or the "
        "whitening convolution), 1 to N the Inception modules; none: after every module (the reference)",
    )
    flip: str = _recipe(
        "flip",
        "training flips: 'random' (each image, each step), or 'alternate' (each image mirrored every other "
        "epoch, airbench)",
    )
    # Optimisation
    batch_size: int = _recipe("batch_size", "images per step on one replica")
    epochs: int = _recipe("epochs", "upper bound; early stopping may end sooner")
    optimizer: str = _recipe("optimizer", "'adam', or 'sgd' with Nesterov momentum")
    learning_rate: float = _recipe("learning_rate", "initial rate (plateau/constant) or peak rate (cosine)")
    momentum: float = _recipe("momentum", "SGD only")
    offset_learning_rate_scale: float = _recipe(
        "offset_learning_rate_scale",
        "SGD only: every BatchNorm offset learns at this many times the learning rate (airbench: 64); 1: the same",
    )
    weight_decay: float = _recipe(
        "weight_decay", "decoupled weight decay per unit learning rate (AdamW-style); 0: none"
    )
    decay_kernels_only: bool = _recipe(
        "decay_kernels_only",
        "weight decay on kernels only, not on BatchNorm scales/offsets or biases; False: every weight",
    )
    label_smoothing: float = _recipe("label_smoothing", "share of the target mass spread over all classes")
    ema_momentum: float = _recipe(
        "ema_momentum",
        "exponential moving average of the weights, evaluated and saved instead of them; 0: off (airbench-like: 0.99)",
    )
    lookahead_steps: int = _recipe(
        "lookahead_steps",
        "lookahead: every this many optimizer steps, slow weights move towards the trained ones (more as the run "
        "ends) and training continues from them; they are evaluated and saved; 0: off (airbench: 5)",
    )
    schedule: str = _recipe(
        "schedule", "'plateau' (ReduceLROnPlateau), 'cosine' (linear warm-up, cosine decay), 'constant'"
    )
    warmup_epochs: float = _recipe(
        "warmup_epochs",
        f"cosine only: epochs of linear warm-up from 0 to the peak, at most {MAX_WARMUP_SHARE:g} of the epochs",
    )
    # Callbacks, as in the reference notebook
    monitor: str = _recipe(
        "monitor", "metric for the best checkpoint, early stopping and the plateau schedule"
    )
    early_stopping_patience: int | None = _recipe(
        "early_stopping_patience", "epochs without improvement before stopping; None: never stop"
    )
    reduce_lr_factor: float = _recipe("reduce_lr_factor", "plateau schedule: multiply the rate by this")
    reduce_lr_patience: int = _recipe(
        "reduce_lr_patience", "plateau schedule: epochs without improvement before reducing"
    )
    reduce_lr_min_delta: float = _recipe(
        "reduce_lr_min_delta", "plateau schedule: smallest change that counts as improvement"
    )
    # Evaluation
    tta: bool = _recipe(
        "tta", "test-time augmentation: average the predictions for each image and its mirror"
    )
    tta_translate: int = _recipe(
        "tta_translate",
        "with tta: also average over the image and its mirror shifted N pixels down-right and up-left; 0: none",
    )
    # Device (see cifarlib.device)
    precision: str = _setting("auto", "'auto' picks per device; or float32, mixed_float16, mixed_bfloat16")
    jit_compile: str | bool = _setting("auto", "XLA: 'auto' picks per device by measurement; or True / False")
    distribute: str = _setting("auto", "'auto': TPU or several GPUs when present; 'none', 'mirrored', 'tpu'")

    def __post_init__(self):
        _spell_network_sizes(self)
        # width=1 and width=1.0 are one setting: whole numbers in float fields are stored as floats, so that
        # config.json records one spelling and equal settings hash to one run id. Bools stay as given (and fail
        # validation), since True is an int to Python but no number to a person.
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.type in _FLOAT_TYPES and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, item.name, float(value))
        if isinstance(self.data, str):
            object.__setattr__(self, "data", absolute_source(self.data))
        problems = list(_problems(self))
        if problems:
            raise RunConfigError("invalid run config: " + "; ".join(problems))

    @classmethod
    def from_preset(cls, preset: str = DEFAULT_PRESET, **overrides) -> "RunConfig":
        """The preset's recipe with ``overrides`` applied (unknown names raise ``RunConfigError``)."""
        if preset not in PRESETS:
            renamed = (
                f" ({preset!r} is now {OLD_PRESET_NAMES[preset]!r})" if preset in OLD_PRESET_NAMES else ""
            )
            raise RunConfigError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}{renamed}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise RunConfigError(f"unknown run config fields {sorted(unknown)}")
        return cls(**{**PRESETS[preset], "preset": preset, **overrides})

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """Inverse of ``to_dict``; extra keys written beside the config (versions, device) are ignored.

        A run written before presets were complete recipes (preset ``"seed"``, network fields ``null``) loads
        as what it trained: the old name maps to its new one and each missing value is the preset's.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        known = {key: value for key, value in values.items() if key in names}
        preset = OLD_PRESET_NAMES.get(known.get("preset"), known.get("preset", DEFAULT_PRESET))
        if preset not in PRESETS:
            raise RunConfigError(
                f"unknown preset {preset!r} in a stored run config; expected one of {sorted(PRESETS)}"
            )
        recipe = PRESETS[preset]
        # Early runs stored null network fields for "the preset's"; a later option's null is a value of its own.
        filled = {
            key: recipe[key]
            if value is None and key in ARCHITECTURE_FIELDS and key not in LATER_OPTIONS
            else value
            for key, value in known.items()
        }
        # A setting newer than the stored run trained as the setting's "off" value, whatever the preset says now.
        predates = {key: REFERENCE[key] for key in LATER_OPTIONS if key not in known}
        return cls(**{**recipe, **predates, **filled, "preset": preset})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def differences(self, other: "RunConfig") -> dict[str, tuple]:
        """Fields whose values differ, as ``{name: (self, other)}``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}

    @property
    def architecture(self) -> Architecture:
        """The network this config trains."""
        return Architecture(**{name: getattr(self, name) for name in ARCHITECTURE_FIELDS})

    @property
    def effective_warmup_epochs(self) -> float:
        """Epochs of warm-up the cosine schedule uses: ``warmup_epochs``, capped to a share of the budget."""
        return min(self.warmup_epochs, MAX_WARMUP_SHARE * self.epochs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@functools.cache
def setting_types() -> dict[str, Any]:
    """Each RunConfig setting's type, evaluated (the annotations are strings under postponed evaluation)."""
    return typing.get_type_hints(RunConfig)


def setting_accepts_none(name: str) -> bool:
    """Whether the setting ``name`` may be None, so that ``none`` typed by a user means None."""
    return type(None) in typing.get_args(setting_types().get(name))


def _spell_network_sizes(settings) -> None:
    """One spelling for the network's sizes of a RunConfig or Architecture (frozen, so set in place): JSON and the
    command line give lists, kept as tuples so settings compare and hash; a plan that pools after every module and
    nowhere else is ``None``, so one network has one run id."""
    for name in ("modules", "head_units", "pool_after"):
        object.__setattr__(settings, name, _as_tuple(getattr(settings, name)))
    if isinstance(settings.modules, tuple) and settings.pool_after == _after_every_module(settings.modules):
        object.__setattr__(settings, "pool_after", None)


def pool_plan(architecture) -> tuple[int, ...]:
    """The layers a 2x2 max-pool follows (0: the stem): ``pool_after``, or after every module where it is ``None``."""
    if architecture.pool_after is None:
        return _after_every_module(architecture.modules)
    return architecture.pool_after


def _after_every_module(modules) -> tuple[int, ...]:
    return tuple(range(1, len(modules) + 1))


def _check_architecture(architecture) -> None:
    _spell_network_sizes(architecture)
    problems = list(_architecture_problems(architecture))
    if problems:
        raise ValueError("invalid architecture: " + "; ".join(problems))


# Everything that shapes the network: RunConfig's ARCHITECTURE_FIELDS, with the reference network's values as
# defaults, so ``Architecture()`` is the reference network.
Architecture = dataclasses.make_dataclass(
    "Architecture",
    [(name, RunConfig.__annotations__[name], field(default=REFERENCE[name])) for name in ARCHITECTURE_FIELDS],
    frozen=True,
    namespace={
        "__doc__": "Everything that shapes the network (``cifarlib.model.build_inception`` builds one of these).",
        "__post_init__": _check_architecture,
    },
)
# Pickling and reprs find it here (make_dataclass's module= needs Python 3.12).
Architecture.__module__ = __name__


def monitor_mode(monitor: str) -> str:
    """``"max"`` for accuracies, ``"min"`` for losses."""
    return "max" if "acc" in monitor else "min"


def _as_tuple(value):
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(item) for item in value)
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _architecture_problems(architecture):
    """Why an ``Architecture`` (or a ``RunConfig``'s network fields) cannot be built, one reason each."""
    modules = architecture.modules
    if (
        not isinstance(modules, tuple)
        or not modules
        or not all(
            isinstance(module, tuple)
            and len(module) == 6
            and all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in module)
            for module in modules
        )
    ):
        yield f"modules must be a non-empty list of six positive filter counts each, got {modules!r}"
    units = architecture.head_units
    if not isinstance(units, tuple) or not all(
        isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in units
    ):
        yield f"head_units must be a list of positive integers, got {units!r}"
    for name in ("head_dropout", "module_dropout"):
        value = getattr(architecture, name)
        if not _is_number(value) or not 0.0 <= value < 1.0:
            yield f"{name} must be in [0, 1), got {value!r}"
    if architecture.batch_norm not in BATCH_NORM_PLACES:
        yield f"batch_norm must be one of {BATCH_NORM_PLACES}, got {architecture.batch_norm!r}"
    if not _is_number(architecture.l2) or not 0 <= architecture.l2 < math.inf:
        yield f"l2 must be a finite number >= 0, got {architecture.l2!r}"
    if architecture.head_pool not in HEAD_POOLS:
        yield f"head_pool must be one of {HEAD_POOLS}, got {architecture.head_pool!r}"
    if architecture.normalization not in NORMALIZATIONS:
        yield f"normalization must be one of {NORMALIZATIONS}, got {architecture.normalization!r}"
    padding = architecture.crop_padding
    if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
        yield f"crop_padding must be a non-negative integer, got {padding!r}"
    if architecture.stem not in STEMS:
        yield f"stem must be one of {STEMS}, got {architecture.stem!r}"
    bias_epochs = architecture.whitening_bias_epochs
    if not isinstance(bias_epochs, int) or isinstance(bias_epochs, bool) or bias_epochs < 0:
        yield f"whitening_bias_epochs must be a non-negative integer, got {bias_epochs!r}"
    elif bias_epochs and architecture.stem != "whiten":
        yield f"whitening_bias_epochs={bias_epochs} needs stem 'whiten' (it is that convolution's bias)"
    yield from _pooling_problems(architecture)
    momentum = architecture.batch_norm_momentum
    if not _is_number(momentum) or not 0.0 <= momentum < 1.0:
        yield f"batch_norm_momentum must be in [0, 1), got {momentum!r}"
    if not isinstance(architecture.batch_norm_scale, bool):
        yield f"batch_norm_scale must be true or false, got {architecture.batch_norm_scale!r}"
    if architecture.activation not in ACTIVATIONS:
        yield f"activation must be one of {ACTIVATIONS}, got {architecture.activation!r}"
    if not isinstance(architecture.identity_init, bool):
        yield f"identity_init must be true or false, got {architecture.identity_init!r}"
    temperature = architecture.logit_temperature
    if not _is_number(temperature) or not 0 < temperature < math.inf:
        yield f"logit_temperature must be a finite number > 0, got {temperature!r}"


def pooled_grid_size(architecture) -> int:
    """The side of the grid the head pools: 32, or 31 after the whitening stem's unpadded convolution, halved
    (rounding down) by each 2x2 max-pool of ``pool_after``."""
    size = IMAGE_SHAPE[0] - (1 if architecture.stem == "whiten" else 0)
    return size // 2 ** len(pool_plan(architecture))


def _pooling_problems(architecture):
    plan, modules = architecture.pool_after, architecture.modules
    if plan is not None:
        layers = len(modules) if isinstance(modules, tuple) else None
        if (
            not isinstance(plan, tuple)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in plan)
            or list(plan) != sorted(set(plan))
            or any(i < 0 or (layers is not None and i > layers) for i in plan)
        ):
            yield (
                "pool_after must be none (after every module) or a list of increasing layer numbers from 0 (the "
                f"stem) to the number of modules ({layers}), got {_plan_text(plan)}"
            )
            return
    if not isinstance(modules, tuple) or architecture.stem not in STEMS:
        return
    size = pooled_grid_size(architecture)
    if size < 1:
        yield (
            f"pool_after {_plan_text(plan)} halves the grid more often than stem {architecture.stem!r} leaves room "
            "for (it would end below 1x1)"
        )
    elif size < 2 and architecture.head_pool == "average2x2":
        yield (
            f"head_pool 'average2x2' needs a grid of at least 2x2 at the head; stem {architecture.stem!r} with "
            f"pool_after {_plan_text(plan)} leaves {size}x{size}: use head_pool 'global'"
        )


def _plan_text(plan) -> str:
    """A pooling plan as the command line spells it: ``none``, or a JSON list."""
    if plan is None:
        return "none"
    return json.dumps(list(plan)) if isinstance(plan, (tuple, list)) else repr(plan)


def _problems(config: RunConfig):
    def positive_int(name, maximum: int | None = None):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            yield f"{name} must be a positive integer, got {value!r}"
        elif maximum is not None and value > maximum:
            yield f"{name} must be at most {maximum:,}, got {value:,}"

    # Every float setting must be a finite number: inf and nan pass most comparisons, and nan would be
    # written into config.json as NaN, which is not JSON.
    floats = [f.name for f in dataclasses.fields(config) if f.type in ("float", float)]
    not_finite = [
        name
        for name in floats
        if not _is_number(getattr(config, name)) or not math.isfinite(getattr(config, name))
    ]
    for name in not_finite:
        yield f"{name} must be a finite number, got {getattr(config, name)!r}"
    seed = config.seed
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:  # NumPy's seeds
        yield f"seed must be an integer from 0 to 2**32 - 1, got {seed!r}"

    if config.preset not in PRESETS:
        yield f"preset must be one of {sorted(PRESETS)}, got {config.preset!r}"
    if not isinstance(config.data, str) or not config.data:
        yield f"data must be 'keras', 'synthetic' or a path, got {config.data!r}"
    if config.train_size is not None:
        yield from positive_int("train_size")
    if "width" not in not_finite and config.width <= 0:
        yield f"width must be a positive number, got {config.width!r}"
    yield from _architecture_problems(config)
    yield from positive_int("batch_size", MAX_BATCH_SIZE)
    yield from positive_int("epochs", MAX_EPOCHS)
    if config.optimizer not in OPTIMIZERS:
        yield f"optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}"
    if config.schedule not in SCHEDULES:
        yield f"schedule must be one of {SCHEDULES}, got {config.schedule!r}"
    if config.monitor not in ("val_loss", "val_accuracy", "loss", "accuracy"):
        yield f"monitor must be val_loss, val_accuracy, loss or accuracy, got {config.monitor!r}"
    if config.early_stopping_patience is not None and (
        not isinstance(config.early_stopping_patience, int) or config.early_stopping_patience < 0
    ):
        yield f"early_stopping_patience must be an integer >= 0 or None, got {config.early_stopping_patience!r}"
    if config.flip not in FLIPS:
        yield f"flip must be one of {FLIPS}, got {config.flip!r}"
    elif config.flip != "random" and config.crop_padding == 0:
        # Flips are applied with the crops (one augmentation layer), so with crop_padding 0 there would be none.
        yield f"flip={config.flip!r} needs crop_padding > 0 (flips come with the random crops)"
    if problem := translate_problem(config.tta_translate):
        yield f"tta_translate {problem}"
    if config.precision not in PRECISIONS:
        yield f"precision must be one of {PRECISIONS}, got {config.precision!r}"
    if config.jit_compile not in ("auto", True, False):
        yield f"jit_compile must be 'auto', True or False, got {config.jit_compile!r}"
    if config.distribute not in DISTRIBUTIONS:
        yield f"distribute must be one of {DISTRIBUTIONS}, got {config.distribute!r}"
    if not_finite:
        return  # the range checks below compare floats, which needs them finite
    if not 0.0 <= config.validation_fraction < 1.0:
        yield f"validation_fraction must be in [0, 1), got {config.validation_fraction!r}"
    if not config.learning_rate > 0:
        yield f"learning_rate must be > 0, got {config.learning_rate!r}"
    if not 0.0 <= config.momentum < 1.0:
        yield f"momentum must be in [0, 1), got {config.momentum!r}"
    if config.weight_decay < 0:
        yield f"weight_decay must be >= 0, got {config.weight_decay!r}"
    if not config.offset_learning_rate_scale > 0:
        yield f"offset_learning_rate_scale must be > 0, got {config.offset_learning_rate_scale!r}"
    elif config.offset_learning_rate_scale != 1.0 and config.optimizer != "sgd":
        # Adam divides each gradient by its own running size, so a per-variable rate is not a gradient scale there.
        yield f"offset_learning_rate_scale={config.offset_learning_rate_scale:g} needs optimizer 'sgd'"
    bias_epochs = config.whitening_bias_epochs
    valid_bias_epochs = isinstance(bias_epochs, int) and not isinstance(bias_epochs, bool) and bias_epochs > 0
    if valid_bias_epochs and config.optimizer != "sgd":
        # Freezing it is done by cifarlib.optimizer.ScaledRateSGD.
        yield f"whitening_bias_epochs={bias_epochs} needs optimizer 'sgd'"
    if not 0.0 <= config.label_smoothing < 1.0:
        yield f"label_smoothing must be in [0, 1), got {config.label_smoothing!r}"
    if not 0.0 <= config.ema_momentum < 1.0:
        yield f"ema_momentum must be in [0, 1) (0: off), got {config.ema_momentum!r}"
    steps = config.lookahead_steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        yield f"lookahead_steps must be an integer >= 0 (0: off), got {steps!r}"
    elif steps and config.ema_momentum:
        # Both replace the trained weights by an average of them; one at a time is what docs/accuracy.md measures.
        yield "lookahead_steps and ema_momentum are two weight averages; use one (set the other to 0)"
    if config.warmup_epochs < 0:
        yield f"warmup_epochs must be >= 0, got {config.warmup_epochs!r}"
    if config.monitor.startswith("val_") and config.validation_fraction == 0:
        yield f"monitor {config.monitor!r} needs a validation split (validation_fraction > 0)"
    if not 0.0 < config.reduce_lr_factor < 1.0:
        yield f"reduce_lr_factor must be in (0, 1), got {config.reduce_lr_factor!r}"


# Each preset is checked once, here, when the table is read: a bad value fails at import, not in a run.
for _name in PRESETS:
    RunConfig.from_preset(_name)
