"""The system report on a machine with no GPU, with a (faked) GPU, without GPUtil, and on a TPU runtime."""

import subprocess
import sys
from types import SimpleNamespace

import GPUtil
import pytest

from cifarlib import format_system_report, system, system_report

# What `nvidia-smi --query-gpu=index,name,memory.total,memory.used,memory.free,utilization.gpu
# --format=csv,noheader,nounits` prints on a two-GPU machine.
NVIDIA_SMI_ANSWER = "0, NVIDIA H200, 143771, 1024, 142747, 25\n1, NVIDIA H200, 143771, 0, 143771, [N/A]\n"


@pytest.fixture
def no_tpu(monkeypatch):
    for variable in system.TPU_ENV_VARS:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(system.glob, "glob", lambda pattern: [])


@pytest.fixture
def no_nvidia_smi(monkeypatch, tmp_path):
    """A PATH where nvidia-smi does not exist, whatever this machine has."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


def fake_nvidia_smi(monkeypatch, folder, *, output="", stderr="", status=0):
    """An nvidia-smi executable that records its arguments and prints ``output``; the only one on PATH."""
    script = folder / "nvidia-smi"
    (folder / "answer.txt").write_text(output)
    (folder / "error.txt").write_text(stderr)
    script.write_text(
        f'#!/bin/sh\necho "$@" > "{folder}/args.txt"\n/bin/cat "{folder}/answer.txt"\n'
        f'/bin/cat "{folder}/error.txt" >&2\nexit {status}\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))


@pytest.fixture
def gputil_unimportable(monkeypatch):
    """Importing GPUtil fails, as on Python 3.12+ where its ``import distutils`` does."""
    monkeypatch.setitem(sys.modules, "GPUtil", None)


def test_no_gpu_is_reported_plainly(monkeypatch, no_tpu, no_nvidia_smi):
    monkeypatch.setattr(GPUtil, "getGPUs", lambda: [])
    report = system_report()
    assert report["gpus"] == [] and report["tpu"] is None and report["gpu_error"] is None
    assert report["ram_available_bytes"] > 0 and report["process_rss_bytes"] > 0
    text = format_system_report(report)
    assert "GPU: none found" in text and "TPU: none" in text and "RAM available" in text


def test_missing_nvidia_smi_is_not_a_crash(monkeypatch, no_tpu, no_nvidia_smi):
    def broken():
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(GPUtil, "getGPUs", broken)
    assert system_report()["gpus"] == []


def test_gpu_is_described(monkeypatch, no_tpu):
    fake = SimpleNamespace(
        id=0, name="NVIDIA H200", memoryTotal=143771.0, memoryUsed=1024.0, memoryFree=142747.0, load=0.25
    )
    monkeypatch.setattr(GPUtil, "getGPUs", lambda: [fake])
    report = system_report()
    assert report["gpus"][0]["name"] == "NVIDIA H200"
    text = format_system_report(report)
    assert "GPU 0: NVIDIA H200" in text and "total 140.4 GiB" in text and "utilisation 25%" in text


def test_without_gputil_the_gpus_come_from_nvidia_smi(monkeypatch, tmp_path, no_tpu, gputil_unimportable):
    fake_nvidia_smi(monkeypatch, tmp_path, output=NVIDIA_SMI_ANSWER)
    report = system_report()
    assert (tmp_path / "args.txt").read_text().split() == [
        "--query-gpu=index,name,memory.total,memory.used,memory.free,utilization.gpu",
        "--format=csv,noheader,nounits",
    ]
    assert [gpu["index"] for gpu in report["gpus"]] == [0, 1]
    assert report["gpus"][0]["memory_free_mib"] == 142747.0 and report["gpus"][0]["utilization"] == 0.25
    assert report["gpus"][1]["utilization"] == 0.0
    text = format_system_report(report)
    assert "GPU 0: NVIDIA H200" in text and "GPU 1: NVIDIA H200" in text and "total 140.4 GiB" in text
    assert "note: GPUtil could not be imported" in text and "read from nvidia-smi" in text
    assert "none found" not in text
    assert system.accelerator_summary(report) == "accelerator: GPU (NVIDIA H200, 2 GPUs)"


def test_without_gputil_and_without_nvidia_smi_there_is_no_gpu(no_tpu, no_nvidia_smi, gputil_unimportable):
    text = format_system_report()
    assert "GPU: none found" in text and "note: GPUtil could not be imported" in text


def test_a_failing_nvidia_smi_is_unknown_not_none(monkeypatch, tmp_path, no_tpu, gputil_unimportable):
    fake_nvidia_smi(
        monkeypatch,
        tmp_path,
        stderr="NVIDIA-SMI has failed because it couldn't communicate with the driver.",
        status=9,
    )
    report = system_report()
    text = format_system_report(report)
    assert report["gpus"] == [] and "none found" not in text
    assert "GPU: unknown (nvidia-smi failed (exit 9): NVIDIA-SMI has failed" in text


def test_gputil_answering_none_is_checked_with_nvidia_smi(monkeypatch, tmp_path, no_tpu):
    """GPUtil returns [] when its nvidia-smi call fails; the report asks nvidia-smi itself before saying none."""
    monkeypatch.setattr(GPUtil, "getGPUs", lambda: [])
    fake_nvidia_smi(monkeypatch, tmp_path, output=NVIDIA_SMI_ANSWER)
    assert len(system_report()["gpus"]) == 2


def test_tpu_runtime_names_the_tpu(monkeypatch, no_tpu, no_nvidia_smi):
    monkeypatch.setattr(GPUtil, "getGPUs", lambda: [])
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v2-8")
    assert system_report()["tpu"] == "v2-8"
    assert "TPU: v2-8" in format_system_report()


def test_the_report_imports_no_tensorflow():
    """``python -m cifarlib report`` must start quickly: no TensorFlow import on its way."""
    code = "import sys, cifarlib; cifarlib.system_report(); print('tensorflow' in sys.modules)"
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert answer.stdout.strip() == "False"
