"""What the runtime has to train with: GPUs (GPUtil or nvidia-smi), a TPU, CPU and RAM (psutil), printed readably.

The reference notebook read ``GPUtil.getGPUs()[0]`` and crashed on a runtime without a GPU; here a missing
GPU, a missing ``nvidia-smi`` or a TPU runtime are normal answers, never errors. GPUtil 1.4 imports
``distutils``, which Python 3.12 removed: where GPUtil cannot be imported, the GPUs are read from
``nvidia-smi --query-gpu`` directly and the report says so, so it never says "no GPU" on a machine that has one.
Nothing here imports TensorFlow, so ``python -m cifarlib report`` starts quickly.
"""

from __future__ import annotations

import csv
import glob
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import humanize
import psutil

# Environment variables Colab and Cloud TPU runtimes set, most specific first.
TPU_ENV_VARS = ("TPU_ACCELERATOR_TYPE", "TPU_NAME", "COLAB_TPU_ADDR", "TPU_WORKER_HOSTNAMES")
# The nvidia-smi query used where GPUtil is unavailable: the same fields GPUtil reads, in this order.
NVIDIA_SMI_FIELDS = ("index", "name", "memory.total", "memory.used", "memory.free", "utilization.gpu")
NVIDIA_SMI_TIMEOUT_S = 30


def gpu_info() -> list[dict]:
    """Every NVIDIA GPU, with memory in MiB and load in [0, 1]; empty where there is none."""
    return gpu_query()["gpus"]


def gpu_query() -> dict:
    """The GPUs and how they were found: ``{"gpus": [...], "note": str | None, "error": str | None}``.

    ``note`` says that GPUtil could not be imported (and nvidia-smi was asked instead); ``error`` says that
    nvidia-smi exists but failed, in which case whether there is a GPU is unknown.
    """
    try:
        import GPUtil
    except Exception as error:  # noqa: BLE001 - ImportError for distutils, or any error inside GPUtil's import.
        note = f"GPUtil could not be imported ({error}); the GPUs were read from nvidia-smi"
        gpus, failure = _nvidia_smi_gpus()
        return {"gpus": gpus, "note": note, "error": failure}
    try:
        gpus = GPUtil.getGPUs()
    except Exception:  # noqa: BLE001 - GPUtil's nvidia-smi call failed in a way it does not catch.
        gpus = []
    if not gpus:
        # GPUtil answers "none" whenever its nvidia-smi call fails; asking nvidia-smi again tells a machine
        # without a GPU from one whose driver is broken.
        gpus, failure = _nvidia_smi_gpus()
        return {"gpus": gpus, "note": None, "error": failure}
    described = [
        {
            "index": gpu.id,
            "name": gpu.name,
            "memory_total_mib": float(gpu.memoryTotal),
            "memory_used_mib": float(gpu.memoryUsed),
            "memory_free_mib": float(gpu.memoryFree),
            "utilization": float(gpu.load),
        }
        for gpu in gpus
    ]
    return {"gpus": described, "note": None, "error": None}


def _nvidia_smi_gpus() -> tuple[list[dict], str | None]:
    """The GPUs nvidia-smi lists, and why it could not list them (``None`` when it answered)."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return [], None
    command = [executable, f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}", "--format=csv,noheader,nounits"]
    try:
        answer = subprocess.run(command, capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"nvidia-smi failed: {error}"
    if answer.returncode != 0:
        reason = (answer.stderr or answer.stdout).strip().splitlines()
        return [], f"nvidia-smi failed (exit {answer.returncode}): {reason[0] if reason else 'no message'}"
    gpus = []
    for row in csv.reader(line for line in answer.stdout.splitlines() if line.strip()):
        values = dict(zip(NVIDIA_SMI_FIELDS, (value.strip() for value in row)))
        try:
            gpus.append(
                {
                    "index": int(values["index"]),
                    "name": values["name"],
                    "memory_total_mib": float(values["memory.total"]),
                    "memory_used_mib": float(values["memory.used"]),
                    "memory_free_mib": float(values["memory.free"]),
                    "utilization": _percent(values["utilization.gpu"]),
                }
            )
        except (KeyError, ValueError):
            return gpus, f"nvidia-smi gave an unexpected line: {','.join(row)!r}"
    return gpus, None


def _percent(text: str) -> float:
    """nvidia-smi's utilisation in [0, 1]; "[N/A]" (some virtualised GPUs) reads as 0."""
    return 0.0 if text.startswith("[") else float(text) / 100


def tpu_info() -> str | None:
    """The TPU's name (e.g. ``v2-8``) on a TPU runtime, else ``None``."""
    for variable in TPU_ENV_VARS:
        value = os.environ.get(variable)
        if value:
            return value if variable == "TPU_ACCELERATOR_TYPE" else f"TPU ({variable}={value})"
    if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"):
        return "TPU (device files /dev/accel*)"
    return None


def system_report() -> dict:
    """GPUs, TPU, CPU, RAM and this process's size, as a dict (``format_system_report`` prints it)."""
    memory = psutil.virtual_memory()
    gpus = gpu_query()
    return {
        "gpus": gpus["gpus"],
        "gpu_note": gpus["note"],
        "gpu_error": gpus["error"],
        "tpu": tpu_info(),
        "cpu_count": os.cpu_count(),
        "ram_total_bytes": int(memory.total),
        "ram_available_bytes": int(memory.available),
        "process_rss_bytes": int(psutil.Process().memory_info().rss),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "keras_version": importlib.metadata.version("keras"),
        "keras_backend": keras_backend(),
    }


def keras_backend() -> str:
    """The backend Keras uses or will use, without importing Keras (which would import TensorFlow).

    Keras reads ``$KERAS_BACKEND``, else ``backend`` in ``$KERAS_HOME/keras.json`` (default ``~/.keras``), else
    uses TensorFlow; once Keras is imported, its own answer is taken.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        return json.loads((keras_home / "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def format_system_report(report: dict | None = None) -> str:
    """The report as a few human-readable lines."""
    report = system_report() if report is None else report
    mib = 1024**2
    lines = []
    if report["gpus"]:
        for gpu in report["gpus"]:
            lines.append(
                f"GPU {gpu['index']}: {gpu['name']} | memory free {humanize.naturalsize(gpu['memory_free_mib'] * mib, binary=True)}"
                f" | used {humanize.naturalsize(gpu['memory_used_mib'] * mib, binary=True)}"
                f" | total {humanize.naturalsize(gpu['memory_total_mib'] * mib, binary=True)}"
                f" | utilisation {gpu['utilization']:.0%}"
            )
    elif report.get("gpu_error"):
        lines.append(f"GPU: unknown ({report['gpu_error']})")
    else:
        lines.append("GPU: none found (no NVIDIA GPU or no nvidia-smi); training will use the CPU or a TPU")
    if report.get("gpu_note"):
        lines.append(f"note: {report['gpu_note']}")
    lines.append(f"TPU: {report['tpu']}" if report["tpu"] else "TPU: none")
    lines.append(
        f"CPU: {report['cpu_count']} cores | RAM available {humanize.naturalsize(report['ram_available_bytes'], binary=True)}"
        f" of {humanize.naturalsize(report['ram_total_bytes'], binary=True)}"
        f" | this process {humanize.naturalsize(report['process_rss_bytes'], binary=True)}"
    )
    lines.append(
        f"Python {report['python']} | Keras {report['keras_version']} ({report['keras_backend']} backend) | {report['platform']}"
    )
    return "\n".join(lines)


def print_system_report() -> dict:
    """Print the readable report and return the dict."""
    report = system_report()
    print(format_system_report(report))
    return report


def accelerator_summary(report: dict | None = None, *, required: bool = False) -> str:
    """One line naming the accelerator training will use; with ``required``, raise where there is none."""
    report = system_report() if report is None else report
    if report["gpus"]:
        return f"accelerator: GPU ({report['gpus'][0]['name']}" + (
            f", {len(report['gpus'])} GPUs)" if len(report["gpus"]) > 1 else ")"
        )
    if report["tpu"]:
        return f"accelerator: TPU ({report['tpu']})"
    if required:
        raise RuntimeError(
            "no GPU or TPU found: in Colab choose Runtime > Change runtime type > GPU, then rerun"
        )
    return "accelerator: none; training will run on the CPU (slow: minutes per epoch for the full network)"
