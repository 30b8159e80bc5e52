"""How much accelerator memory a model needs, by the reference notebook's formula and by an honest one, and
the warning ``train`` logs when a run will not fit the GPU.

``method="reference"`` reproduces the reference notebook's figure, so old numbers can be checked::

    4 bytes * batch * (sum of every layer's output elements + all parameters) / 1024**3

It multiplies the parameters by the batch, which is wrong (weights are stored once), and ignores gradients
and optimizer state (the notebooks print its figure for the reference network).

``method="training"`` counts what training really keeps, in bytes::

    parameters * 4                      (variables stay float32, also under mixed precision)
  + trainable parameters * 4            (one gradient per trainable weight)
  + trainable parameters * 4 * slots    (Adam keeps two moments, SGD with momentum one, plain SGD none; an
                                          average of the weights (ema_momentum or lookahead_steps) one more)
  + batch * activations * compute bytes (every layer's output, kept for back-propagation; 2 bytes per
                                          element under mixed_float16/mixed_bfloat16, 4 under float32)

It leaves out the framework's own workspace (cuDNN scratch, allocator rounding), which is why it is compared
with measured peaks by ``make bench`` rather than trusted blindly.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import keras

if TYPE_CHECKING:
    from cifarlib.config import RunConfig
    from cifarlib.device import DevicePlan

log = logging.getLogger(__name__)

GIB = 1024**3
OPTIMIZER_SLOTS = {"adam": 2, "adamw": 2, "nadam": 2, "rmsprop": 1, "sgd_momentum": 1, "sgd": 0}
COMPUTE_BYTES = {"float32": 4, "mixed_float16": 2, "mixed_bfloat16": 2, "float16": 2, "bfloat16": 2}


def layer_output_elements(model: keras.Model, *, include_input: bool = True) -> int:
    """Sum over the model's layers of the elements of one sample's outputs (batch dimension left out)."""
    total = 0
    for layer in model.layers:
        if not include_input and isinstance(layer, keras.layers.InputLayer):
            continue
        for output in keras.tree.flatten(layer.output):
            total += math.prod(dim for dim in output.shape[1:] if dim is not None)
    return total


def training_memory_breakdown(
    model: keras.Model,
    batch_size: int,
    *,
    optimizer: str = "adam",
    precision: str = "float32",
    ema: bool = False,
) -> dict[str, int]:
    """Bytes of each part of ``method="training"`` (see the module docstring); ``ema``: a second copy of the
    weights is kept, the optimizer's moving average of them or lookahead's slow weights."""
    _check_batch(batch_size)
    if optimizer not in OPTIMIZER_SLOTS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZER_SLOTS)}, got {optimizer!r}")
    if precision not in COMPUTE_BYTES:
        raise ValueError(f"precision must be one of {sorted(COMPUTE_BYTES)}, got {precision!r}")
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return {
        "parameters": 4 * model.count_params(),
        "gradients": 4 * trainable,
        "optimizer_slots": 4 * trainable * (OPTIMIZER_SLOTS[optimizer] + int(ema)),
        "activations": batch_size
        * layer_output_elements(model, include_input=True)
        * COMPUTE_BYTES[precision],
    }


def estimate_memory(
    model: keras.Model,
    batch_size: int,
    method: str = "reference",
    *,
    optimizer: str = "adam",
    precision: str = "float32",
    ema: bool = False,
) -> float:
    """Estimated memory in GiB (1024**3 bytes) for training ``model`` at ``batch_size``.

    ``method="reference"`` (or its earlier name ``"seed"``) is the reference notebook's formula (unrounded;
    the notebook printed it rounded to 3 places); ``method="training"`` is the honest count, which takes the ``optimizer``, ``precision`` and weight averaging (``ema``) used.
    """
    _check_batch(batch_size)
    if method in ("reference", "seed"):
        elements = layer_output_elements(model) + model.count_params()
        return 4.0 * batch_size * elements / GIB
    if method == "training":
        breakdown = training_memory_breakdown(
            model, batch_size, optimizer=optimizer, precision=precision, ema=ema
        )
        return sum(breakdown.values()) / GIB
    raise ValueError(f"method must be 'reference' or 'training', got {method!r}")


def run_memory_estimate(model: keras.Model, config: RunConfig, plan: DevicePlan | None = None) -> float:
    """GiB ``estimate_memory(method="training")`` gives for this run's batch, optimizer, weight averaging and
    precision."""
    if plan is None:
        from cifarlib.device import plan_device

        plan = plan_device(config)
    optimizer = "adam" if config.optimizer == "adam" else "sgd_momentum"
    return estimate_memory(
        model,
        config.batch_size,
        method="training",
        optimizer=optimizer,
        precision=plan.precision,
        ema=bool(config.ema_momentum or config.lookahead_steps),
    )


def warn_if_too_big(
    model: keras.Model, config: RunConfig, plan: DevicePlan, gpus: list[dict] | None = None
) -> str | None:
    """Log (and return) a warning when the training memory estimate exceeds the GPU's free memory."""
    if plan.device.kind != "gpu":
        return None
    if gpus is None:
        from cifarlib.system import gpu_info

        gpus = gpu_info()
    if not gpus:
        return None
    needed = run_memory_estimate(model, config, plan)
    free = gpus[0]["memory_free_mib"] / 1024
    if needed <= free:
        return None
    message = (
        f"estimated training memory {needed:.2f} GiB exceeds the GPU's free {free:.2f} GiB at batch "
        f"{config.batch_size}: expect an out-of-memory error; lower the batch size"
    )
    log.warning("%s", message)
    return message


def _check_batch(batch_size) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
