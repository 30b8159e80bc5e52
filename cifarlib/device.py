"""Which accelerator a run has, and the precision, XLA setting and distribution strategy to use on it.

The choices are rules written down from measurements, not habits:

- precision: ``mixed_float16`` on NVIDIA GPUs with tensor cores (compute capability 7.0 or newer),
  ``mixed_bfloat16`` on TPUs and on CPUs with bf16 instructions (AVX512-BF16 or AMX) under TensorFlow, where it
  trained faster than float32 (docs/speed.md); ``float32`` elsewhere.
- XLA (``jit_compile``): off on CPUs under TensorFlow (slower there, docs/speed.md); on for TPUs (required) and
  for JAX (whose ops run one by one without it); Keras's own ``"auto"`` on GPUs under TensorFlow, which were
  not measured here; off under PyTorch (``torch.compile`` costs more than it saves on short runs).
- backend: on CPUs TensorFlow trains the reference network several times faster than JAX (docs/speed.md),
  so a run on a CPU under another backend logs a notice.
- distribution (TensorFlow only): ``TPUStrategy`` on a TPU runtime, ``MirroredStrategy`` on several GPUs (or
  on several logical CPUs when asked), the default strategy otherwise. With N replicas the global batch is
  ``batch_size * N`` (each replica keeps the configured batch) and the learning rate is multiplied by N (the
  linear scaling rule of Goyal et al., 2017), so one step still sees the same per-image update.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import keras

from cifarlib.config import RunConfig
from cifarlib.errors import RunConfigError
from cifarlib.system import tpu_info

log = logging.getLogger(__name__)

# Training throughput of the reference network on a CPU, images per second per backend, as measured in
# docs/speed.md (the command, machine and date are there); the CPU-backend notice below quotes their ratio.
CPU_IMAGES_PER_SECOND = {"tensorflow": 168, "jax": 29}
TENSOR_CORE_CAPABILITY = (7, 0)


@dataclass(frozen=True)
class DeviceInfo:
    """What training will run on."""

    kind: str  # "gpu", "tpu" or "cpu"
    name: str
    count: int = 1  # accelerators of that kind (logical CPU devices for "cpu")
    compute_capability: tuple[int, int] | None = None  # NVIDIA GPUs only
    cpu_bf16: bool = False  # the CPU has AVX512-BF16 or AMX-BF16 instructions
    backend: str = "tensorflow"


@dataclass(frozen=True)
class DevicePlan:
    """The settings chosen for a run on a device."""

    device: DeviceInfo
    precision: str
    jit_compile: bool | str
    strategy: str  # "default", "mirrored" or "tpu"
    replicas: int

    def global_batch(self, batch_size: int) -> int:
        return batch_size * self.replicas

    def scaled_learning_rate(self, learning_rate: float) -> float:
        return learning_rate * self.replicas


def detect_device(backend: str | None = None) -> DeviceInfo:
    """The accelerator the active Keras backend sees."""
    backend = backend or keras.backend.backend()
    cpu_bf16 = _cpu_has_bf16()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return DeviceInfo(
                "gpu",
                details.get("device_name", "GPU"),
                len(gpus),
                details.get("compute_capability"),
                cpu_bf16,
                backend,
            )
        if tpu_info():
            return DeviceInfo("tpu", tpu_info(), 1, None, cpu_bf16, backend)
        return DeviceInfo("cpu", "CPU", len(tf.config.list_logical_devices("CPU")), None, cpu_bf16, backend)
    if backend == "jax":
        import jax

        devices = jax.devices()
        platform = devices[0].platform
        if platform == "gpu":
            capability = getattr(devices[0], "compute_capability", None)
            parsed = tuple(int(p) for p in str(capability).split(".")[:2]) if capability else None
            return DeviceInfo("gpu", devices[0].device_kind, len(devices), parsed, cpu_bf16, backend)
        if platform == "tpu":
            return DeviceInfo("tpu", devices[0].device_kind, len(devices), None, cpu_bf16, backend)
        return DeviceInfo("cpu", "CPU", len(devices), None, cpu_bf16, backend)
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return DeviceInfo(
                "gpu",
                torch.cuda.get_device_name(0),
                torch.cuda.device_count(),
                torch.cuda.get_device_capability(0),
                cpu_bf16,
                backend,
            )
        return DeviceInfo("cpu", "CPU", 1, None, cpu_bf16, backend)
    return DeviceInfo("cpu", "CPU", 1, None, cpu_bf16, backend)


def choose_precision(device: DeviceInfo) -> str:
    """The dtype policy for a device (see the module docstring)."""
    if device.kind == "gpu":
        capability = tuple(device.compute_capability or (0, 0))
        return "mixed_float16" if capability >= TENSOR_CORE_CAPABILITY else "float32"
    if device.kind == "tpu":
        return "mixed_bfloat16"
    if device.cpu_bf16 and device.backend == "tensorflow":
        return "mixed_bfloat16"
    return "float32"


def choose_jit_compile(device: DeviceInfo) -> bool | str:
    """XLA on or off for a device and backend (see the module docstring)."""
    if device.backend == "jax" or device.kind == "tpu":
        return True
    if device.backend == "torch" or device.kind == "cpu":
        return False
    return "auto"


def plan_device(config: RunConfig, device: DeviceInfo | None = None) -> DevicePlan:
    """Resolve the config's ``"auto"`` settings for the device."""
    device = device or detect_device()
    precision = choose_precision(device) if config.precision == "auto" else config.precision
    jit_compile = choose_jit_compile(device) if config.jit_compile == "auto" else config.jit_compile
    strategy = _choose_strategy(config.distribute, device)
    replicas = device.count if strategy != "default" else 1
    if device.kind == "cpu" and device.backend != "tensorflow":
        if device.backend in CPU_IMAGES_PER_SECOND:
            ratio = CPU_IMAGES_PER_SECOND["tensorflow"] / CPU_IMAGES_PER_SECOND[device.backend]
            log.warning(
                "Training on the CPU with the %s backend: on CPUs TensorFlow was measured about %.0fx faster.",
                device.backend,
                ratio,
            )
        else:
            log.warning(
                "Training on the CPU with the %s backend, which was not measured here; TensorFlow is the "
                "fastest CPU backend measured (%d images/s).",
                device.backend,
                CPU_IMAGES_PER_SECOND["tensorflow"],
            )
    return DevicePlan(device, precision, jit_compile, strategy, replicas)


def _choose_strategy(requested: str, device: DeviceInfo) -> str:
    if requested == "none":
        return "default"
    if device.backend != "tensorflow":
        if requested in ("mirrored", "tpu"):
            raise RunConfigError(
                f"distribute={requested!r} needs the TensorFlow backend, not {device.backend!r}"
            )
        if device.count > 1:
            log.warning("tf.distribute is TensorFlow-only: training on one of %d devices", device.count)
        return "default"
    if requested == "tpu" or (requested == "auto" and device.kind == "tpu"):
        return "tpu"
    if requested == "mirrored" or (requested == "auto" and device.kind == "gpu" and device.count > 1):
        return "mirrored"
    return "default"


def make_strategy(plan: DevicePlan):
    """The ``tf.distribute`` strategy of a plan (TensorFlow backend only)."""
    import tensorflow as tf

    if plan.strategy == "tpu":
        # Older Colab TPU runtimes name a remote TPU in COLAB_TPU_ADDR (found automatically); TPU VMs are "local".
        tpu = "" if os.environ.get("COLAB_TPU_ADDR") else os.environ.get("TPU_NAME", "local")
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if plan.strategy == "mirrored":
        kind = "GPU" if plan.device.kind == "gpu" else "CPU"
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices(kind)])
    return tf.distribute.get_strategy()


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
