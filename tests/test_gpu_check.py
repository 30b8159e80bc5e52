"""The GPU check (scripts/gpu_check.py) rehearsed on the CPU, from a copy holding only what travels to a GPU machine.

The rehearsal runs the whole script with ``--tiny`` under the JAX backend, as a GPU machine would run it at full
size, so that the first GPU call is not spent on an import error. The smaller tests check the pieces a CPU run
cannot reach: installing carried wheels offline, and a part that fails or overruns its limit.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPT = REPOSITORY / "scripts" / "gpu_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _travelling_files() -> list[str]:
    """Tracked files and untracked ones git does not ignore: what a GPU machine receives of the checkout."""
    if shutil.which("git") is None or not (REPOSITORY / ".git").exists():
        pytest.skip("needs a git checkout to know which files travel")
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        capture_output=True,
        check=True,
    )
    return [name for name in listing.stdout.decode().split("\0") if name]


def _write_wheel(folder: Path, distribution: str, module: str) -> Path:
    """A minimal pure-Python wheel holding ``module`` (pip installs it like any other)."""
    info = f"{distribution}-1.0.dist-info"
    path = folder / f"{distribution}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{module}.py", "ANSWER = 42\n")
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")
    return path


def test_carried_wheels_install_offline_only_where_missing(tmp_path):
    script = _load_script()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _write_wheel(wheels, "cifarlib_probe", "cifarlib_probe")
    # pytest is installed here, so "auto" must leave its (fake) wheel alone rather than shadow it.
    _write_wheel(wheels, "pytest", "pytest_shadow")
    record = script.install_carried_wheels(wheels, tmp_path / "site", "auto")

    assert record["installed"] == ["cifarlib_probe-1.0-py3-none-any.whl"]
    assert record["already_present"] == ["pytest-1.0-py3-none-any.whl"]
    probe = subprocess.run(
        [sys.executable, "-c", "import cifarlib_probe; print(cifarlib_probe.ANSWER)"],
        env={**os.environ, "PYTHONPATH": record["target"]},
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "42", probe.stderr
    assert not (tmp_path / "site" / "pytest_shadow.py").exists()

    everything = script.install_carried_wheels(wheels, tmp_path / "site-all", "always")
    assert len(everything["installed"]) == 2
    assert script.install_carried_wheels(wheels, tmp_path / "site-none", "never")["installed"] == []


def test_a_failing_or_overrunning_part_is_recorded_with_its_cause(tmp_path):
    script = _load_script()
    failing = script.run_part(
        "fails",
        [sys.executable, "-c", "raise ValueError('no such batch size')"],
        env=dict(os.environ),
        limit=60,
        log=tmp_path / "fails.log",
    )
    assert failing.status == "failed"
    assert "ValueError: no such batch size" in failing.cause

    slow = script.run_part(
        "slow",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env=dict(os.environ),
        limit=1,
        log=tmp_path / "slow.log",
    )
    assert slow.status == "timed out"
    assert slow.seconds < 30


def test_the_report_states_gpu_figures_a_cpu_rehearsal_cannot_reach():
    """The GPU-only branches of the report, fed the shapes the parts write (the figures here are made up)."""
    script = _load_script()
    facts = {
        "device_kind": "gpu",
        "device_name": "NVIDIA H200",
        "peak_tflops": 989.0,
        "parameters": 1_420_834,
        "forward_multiply_adds": 257_630_848,
        "training_flops_per_image": 6.0 * 257_630_848,
        "precision": "mixed_float16",
        "jit_compile": True,
        "warmup_steps": 3,
        "versions": {"keras": "3.15.1", "tensorflow": None},
    }
    no_reading = "silent: no free-memory reading (GPUtil: does not import (ModuleNotFoundError: distutils))"
    rows = [
        {"batch_size": 64, "images_per_second": 8000.0, "seconds_per_epoch": 6.25, "tflops": 12.37},
        {"batch_size": 512, "images_per_second": 20000.0, "seconds_per_epoch": 2.5, "tflops": 30.92},
    ]
    for row, peak, estimate, warning in zip(
        rows,
        (1.0, 4.0),
        (0.9, 3.0),
        (
            {"decision": no_reading, "message": None},
            {"decision": "silent", "free_gib": 34.5, "message": None},
        ),
    ):
        row.update(peak_fraction=row["tflops"] / 989.0, measured_peak_gib=peak, timed_steps=50)
        row.update(estimated_gib=estimate, warning=warning)
    record = {
        "started": "2026-11-29T13:00:00+00:00",
        "wall_seconds": 530.0,
        "budget_seconds": 540,
        "sizes": "full",
        "backend": "jax",
        "command": "python3 scripts/gpu_check.py --out /tmp/gpu-check",
        "machine": {
            "gpus": ["NVIDIA H200, 143771 MiB, 580.159.04"],
            "python": "3.12.3",
            "cpus": 16,
            "preallocate": "unset (JAX reserves 75% of the GPU)",
            "versions": {},
        },
        "wheels": {"installed": ["keras-3.15.1-py3-none-any.whl"]},
        "parts": [{"name": "speed-jax-b64", "status": "ok", "seconds": 40.0, "limit": 200.0, "cause": ""}],
        "speed": {"jax": {"facts": facts, "rows": rows, "with_memory": True}},
        "accuracy": {
            "data": ".gpu-carry/cifar10-jpeg-train.tar.gz",
            "validation_fraction": 0.1,
            "seed": 0,
            "batch_size": 64,
            "epochs_planned": 40,
            "stopped_by_time_limit": True,
            "fit_seconds": 250.0,
            "wall_seconds": 270.0,
            "summary": {
                "precision": "mixed_float16",
                "train_images": 45000,
                "fit_seconds_this_session": 240.0,
                "final_val_accuracy": 0.8,
            },
            "history": [{"epoch": 1.0, "val_accuracy": 0.5, "accuracy": 0.4, "seconds": 10.0}],
        },
    }
    text = script.format_report(record)

    assert "GPU: NVIDIA H200, 143771 MiB, 580.159.04." in text
    assert "keras 3.15.1, tensorflow not installed" in text
    assert "peak: 989 TFLOP/s" in text
    assert "Precision mixed_float16, XLA on; timed after 3 warm-up steps." in text
    assert "| 512 | 20,000 | 2.50 | 30.92 | 3.1% | 4.00 | 50 |" in text
    assert "Fastest: batch 512, 2.50 s per 50,000-image epoch." in text
    assert f"| 64 | 0.90 | 1.00 | -10.0% | {no_reading} | none |" in text
    assert "| 512 | 3.00 | 4.00 | -25.0% | silent | 34.5 |" in text
    assert "1 of 40 planned epochs (stopped between epochs at its time limit)" in text
    assert "| 1 | 50.00% | 40.00% | 10.0 |" in text
    assert "test-time augmentation: 80.00% on the validation split" in text
    assert "no GPU" not in text


@pytest.mark.slow
def test_the_whole_check_rehearsed_on_the_cpu_from_a_copy_of_what_travels(tmp_path):
    copy = tmp_path / "repository"
    for name in _travelling_files():
        source = REPOSITORY / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # Compiling dominates a CPU rehearsal; XLA's cheaper CPU code generation changes no code path of the check.
    cheaper = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env.update(KERAS_BACKEND="jax", XLA_FLAGS=cheaper, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [
            sys.executable,
            "scripts/gpu_check.py",
            "--tiny",
            "--out",
            str(out),
            "--wheels",
            str(tmp_path / "none"),
            # Limits sized for a slow, shared CPU: this test checks what the parts write, not how fast they are.
            "--budget-seconds=1200",
            "--speed-seconds=600",
            "--comparison-seconds=300",
            "--accuracy-seconds=300",
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = (out / "report.md").read_text()
    record = json.loads((out / "report.json").read_text())
    for heading in ("## Parts", "## 1. Speed", "## 2. Memory", "## 3. Accuracy"):
        assert heading in report

    statuses = {part["name"]: part["status"] for part in record["parts"]}
    assert statuses["speed-jax-b8"] == statuses["speed-jax-b16"] == "ok", record["parts"]
    assert statuses["accuracy-jax"] == "ok", record["parts"]
    if importlib.util.find_spec("torch") is None:
        assert statuses["speed-torch"] == "skipped"
        assert "| speed-torch | skipped | 0 |  | torch not installed |" in report
    else:
        assert statuses["speed-torch-b16-8"] == "ok", record["parts"]
        torch_rows = record["speed"]["torch"]["rows"]
        assert [row["batch_size"] for row in torch_rows] == [8, 16]
        assert all(row["images_per_second"] > 0 for row in torch_rows)

    # The parts ran this copy's cifarlib under JAX, on a machine without a GPU.
    speed = record["speed"]["jax"]
    assert Path(speed["facts"]["cifarlib_path"]) == (copy / "cifarlib").resolve()
    assert speed["facts"]["backend"] == "jax"
    assert speed["facts"]["parameters"] == 1_420_834
    assert "no GPU (nvidia-smi found none)" in report or shutil.which("nvidia-smi")
    rows = {row["batch_size"]: row for row in speed["rows"]}
    assert sorted(rows) == [8, 16]
    for batch_size, row in rows.items():
        assert row["images_per_second"] > 0
        assert row["seconds_per_epoch"] == pytest.approx(50_000 / row["images_per_second"])
        assert row["tflops"] == pytest.approx(
            speed["facts"]["training_flops_per_image"] * row["images_per_second"] / 1e12
        )
        assert row["peak_fraction"] is None and "measured_peak_gib" not in row
        assert row["warning"]["decision"] == "no GPU"
        assert f"| {batch_size} | {row['estimated_gib']:.2f} | no GPU | no GPU | no GPU | no GPU |" in report
    # The estimate grows with the batch (activations), and the constant part (weights, Adam) stays.
    assert rows[8]["estimated_gib"] < rows[16]["estimated_gib"] < 2 * rows[8]["estimated_gib"]

    accuracy = record["accuracy"]
    assert accuracy["epochs_planned"] == 3
    assert accuracy["stopped_by_time_limit"] is True
    assert 1 <= len(accuracy["history"]) < 3
    assert all(0.0 <= epoch["val_accuracy"] <= 1.0 for epoch in accuracy["history"])
    assert (
        f"{len(accuracy['history'])} of 3 planned epochs (stopped between epochs at its time limit)" in report
    )
    run_folder = out / "workspace" / "runs" / accuracy["run_id"]
    assert (run_folder / "history.csv").is_file() and (run_folder / "summary.json").is_file()
