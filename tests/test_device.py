"""Issue 5: device choices (devices faked), the two-replica CPU run, the memory warning, the JAX backend,
the input pipeline and the benchmark's FLOP count."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cifarlib.bench import forward_multiply_adds, training_flops_per_image
from cifarlib.config import REFERENCE_MODULES, RunConfig
from cifarlib.device import DeviceInfo, choose_jit_compile, choose_precision, plan_device
from cifarlib.errors import RunConfigError
from cifarlib.formatting import format_accuracy
from cifarlib.memory import warn_if_too_big
from cifarlib.model import build_inception
from cifarlib.pipeline import make_inputs

H200 = DeviceInfo("gpu", "NVIDIA H200", 1, (9, 0))
P100 = DeviceInfo("gpu", "Tesla P100", 1, (6, 0))
TPU = DeviceInfo("tpu", "v2-8", 8)
CPU_BF16 = DeviceInfo("cpu", "CPU", 1, None, cpu_bf16=True)
OLD_CPU = DeviceInfo("cpu", "CPU", 1, None, cpu_bf16=False)


@pytest.mark.parametrize(
    "device, precision, jit",
    [
        (H200, "mixed_float16", "auto"),
        (P100, "float32", "auto"),  # no tensor cores
        (TPU, "mixed_bfloat16", True),
        (CPU_BF16, "mixed_bfloat16", False),  # measured: bf16 1.6x faster, XLA 3x slower on this CPU
        (OLD_CPU, "float32", False),
        (DeviceInfo("cpu", "CPU", 1, None, True, backend="jax"), "float32", True),
        (DeviceInfo("gpu", "NVIDIA A100", 1, (8, 0), backend="torch"), "mixed_float16", False),
    ],
)
def test_precision_and_xla_per_device(device, precision, jit):
    assert choose_precision(device) == precision
    assert choose_jit_compile(device) == jit


def test_config_overrides_the_device_choice():
    plan = plan_device(RunConfig(precision="float32", jit_compile=True), H200)
    assert (plan.precision, plan.jit_compile) == ("float32", True)


def test_several_gpus_mirror_and_scale_batch_and_learning_rate():
    two_gpus = DeviceInfo("gpu", "NVIDIA H100", 2, (9, 0))
    plan = plan_device(RunConfig(batch_size=256, learning_rate=1e-3), two_gpus)
    assert (plan.strategy, plan.replicas) == ("mirrored", 2)
    assert plan.global_batch(256) == 512 and plan.scaled_learning_rate(1e-3) == pytest.approx(2e-3)
    assert plan_device(RunConfig(distribute="none"), two_gpus).strategy == "default"
    assert plan_device(RunConfig(), TPU).strategy == "tpu"
    assert plan_device(RunConfig(), CPU_BF16).strategy == "default"


def test_tf_distribute_needs_tensorflow():
    jax_gpus = DeviceInfo("gpu", "NVIDIA H200", 2, (9, 0), backend="jax")
    with pytest.raises(RunConfigError, match="needs the TensorFlow backend"):
        plan_device(RunConfig(distribute="mirrored"), jax_gpus)
    assert plan_device(RunConfig(), jax_gpus).replicas == 1


def test_cpu_under_jax_says_tensorflow_is_faster(caplog):
    with caplog.at_level(logging.WARNING):
        plan_device(RunConfig(), DeviceInfo("cpu", "CPU", 1, None, backend="jax"))
    assert "TensorFlow was measured about 6x faster" in caplog.text


def test_memory_warning_when_the_estimate_exceeds_free_gpu_memory(caplog):
    model = build_inception("reference")
    plan = plan_device(RunConfig(batch_size=512), H200)
    small_gpu = [{"memory_free_mib": 1024.0}]
    big_gpu = [{"memory_free_mib": 140_000.0}]
    with caplog.at_level(logging.WARNING):
        message = warn_if_too_big(model, RunConfig(batch_size=512), plan, gpus=small_gpu)
    assert message and "exceeds the GPU's free 1.00 GiB at batch 512" in caplog.text
    assert warn_if_too_big(model, RunConfig(batch_size=512), plan, gpus=big_gpu) is None
    assert warn_if_too_big(model, RunConfig(), plan_device(RunConfig(), OLD_CPU), gpus=small_gpu) is None


def test_pipeline_keeps_uint8_and_shuffles_reproducibly():
    images = np.arange(10 * 32 * 32 * 3, dtype=np.uint8).reshape(10, 32, 32, 3)
    labels = np.arange(10) % 10
    first = make_inputs(images, labels, batch_size=4, shuffle=True, seed=1)
    assert first.data.element_spec[0].dtype.name == "uint8"
    order = [int(y) for _, batch in first.data for y in batch]
    again = [
        int(y)
        for _, batch in make_inputs(images, labels, batch_size=4, shuffle=True, seed=1).data
        for y in batch
    ]
    assert sorted(order) == list(range(10)) and order == again
    hot = make_inputs(images, labels, batch_size=10, shuffle=False, one_hot=True)
    _, targets = next(iter(hot.data))
    np.testing.assert_array_equal(np.argmax(targets.numpy(), axis=1), labels)
    arrays = make_inputs(images, labels, batch_size=4, shuffle=True, backend="jax")
    assert arrays.data is images and arrays.batch_size == 4 and arrays.shuffle
    with pytest.raises(ValueError, match="must stay uint8"):
        make_inputs(images.astype(np.float64), labels, batch_size=4, shuffle=False)


def test_flop_count_matches_the_topology():
    model = build_inception("reference")
    expected, channels, size = 0, 3, 32
    for f1, f3r, f3, f5r, f5, fp in REFERENCE_MODULES:
        expected += size * size * (channels * (f1 + f3r + f5r + fp) + 9 * f3r * f3 + 25 * f5r * f5)
        channels, size = f1 + f3 + f5 + fp, size // 2
    expected += 512 * 128 + 128 * 64 + 64 * 10
    assert forward_multiply_adds(model) == expected
    assert training_flops_per_image(model) == pytest.approx(1.55e9, rel=0.01)  # the 1.55 GFLOP


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        timeout=900,
    )


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("Tesla T4", 65.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", None),  # not an L4
        ("NVIDIA A10G", None),  # not an A10
    ],
)
def test_peak_is_looked_up_by_the_chip_word_of_the_device_name(name, peak):
    from cifarlib.bench import peak_tflops

    assert peak_tflops(name) == peak


def test_two_replica_mirrored_run_on_two_logical_cpus(tmp_path, small_archive):
    done = _run_python(
        f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from cifarlib.config import REFERENCE_MODULES, RunConfig
        from cifarlib.train import train
        config = RunConfig(data={str(small_archive)!r}, width=0.25, batch_size=25, epochs=2, distribute="mirrored")
        result = train(config, {str(tmp_path / "ws")!r}, run_id="mirrored", verbose=0)
        print(json.dumps({{"summary": result.summary, "epochs": result.history["epoch"].tolist(),
                          "columns": list(result.history.columns)}}))
    """,
        CIFARLIB_STAGING=str(tmp_path / "staging"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["summary"]["replicas"] == 2 and report["summary"]["global_batch_size"] == 50
    assert report["epochs"] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds", "learning_rate"} <= set(
        report["columns"]
    )


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_short_training_under_another_backend(tmp_path, small_archive, backend):
    """JAX runs in CI (requirements-dev.txt); PyTorch where it is installed (it is too large for CI)."""
    pytest.importorskip(backend)
    workspace = tmp_path / "ws"
    env = {**os.environ, "KERAS_BACKEND": backend, "CIFARLIB_STAGING": str(tmp_path / "staging")}
    args = [sys.executable, "-m", "cifarlib"]
    trained = subprocess.run(
        [
            *args,
            "train",
            "--data",
            str(small_archive),
            "--width",
            "0.25",
            "--batch-size",
            "50",
            "--epochs",
            "2",
            "--preset",
            "tuned",
            "--workspace",
            str(workspace),
            "--run-id",
            backend,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "TensorBoard logs are written only under the TensorFlow backend" in trained.stderr
    summary = json.loads((workspace / "runs" / backend / "summary.json").read_text())
    assert summary["keras_backend"] == backend and summary["epochs_run"] == 2 and summary["tta"] is True
    evaluated = subprocess.run(
        [*args, "evaluate", backend, "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"test accuracy {format_accuracy(summary['test_accuracy'])}" in evaluated.stdout
