"""``make bench``: training throughput of the reference network, the reference notebook's way against cifarlib's.

Both ways train the same network (``build_inception("reference")``) at the same batch size on the same machine,
in one process, on the active Keras backend:

(a) **reference**: the 2019 notebook's way: the whole dataset as float64 NumPy arrays (and one-hot float64
    labels) passed to ``model.fit``, float32 compute, Keras's default settings, except that XLA stays off under
    TensorFlow as in the reference's Keras 2 (Keras 3's default would turn it on, which is slower on CPUs: docs/speed.md);
(b) **cifarlib**: uint8 images through ``cifarlib.pipeline`` (tf.data under TensorFlow), scaled inside the
    model, with the precision and XLA setting ``cifarlib.device`` picks for the device.

Throughput is timed over ``steps`` training steps after ``warmup`` steps (which absorb tracing and
compilation), and a 50,000-image epoch time is extrapolated from it. On a GPU the report adds the achieved
TFLOP/s against the device's peak and a table of estimated against measured peak memory per batch size.
The images are synthetic: throughput does not depend on what the pixels show.
"""

from __future__ import annotations

import gc
import math
import re
import time

import keras
import numpy as np

from cifarlib.config import RunConfig
from cifarlib.data import NUM_CLASSES, synthetic_cifar10
from cifarlib.device import DevicePlan, plan_device
from cifarlib.memory import estimate_memory
from cifarlib.model import build_inception
from cifarlib.pipeline import make_inputs

EPOCH_IMAGES = 50_000
# Dense bf16/fp16 tensor-core peaks from the vendors' datasheets, TFLOP/s, by a word of the device name
# ("NVIDIA A100-SXM4-80GB" has the word A100; "NVIDIA L40S" and "NVIDIA A10G" match none: a different chip).
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L4": 121.0,
    "V100": 125.0,
    "T4": 65.0,
    "A10": 125.0,
}


def peak_tflops(device_name: str) -> float | None:
    """The datasheet peak of the GPU named ``device_name``, or ``None`` for a chip not in ``PEAK_TFLOPS``."""
    words = set(re.split(r"[^A-Za-z0-9]+", device_name.upper()))
    return next((value for chip, value in PEAK_TFLOPS.items() if chip in words), None)


def forward_multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one image's forward pass through the model's convolutions and dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, out_channels = layer.output.shape[1:]
            kernel_h, kernel_w, in_channels, _ = layer.kernel.shape
            total += height * width * kernel_h * kernel_w * in_channels * out_channels
        elif isinstance(layer, keras.layers.Dense):
            total += math.prod(layer.kernel.shape)
    return int(total)


def training_flops_per_image(model: keras.Model) -> float:
    """About 3 forward passes (forward, and twice that for the backward pass), 2 FLOPs per multiply-add."""
    return 6.0 * forward_multiply_adds(model)


def measure_throughput(
    way: str, *, batch_size: int = 256, steps: int = 20, warmup: int = 3, seed: int = 0
) -> dict:
    """Train the reference network ``warmup + steps`` steps the ``"reference"`` or ``"cifarlib"`` way; images per second."""
    if way not in ("reference", "cifarlib"):
        raise ValueError(f"way must be 'reference' or 'cifarlib', got {way!r}")
    keras.utils.set_random_seed(seed)
    images_needed = batch_size * (warmup + steps)
    (images, labels), _ = synthetic_cifar10(images_needed, 0, seed=seed)
    previous_policy = keras.mixed_precision.global_policy()
    plan = plan_device(RunConfig(batch_size=batch_size))
    try:
        if way == "reference":
            keras.mixed_precision.set_global_policy("float32")
            model = build_inception("reference")
            jit = False if keras.backend.backend() == "tensorflow" else "auto"
            model.compile(
                optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"], jit_compile=jit
            )
            x = images.astype(
                np.float64
            )  # pixel / 255 happens in the model; the array is float64 like the reference's
            y = keras.utils.to_categorical(labels, NUM_CLASSES).astype(np.float64)
            warm_inputs, timed_inputs = (
                (x[: batch_size * warmup], y[: batch_size * warmup]),
                (x[batch_size * warmup :], y[batch_size * warmup :]),
            )

            def fit(data):
                return model.fit(data[0], data[1], batch_size=batch_size, epochs=1, shuffle=True, verbose=0)

            precision = "float32"
        else:
            keras.mixed_precision.set_global_policy(plan.precision)
            model = build_inception("reference")
            model.compile(
                optimizer="adam",
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=plan.jit_compile,
            )
            split = batch_size * warmup
            warm_inputs = make_inputs(
                images[:split], labels[:split], batch_size=batch_size, shuffle=True, seed=seed
            )
            timed_inputs = make_inputs(
                images[split:], labels[split:], batch_size=batch_size, shuffle=True, seed=seed
            )

            def fit(data):
                return model.fit(
                    data.data,
                    data.labels,
                    batch_size=data.batch_size,
                    shuffle=data.shuffle,
                    epochs=1,
                    verbose=0,
                )

            precision, jit = plan.precision, plan.jit_compile
        fit(warm_inputs)
        started = time.perf_counter()
        fit(timed_inputs)
        seconds = time.perf_counter() - started
        images_per_second = batch_size * steps / seconds
        return {
            "way": way,
            "images_per_second": images_per_second,
            "seconds_per_epoch": EPOCH_IMAGES / images_per_second,
            "precision": precision,
            "jit_compile": jit,
            "tflops": training_flops_per_image(model) * images_per_second / 1e12,
        }
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        keras.backend.clear_session()
        gc.collect()


def measure_peak_memory(batch_size: int, plan: DevicePlan, *, steps: int = 3) -> dict | None:
    """Measured peak accelerator memory (GiB) of training the reference network at ``batch_size``, with the estimate."""
    backend = keras.backend.backend()
    if plan.device.kind != "gpu":
        return None
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(plan.precision)
    try:
        model = build_inception("reference")
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=plan.jit_compile)
        (images, labels), _ = synthetic_cifar10(batch_size * steps, 0)
        _reset_peak_memory(backend)
        inputs = make_inputs(images, labels, batch_size=batch_size, shuffle=False)
        model.fit(inputs.data, inputs.labels, batch_size=inputs.batch_size, epochs=1, verbose=0)
        measured = _peak_memory_bytes(backend) / 1024**3
        estimated = estimate_memory(
            model, batch_size, method="training", optimizer="adam", precision=plan.precision
        )
        return {
            "batch_size": batch_size,
            "estimated_gib": estimated,
            "measured_gib": measured,
            "error": estimated / measured - 1.0 if measured else float("nan"),
        }
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()
        gc.collect()


def run_benchmark(
    *, batch_size: int = 256, steps: int = 20, warmup: int = 3, memory_batches=(64, 128, 256, 512)
) -> str:
    """Both ways, their ratio, and on a GPU the TFLOP/s and memory table; returns the printed report."""
    plan = plan_device(RunConfig(batch_size=batch_size))
    reference = measure_throughput("reference", batch_size=batch_size, steps=steps, warmup=warmup)
    ours = measure_throughput("cifarlib", batch_size=batch_size, steps=steps, warmup=warmup)
    lines = [
        f"backend {keras.backend.backend()} | device {plan.device.kind} ({plan.device.name}) | reference network, "
        f"batch {batch_size}, {steps} timed steps after {warmup} warm-up steps",
        f"{'way':<10} {'precision':<15} {'XLA':<5} {'images/s':>10} {'s / 50k epoch':>14}",
    ]
    for result in (reference, ours):
        lines.append(
            f"{result['way']:<10} {result['precision']:<15} {str(result['jit_compile']):<5} "
            f"{result['images_per_second']:>10.1f} {result['seconds_per_epoch']:>14.1f}"
        )
    lines.append(f"speed-up: {ours['images_per_second'] / reference['images_per_second']:.2f}x")
    if plan.device.kind == "gpu":
        peak = peak_tflops(plan.device.name)
        achieved = f"{ours['tflops']:.1f} TFLOP/s achieved"
        lines.append(
            achieved + (f" of {peak:.0f} peak ({ours['tflops'] / peak:.1%})" if peak else " (peak unknown)")
        )
        lines.append(f"{'batch':>6} {'estimated GiB':>14} {'measured GiB':>13} {'error':>7}")
        for batch in memory_batches:
            row = measure_peak_memory(batch, plan)
            lines.append(
                f"{batch:>6} {row['estimated_gib']:>14.2f} {row['measured_gib']:>13.2f} {row['error']:>+7.1%}"
            )
    else:
        lines.append("no GPU: TFLOP/s against peak and the memory table are measured on GPUs only")
    return "\n".join(lines)


def _reset_peak_memory(backend: str) -> None:
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats("GPU:0")
    elif backend == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()


def _peak_memory_bytes(backend: str) -> int:
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"]
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated()
    if backend == "jax":
        import jax

        return jax.devices()[0].memory_stats()["peak_bytes_in_use"]
    raise ValueError(f"no peak-memory reader for backend {backend!r}")
