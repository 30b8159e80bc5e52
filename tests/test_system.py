"""The system report on a machine with no GPU, with a (faked) GPU, and on a TPU runtime."""

from types import SimpleNamespace

import GPUtil
import pytest

from cifarlib import format_system_report, system, system_report


@pytest.fixture
def no_tpu(monkeypatch):
    for variable in system.TPU_ENV_VARS:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(system.glob, "glob", lambda pattern: [])


def test_no_gpu_is_reported_plainly(monkeypatch, no_tpu):
    monkeypatch.setattr(GPUtil, "getGPUs", lambda: [])
    report = system_report()
    assert report["gpus"] == [] and report["tpu"] is None
    assert report["ram_available_bytes"] > 0 and report["process_rss_bytes"] > 0
    text = format_system_report(report)
    assert "GPU: none found" in text and "TPU: none" in text and "RAM available" in text


def test_missing_nvidia_smi_is_not_a_crash(monkeypatch, no_tpu):
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


def test_tpu_runtime_names_the_tpu(monkeypatch, no_tpu):
    monkeypatch.setattr(GPUtil, "getGPUs", lambda: [])
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v2-8")
    assert system_report()["tpu"] == "v2-8"
    assert "TPU: v2-8" in format_system_report()
