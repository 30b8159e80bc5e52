"""What the runtime has to train with: GPUs (GPUtil), a TPU, CPU and RAM (psutil), printed readably (humanize).

The reference notebook read ``GPUtil.getGPUs()[0]`` and crashed on a runtime without a GPU; here a missing
GPU, a missing ``nvidia-smi`` or a TPU runtime are normal answers, never errors.
"""

from __future__ import annotations

import glob
import os
import platform
import sys

import humanize
import psutil

# Environment variables Colab and Cloud TPU runtimes set, most specific first.
TPU_ENV_VARS = ("TPU_ACCELERATOR_TYPE", "TPU_NAME", "COLAB_TPU_ADDR", "TPU_WORKER_HOSTNAMES")


def gpu_info() -> list[dict]:
    """Every NVIDIA GPU GPUtil sees, with memory in MiB and load in [0, 1]; empty where there is none."""
    try:
        import GPUtil

        gpus = GPUtil.getGPUs()
    except Exception:  # noqa: BLE001 - no driver, no nvidia-smi, or an unparsable answer all mean "none".
        return []
    return [
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
    import keras

    return {
        "gpus": gpu_info(),
        "tpu": tpu_info(),
        "cpu_count": os.cpu_count(),
        "ram_total_bytes": int(memory.total),
        "ram_available_bytes": int(memory.available),
        "process_rss_bytes": int(psutil.Process().memory_info().rss),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "keras_version": keras.__version__,
        "keras_backend": keras.backend.backend(),
    }


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
    else:
        lines.append("GPU: none found (no NVIDIA GPU or no nvidia-smi); training will use the CPU or a TPU")
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
