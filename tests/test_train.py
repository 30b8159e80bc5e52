"""Training runs: the run folder, evaluation, resume after SIGKILL, a workspace that goes away, the run table."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pandas as pd
import pytest

from cifarlib import run_lock, storage
from cifarlib.config import RunConfig
from cifarlib.errors import RunConfigError, WorkspaceError
from cifarlib.formatting import format_accuracy
from cifarlib.results import runs_table
from cifarlib.train import train

SMALL = dict(width=0.25, batch_size=50, validation_fraction=0.2)


def cli(*args, **kwargs):
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CIFARLIB_STAGING": kwargs.pop("staging", os.environ.get("CIFARLIB_STAGING", "")),
    }
    env = {k: v for k, v in env.items() if v}
    return subprocess.run(
        [sys.executable, "-m", "cifarlib", *args], capture_output=True, text=True, env=env, **kwargs
    )


def layout(run_dir: Path) -> set[str]:
    """Relative paths in a run folder, with TensorBoard event file names (time and pid) reduced to their folder."""
    paths = set()
    for path in run_dir.rglob("*"):
        relative = path.relative_to(run_dir).as_posix()
        if "events.out.tfevents" in relative:
            relative = relative.rsplit("/", 1)[0] + "/<events>"
        paths.add(relative)
    return paths


@pytest.fixture
def staging(tmp_path, monkeypatch):
    folder = tmp_path / "staging"
    monkeypatch.setenv("CIFARLIB_STAGING", str(folder))
    return folder


def test_cli_train_produces_the_run_folder_and_evaluate_reproduces_it(small_archive, tmp_path, staging):
    workspace = tmp_path / "ws"
    done = cli(
        "train",
        "--preset",
        "reference",
        "--data",
        str(small_archive),
        "--width",
        "0.25",
        "--batch-size",
        "50",
        "--epochs",
        "2",
        "--workspace",
        str(workspace),
        "--run-id",
        "short",
        staging=str(staging),
    )
    assert done.returncode == 0, done.stderr
    assert "run short: 2 epochs" in done.stdout
    run_dir = workspace / "runs" / "short"
    assert layout(run_dir) == {
        "config.json",
        "history.csv",
        "best.keras",
        "summary.json",
        "tensorboard",
        "tensorboard/train",
        "tensorboard/validation",
        "tensorboard/train/<events>",
        "tensorboard/validation/<events>",
    }
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in (
        "run_id",
        "preset",
        "batch_size",
        "epochs_run",
        "best_epoch",
        "best_val_accuracy",
        "test_accuracy",
        "test_loss",
        "seconds_per_epoch",
        "total_seconds",
        "params",
        "device",
        "tensorflow_version",
    ):
        assert key in summary, key
    assert summary["epochs_run"] == 2 and 0.0 <= summary["test_accuracy"] <= 1.0
    # Without test-time augmentation, re-scoring the last epoch's weights on the validation split gives the
    # accuracy Keras logged for that epoch (to one image).
    history = pd.read_csv(run_dir / "history.csv")
    assert summary["tta"] is False
    validation_images = 100  # 20% of small_archive's 500 training images
    assert (
        abs(summary["final_val_accuracy"] - history["val_accuracy"].iloc[-1]) <= 1 / validation_images + 1e-6
    )
    config = json.loads((run_dir / "config.json").read_text())
    assert config["batch_size"] == 50 and config["tensorflow_version"]

    evaluated = cli("evaluate", "short", "--workspace", str(workspace))
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"test accuracy {format_accuracy(summary['test_accuracy'])}" in evaluated.stdout
    assert f"test loss {summary['test_loss']:.4f}" in evaluated.stdout
    # On the run's own validation split, best.keras scores what Keras logged at the best epoch.
    validated = cli("evaluate", "short", "--workspace", str(workspace), "--split", "validation")
    assert validated.returncode == 0, validated.stderr
    scored = float(validated.stdout.split("validation accuracy ")[1].split("%")[0]) / 100
    assert "(100 images" in validated.stdout
    assert abs(scored - summary["best_val_accuracy"]) <= 1 / validation_images + 1e-4
    # A finished run can be scored with another test-time augmentation without touching what it saved.
    stored = (run_dir / "config.json").read_text()
    shifted = cli(
        "evaluate",
        "short",
        "--workspace",
        str(workspace),
        "--split",
        "validation",
        "--tta",
        "--tta-translate",
        "1",
    )
    assert shifted.returncode == 0, shifted.stderr
    assert "(100 images, flip and 1-pixel shift test-time augmentation, 6 views)" in shifted.stdout
    assert 0.0 <= float(shifted.stdout.split("validation accuracy ")[1].split("%")[0]) <= 100.0
    assert (run_dir / "config.json").read_text() == stored
    refused = cli("evaluate", "short", "--workspace", str(workspace), "--tta-translate", "40")
    assert refused.returncode == 1 and "tta_translate must be an integer from 0 to 8" in refused.stderr


def test_sigkill_after_second_epoch_then_resume(small_archive, tmp_path, staging):
    workspace = tmp_path / "ws"
    args = [
        "train",
        "--preset",
        "reference",
        "--data",
        str(small_archive),
        "--width",
        "0.25",
        "--batch-size",
        "50",
        "--epochs",
        "4",
        "--workspace",
        str(workspace),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CIFARLIB_STAGING": str(staging)}
    history = workspace / "runs" / "killed" / "history.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "cifarlib", *args, "--run-id", "killed"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if history.exists() and len(history.read_text().strip().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    run_dir = workspace / "runs" / "killed"
    assert not (run_dir / "summary.json").exists()
    assert runs_table(workspace).set_index("run_id").loc["killed", "status"] == "unfinished"

    resumed = cli(*args, "--run-id", "killed", staging=str(staging))
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted = cli(*args, "--run-id", "clean", staging=str(staging))
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    killed_history = storage.RunFolder(run_dir).read_history()
    assert killed_history["epoch"].tolist() == [1, 2, 3, 4]
    clean_dir = workspace / "runs" / "clean"
    assert layout(run_dir) == layout(clean_dir)
    assert list(killed_history.columns) == list(storage.RunFolder(clean_dir).read_history().columns)
    assert json.loads((run_dir / "summary.json").read_text())["epochs_run"] == 4
    assert not (run_dir / "backup").exists()


def test_resume_restores_callback_counters_and_learning_rate(small_archive, tmp_path, staging):
    """An interrupted plateau run resumes with the reduced learning rate and the patience counters it had."""
    config = RunConfig.from_preset(
        "reference",
        data=str(small_archive),
        epochs=3,
        reduce_lr_patience=0,
        reduce_lr_min_delta=10.0,
        **SMALL,
    )

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "ws", run_id="plateau", verbose=0, callbacks=[Interrupt()])
    run = storage.RunFolder(tmp_path / "ws" / "runs" / "plateau")
    states = json.loads((run.path / "backup" / "cifarlib_callbacks.json").read_text())
    val_losses = run.read_history()["val_loss"].tolist()
    assert len(val_losses) == 2
    # Early stopping's memory: the best val_loss so far, and the epochs since it last improved.
    assert states["early_stopping"]["best"] == pytest.approx(min(val_losses))
    assert states["early_stopping"]["wait"] == (0 if val_losses[1] < val_losses[0] else 1)
    # With min_delta=10 only the first epoch counts as an improvement for the plateau schedule (anything beats
    # infinity), so with patience 0 the rate drops by the factor 0.3 after epoch 2 (and wait resets to 0).
    assert states["reduce_lr"]["wait"] == 0 and states["reduce_lr"]["best"] == pytest.approx(val_losses[0])

    result = train(config, tmp_path / "ws", run_id="plateau", verbose=0)
    # Each row logs the rate the epoch trained with: epoch 3 ran at the reduced rate restored from the backup.
    rates = result.history["learning_rate"].tolist()
    assert rates == pytest.approx([1e-3, 1e-3, 3e-4], rel=1e-3)
    assert result.history["epoch"].tolist() == [1, 2, 3]


def test_completed_run_is_not_retrained_unless_asked(small_archive, tmp_path, staging):
    config = RunConfig.from_preset("reference", data=str(small_archive), epochs=1, **SMALL)
    first = train(config, tmp_path / "ws", run_id="once", verbose=0)
    again = train(config, tmp_path / "ws", run_id="once", verbose=0)
    assert again.summary["finished"] == first.summary["finished"]
    # A finished run is not passed off as the result of other settings (a changed preset, say).
    with pytest.raises(RunConfigError, match="batch_size: 50 on disk vs 25 now"):
        train(config.replace(batch_size=25), tmp_path / "ws", run_id="once", verbose=0)
    time.sleep(1.1)
    redone = train(config, tmp_path / "ws", run_id="once", retrain=True, verbose=0)
    assert redone.summary["finished"] != first.summary["finished"]


def test_resuming_with_other_settings_is_refused(small_archive, tmp_path, staging):
    config = RunConfig.from_preset("reference", data=str(small_archive), epochs=1, **SMALL)
    run = storage.open_workspace(tmp_path / "ws").run("mine")
    run.path.mkdir(parents=True)
    (run.path / "config.json").write_text(config.replace(batch_size=64).to_json())
    with pytest.raises(RunConfigError, match="batch_size: 64 on disk vs 50 now"):
        train(config, tmp_path / "ws", run_id="mine", verbose=0)


@pytest.fixture
def mounted_workspace(tmp_path):
    """A workspace on its own tmpfs, so the test can make it truly read-only (as root: remount)."""
    mount_point = tmp_path / "drive"
    mount_point.mkdir()
    if os.geteuid() != 0:
        yield mount_point, lambda: os.chmod(mount_point / "runs" / "ro", 0o555)
        return
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "cifarlib-test", str(mount_point)]
    ).returncode:
        pytest.skip("cannot mount a tmpfs here to make a workspace read-only as root")
    try:
        yield mount_point, lambda: subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)])


def test_workspace_made_read_only_mid_run(small_archive, mounted_workspace, staging):
    root, make_read_only = mounted_workspace

    class ReadOnlyAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                make_read_only()

    config = RunConfig.from_preset("reference", data=str(small_archive), epochs=4, monitor="loss", **SMALL)
    with pytest.raises(WorkspaceError) as error:
        train(config, root, run_id="ro", verbose=0, callbacks=[ReadOnlyAfterSecondEpoch()])
    message = str(error.value)
    assert "Training stopped after epoch 3" in message and "'ro'" in message and "resume" in message
    run_dir = root / "runs" / "ro"
    model = keras.saving.load_model(run_dir / "best.keras")
    assert model.output.shape == (None, 10)
    assert storage.RunFolder(run_dir).read_history()["epoch"].tolist() == [1, 2]
    assert not (run_dir / "summary.json").exists()


def test_atomic_copy_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    destination = tmp_path / "best.keras"
    destination.write_bytes(b"old model")
    source = tmp_path / "new.keras"
    source.write_bytes(b"new model" * 1000)

    def torn_copy(src, dst):
        Path(dst).write_bytes(b"new mo")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.shutil, "copyfile", torn_copy)
    with pytest.raises(WorkspaceError, match="No space left on device"):
        storage.atomic_copy(source, destination)
    assert destination.read_bytes() == b"old model"
    assert {p.name for p in tmp_path.iterdir()} == {"best.keras", "new.keras"}  # no temporary left behind


def test_runs_lists_finished_and_unfinished(small_archive, tmp_path, staging):
    config = RunConfig.from_preset("reference", data=str(small_archive), epochs=1, **SMALL)
    train(config, tmp_path / "ws", run_id="20260101-000000-done", verbose=0)
    unfinished = tmp_path / "ws" / "runs" / "20260102-000000-open"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(config.to_json())
    (unfinished / "history.csv").write_text(
        "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n1,2.0,0.2,2.1,0.25,3.0\n"
    )
    done = cli("runs", "--workspace", str(tmp_path / "ws"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["run_id", "status"]
    assert lines[1].split()[:2] == ["20260101-000000-done", "completed"]
    assert lines[2].split()[:2] == ["20260102-000000-open", "unfinished"] and "25.00%" in lines[2]


def test_workspace_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLIB_HOME", str(tmp_path / "home"))
    assert storage.open_workspace().root == (tmp_path / "home").resolve()
    assert storage.open_workspace(tmp_path / "given").root == (tmp_path / "given").resolve()
    assert (tmp_path / "given" / "runs").is_dir()


def test_colab_mounts_drive(tmp_path, monkeypatch):
    import importlib.machinery
    import types

    mounted = []
    drive = types.SimpleNamespace(
        mount=lambda path: (mounted.append(path), Path(path, "MyDrive").mkdir(parents=True))
    )
    colab = types.ModuleType("google.colab")
    colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)
    colab.drive = drive
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(storage, "COLAB_MOUNT_POINT", str(tmp_path / "content" / "drive"))
    unmounted = []
    drive.flush_and_unmount = lambda: unmounted.append(True)
    workspace = storage.open_workspace(drive_folder="experiments")
    assert mounted == [str(tmp_path / "content" / "drive")]
    assert (
        workspace.on_drive
        and workspace.root == (tmp_path / "content" / "drive" / "MyDrive" / "experiments").resolve()
    )
    workspace.close()  # the end of a Colab session: every cached write reaches Drive
    assert unmounted == [True]


@pytest.mark.parametrize("run_id", ["2019-05-01 12:30:00", "a/b", "../up", "", ".hidden"])
def test_unsafe_run_ids_are_refused(run_id, tmp_path):
    with pytest.raises(ValueError, match="run id must be"):
        storage.open_workspace(tmp_path).run(run_id)


def test_cli_errors_are_one_line(tmp_path):
    done = cli(
        "train",
        "--data",
        str(tmp_path / "missing.tar.gz"),
        "--epochs",
        "1",
        "--workspace",
        str(tmp_path / "ws"),
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("cifarlib train: error: ")
    assert "missing.tar.gz: no such file" in done.stderr
    usage = cli("train", "--batch-size", "many")
    assert usage.returncode == 2 and "--batch-size" in usage.stderr
    # A mistyped flag is one line too, not argparse's usage block.
    assert len(usage.stderr.strip().splitlines()) == 1, usage.stderr


@pytest.mark.parametrize(
    ("stored", "error", "expected"),
    [
        ("[1, 2]", WorkspaceError, "expected a JSON object, got list"),
        ('{"preset": "no-such-recipe"}', RunConfigError, "unknown preset 'no-such-recipe'"),
    ],
)
def test_a_broken_stored_config_is_named(small_archive, tmp_path, staging, stored, error, expected):
    config = RunConfig.from_preset("reference", data=str(small_archive), epochs=1, **SMALL)
    run = storage.open_workspace(tmp_path / "ws").run("broken")
    run.path.mkdir(parents=True)
    (run.path / storage.CONFIG_FILE).write_text(stored)
    with pytest.raises(error) as caught:
        train(config, tmp_path / "ws", run_id="broken", verbose=0)
    assert str(caught.value).startswith(f"{run.path / storage.CONFIG_FILE}: ") and expected in str(
        caught.value
    )
    assert (run.path / storage.CONFIG_FILE).read_text() == stored


class BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_epoch_begin(self, epoch, logs=None):
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1


def test_training_drops_the_last_partial_batch_and_refuses_a_batch_above_the_split(tmp_path, staging):
    # 180 training images in batches of 64: two full batches an epoch, not a third of 52 images.
    config = RunConfig(data="synthetic", train_size=200, width=0.25, batch_size=64, epochs=2, seed=0)
    counter = BatchCounter()
    train(config, tmp_path / "ws", run_id="full", verbose=0, callbacks=[counter])
    assert counter.steps == [2, 2]
    with pytest.raises(RunConfigError, match="batch_size: 256 is larger than the training split"):
        train(config.replace(batch_size=256), tmp_path / "ws", run_id="big", verbose=0)
    assert not (tmp_path / "ws" / "runs" / "big").exists()


def test_a_stale_lock_on_a_read_only_workspace_is_one_line(mounted_workspace, caplog):
    root, make_read_only = mounted_workspace
    run = storage.RunFolder(root / "runs" / "ro")
    run.path.mkdir(parents=True)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = {**run_lock._owner_record(), "pid": int(finished.stdout), "process_start": None}
    (run.path / storage.LOCK_FILE).write_text(json.dumps(dead))
    make_read_only()
    with caplog.at_level("WARNING"), pytest.raises(WorkspaceError) as error:
        run_lock.RunLock(run).acquire()
    message = str(error.value)
    assert str(run.path / storage.LOCK_FILE) in message and "Read-only file system" in message
    assert "\n" not in message
    # No "broke a stale lock" line before the error: the lock is still there.
    assert not [r for r in caplog.records if "stale lock" in r.getMessage()]
    assert json.loads((run.path / storage.LOCK_FILE).read_text())["pid"] == dead["pid"]


def test_a_lock_that_is_a_folder_is_one_line(tmp_path):
    run = storage.RunFolder(tmp_path / "runs" / "folder")
    (run.path / storage.LOCK_FILE).mkdir(parents=True)
    with pytest.raises(
        WorkspaceError, match=r"\.lock: a folder where the run's lock file belongs; remove it"
    ):
        run_lock.RunLock(run).acquire()


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--epochs", "100000000000000000000", "epochs must be at most 10,000"),
        ("--batch-size", "9223372036854775808", "batch_size must be at most 1,000,000"),
        ("--batch-size", "2000", "batch_size: 2000 is larger than the training split (900 images)"),
    ],
)
def test_settings_beyond_their_bounds_are_one_line_and_make_no_run_folder(tmp_path, flag, value, expected):
    workspace = tmp_path / "ws"
    done = cli(
        "train",
        "--data",
        "synthetic",
        "--train-size",
        "1000",
        "--width",
        "0.25",
        flag,
        value,
        "--workspace",
        str(workspace),
    )
    assert done.returncode in (1, 2), done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("cifarlib train: error: ") and expected in last, done.stderr
    assert "Traceback" not in done.stderr
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())
