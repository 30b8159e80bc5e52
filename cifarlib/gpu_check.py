"""The measurements of ``make gpu-check``, each run in its own process by ``scripts/gpu_check.py``.

The script (stdlib only, so that it can start on a machine where Keras is not installed yet) installs what is
missing, then runs this module once per part with ``python -m cifarlib.gpu_check PART ...`` under the Keras
backend it chose, with a time limit. Each part writes its figures to a JSON file as soon as it has them, so a
part that is stopped at its limit still leaves what it measured. The parts:

- ``speed``: the reference network on synthetic data, the way ``make bench`` trains it (``cifarlib.bench``),
  at each batch size asked for: images per second, seconds per 50,000-image epoch, achieved TFLOP/s. With
  ``--memory`` it adds, per batch size, the training memory estimate against the measured peak and the memory
  warning's decision. The script runs one process per batch size for that, because the frameworks' peak
  counters cannot be reset from Python under JAX: a fresh process is the reset.
- ``accuracy``: the tuned recipe on real training images through ``train``, like any run, stopped between
  epochs when the next epoch would pass the time given (``StopBeforeDeadline``).
- ``tiny-data``: writes a small archive in the layout of the real training images (synthetic pixels), so
  the CPU rehearsal exercises the same reader as the real run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import time
from pathlib import Path

# The network the speed and memory parts measure, and the recipe the accuracy part trains: each preset's name
# is written here once, so renaming a preset changes one line.
REFERENCE_PRESET = "reference"
TUNED_PRESET = "tuned"
BYTES_PER_GIB = 1024**3
# The real training images' layout inside their archive (one folder per class, JPEG files).
REAL_ARCHIVE_ROOT = "cifar10-jpeg/train"


def _write_json(path: Path, values: dict) -> None:
    """Replace ``path`` whole (temporary file, then rename), so a reader never sees half a file."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(values, indent=2, default=str))
    os.replace(temporary, path)


def _library_versions() -> dict:
    """Versions of the libraries that decide the figures, ``None`` for those not installed."""
    from importlib import metadata

    versions = {}
    for name in ("keras", "jax", "jaxlib", "torch", "tensorflow", "GPUtil"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _process_facts() -> dict:
    """Where cifarlib and Keras were imported from, and with which backend (the rehearsal test checks it)."""
    import keras

    import cifarlib

    return {
        "backend": keras.backend.backend(),
        "cifarlib_path": str(Path(cifarlib.__file__).resolve().parent),
        "keras_path": str(Path(keras.__file__).resolve().parent),
        "versions": _library_versions(),
    }


# ------------------------------------------------------------------------------------------------- speed


def build_reference_network():
    """The reference network as ``train`` builds it for that recipe (and warns about), at full width."""
    from cifarlib.config import RunConfig
    from cifarlib.model import build_model

    return build_model(RunConfig.from_preset(REFERENCE_PRESET))


def memory_warning(model, config, plan) -> str | None:
    """The message of the warning ``train`` gives when the training estimate exceeds the GPU's free memory."""
    from cifarlib.memory import warn_if_too_big

    return warn_if_too_big(model, config, plan)


def measure_speed(
    batch_sizes: list[int], *, timed_images: int, warmup_steps: int, with_memory: bool, result: Path
) -> dict:
    """Throughput (and with ``with_memory`` the memory figures) at each batch size, saved after each one."""
    import keras

    from cifarlib.bench import (
        EPOCH_IMAGES,
        _peak_memory_bytes,
        _reset_peak_memory,
        forward_multiply_adds,
        measure_throughput,
        peak_tflops,
        training_flops_per_image,
    )
    from cifarlib.config import RunConfig
    from cifarlib.device import plan_device

    backend = keras.backend.backend()
    plan = plan_device(RunConfig.from_preset(REFERENCE_PRESET))
    on_gpu = plan.device.kind == "gpu"
    peak = peak_tflops(plan.device.name)
    network = build_reference_network()
    report = {
        **_process_facts(),
        "device_kind": plan.device.kind,
        "device_name": plan.device.name,
        "compute_capability": plan.device.compute_capability,
        "precision": plan.precision,
        "jit_compile": plan.jit_compile,
        "parameters": int(network.count_params()),
        "forward_multiply_adds": forward_multiply_adds(network),
        "training_flops_per_image": training_flops_per_image(network),
        "peak_tflops": peak,
        "epoch_images": EPOCH_IMAGES,
        "warmup_steps": warmup_steps,
        "rows": [],
    }
    _write_json(result, report)
    for batch_size in batch_sizes:
        steps = max(2, timed_images // batch_size)
        if on_gpu:
            _reset_peak_memory(backend)  # a no-op under JAX, which is why each batch size has its own process
        measured = measure_throughput("cifarlib", batch_size=batch_size, steps=steps, warmup=warmup_steps)
        row = {
            "batch_size": batch_size,
            "timed_steps": steps,
            "warmup_steps": warmup_steps,
            "images_per_second": measured["images_per_second"],
            "seconds_per_epoch": measured["seconds_per_epoch"],
            "tflops": measured["tflops"],
            "peak_fraction": measured["tflops"] / peak if on_gpu and peak else None,
            "precision": measured["precision"],
            "jit_compile": measured["jit_compile"],
        }
        if on_gpu:
            # Read before anything else is built: the peak of the training just timed (Adam, the plan's precision).
            row["measured_peak_gib"] = _peak_memory_bytes(backend) / BYTES_PER_GIB
        if with_memory:
            row.update(_memory_figures(network, batch_size, plan, on_gpu))
        report["rows"].append(row)
        _write_json(result, report)
    return report


def _memory_figures(network, batch_size: int, plan, on_gpu: bool) -> dict:
    """The training estimate for the run just timed, and what the memory warning decides at this batch size."""
    from cifarlib.config import RunConfig
    from cifarlib.memory import estimate_memory
    from cifarlib.system import gpu_info

    # measure_throughput trains with Adam at the plan's precision; the estimate is asked for the same.
    figures = {
        "estimated_gib": estimate_memory(
            network, batch_size, method="training", optimizer="adam", precision=plan.precision
        ),
        "estimate_optimizer": "adam",
    }
    if not on_gpu:
        figures["warning"] = {"decision": "no GPU", "message": None}
        return figures
    # What the warning compares against: the first GPU's free memory as GPUtil reads it now, in this process
    # (after the framework has reserved its share, as it would have in a real run).
    gpus = gpu_info()
    warning = {"gpus_seen": len(gpus), "gputil": _gputil_status()}
    if gpus:
        warning["free_gib"] = gpus[0]["memory_free_mib"] / 1024
        warning["total_gib"] = gpus[0]["memory_total_mib"] / 1024
    config = RunConfig.from_preset(REFERENCE_PRESET, batch_size=batch_size)
    message = memory_warning(network, config, plan)
    if message:
        warning["decision"] = "warns"
    else:
        # Without a reading the warning cannot fire: say so rather than report a silence that checked nothing.
        warning["decision"] = (
            "silent" if gpus else f"silent: no free-memory reading (GPUtil: {warning['gputil']})"
        )
    warning["message"] = message
    figures["warning"] = warning
    return figures


def _gputil_status() -> str:
    """Whether GPUtil imports here: ``gpu_info`` reads no GPU when it does not (GPUtil 1.4 imports distutils,
    which Python 3.12 dropped; only setuptools' stand-in keeps it importable there)."""
    try:
        import GPUtil  # noqa: F401
    except Exception as error:  # noqa: BLE001 - any import failure silences the warning the same way
        return f"does not import ({type(error).__name__}: {error})"
    return "imports"


# ---------------------------------------------------------------------------------------------- accuracy


def _stop_before_deadline_class():
    import keras

    class StopBeforeDeadline(keras.callbacks.Callback):
        """Ends training after an epoch when one more epoch as long as the last would pass ``deadline``.

        Stopping only between epochs keeps every recorded epoch whole; the part's process time limit is the
        backstop if an epoch runs far longer than the one before it.
        """

        def __init__(self, deadline: float):
            super().__init__()
            self.deadline = deadline
            self.stopped_early = False

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            last_epoch_seconds = time.time() - self._started
            if time.time() + last_epoch_seconds > self.deadline and epoch + 1 < self.params.get("epochs", 0):
                self.stopped_early = True
                self.model.stop_training = True

    return StopBeforeDeadline


def measure_accuracy(
    data: str,
    *,
    workspace: Path,
    run_id: str,
    stop_at: float,
    seed: int,
    epochs: int | None,
    batch_size: int | None,
    result: Path,
) -> dict:
    """Train the tuned recipe through ``train`` until ``stop_at`` (a Unix time) and report every epoch."""
    from cifarlib.config import RunConfig
    from cifarlib.train import train

    overrides = {"data": data, "seed": seed}
    if epochs is not None:
        overrides["epochs"] = epochs
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    config = RunConfig.from_preset(TUNED_PRESET, **overrides)
    report = {
        **_process_facts(),
        "run_id": run_id,
        "preset": TUNED_PRESET,
        "data": data,
        "seed": seed,
        "validation_fraction": config.validation_fraction,
        "batch_size": config.batch_size,
        "epochs_planned": config.epochs,
        "stop_at": stop_at,
    }
    _write_json(result, report)
    stopper = _stop_before_deadline_class()(stop_at)
    started = time.time()
    outcome = train(config, workspace, run_id=run_id, verbose=2, callbacks=[stopper])
    report.update(
        {
            "wall_seconds": time.time() - started,
            "stopped_by_time_limit": stopper.stopped_early,
            "summary": outcome.summary,
            "history": outcome.history.to_dict("records"),
        }
    )
    _write_json(result, report)
    return report


def write_tiny_training_archive(path: Path, images_per_class: int = 30, *, seed: int = 0) -> Path:
    """A ``.tar.gz`` laid out like the real training images (``cifar10-jpeg/train/<class>/NNNN.jpg``).

    The pixels are ``cifarlib.data``'s synthetic ones, so a network trained on them learns something; the
    archive exists so the CPU rehearsal reads images through the same path as the real run.
    """
    import io

    from PIL import Image

    from cifarlib.data import CLASS_NAMES, synthetic_cifar10

    (images, labels), _ = synthetic_cifar10(len(CLASS_NAMES) * images_per_class, 0, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(range(len(CLASS_NAMES)), 0)
    with tarfile.open(path, "w:gz") as archive:
        for image, label in zip(images, labels):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=95)
            member = tarfile.TarInfo(f"{REAL_ARCHIVE_ROOT}/{CLASS_NAMES[label]}/{counts[label]:04d}.jpg")
            member.size = buffer.tell()
            buffer.seek(0)
            archive.addfile(member, buffer)
            counts[label] += 1
    return path


# --------------------------------------------------------------------------------------------- command line


def _batch_sizes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cifarlib.gpu_check", description=__doc__.split("\n")[0])
    parts = parser.add_subparsers(dest="part", required=True)
    speed = parts.add_parser("speed", help="throughput (and memory) of the reference network")
    speed.add_argument("--batch-sizes", type=_batch_sizes, required=True)
    speed.add_argument("--timed-images", type=int, required=True, help="images per timed run, per batch size")
    speed.add_argument("--warmup-steps", type=int, default=3)
    speed.add_argument("--memory", action="store_true", help="add the memory estimate, peak and warning")
    speed.add_argument("--result", type=Path, required=True)
    accuracy = parts.add_parser("accuracy", help="the tuned recipe on real images until a time")
    accuracy.add_argument("--data", required=True)
    accuracy.add_argument("--workspace", type=Path, required=True)
    accuracy.add_argument("--run-id", required=True)
    accuracy.add_argument(
        "--stop-at", type=float, required=True, help="Unix time after which no epoch starts"
    )
    accuracy.add_argument("--seed", type=int, default=0)
    accuracy.add_argument("--epochs", type=int, default=None, help="default: the recipe's own budget")
    accuracy.add_argument("--batch-size", type=int, default=None, help="default: the recipe's own")
    accuracy.add_argument("--result", type=Path, required=True)
    tiny = parts.add_parser("tiny-data", help="write a small archive in the real images' layout")
    tiny.add_argument("--path", type=Path, required=True)
    tiny.add_argument("--images-per-class", type=int, default=30)
    args = parser.parse_args(argv)

    if args.part == "speed":
        measure_speed(
            args.batch_sizes,
            timed_images=args.timed_images,
            warmup_steps=args.warmup_steps,
            with_memory=args.memory,
            result=args.result,
        )
    elif args.part == "accuracy":
        measure_accuracy(
            args.data,
            workspace=args.workspace,
            run_id=args.run_id,
            stop_at=args.stop_at,
            seed=args.seed,
            epochs=args.epochs,
            batch_size=args.batch_size,
            result=args.result,
        )
    else:
        write_tiny_training_archive(args.path, args.images_per_class)
    return 0


if __name__ == "__main__":
    sys.exit(main())
