"""Kills at every write of the publish sequence: whatever prefix of an epoch's writes happened, a resume gives
every file loadable, history epochs exactly 1..N, ``epochs_run`` N, and no temporary file left behind."""

import json
import os
import subprocess
import sys
import time

import keras
import pytest

from cifarlib import run_lock, storage
from cifarlib.config import RunConfig
from cifarlib.errors import DataError, RunLockedError, WorkspaceError
from cifarlib.train import train

# Tiny on purpose: the test trains twice per write point.
TINY = dict(
    data="synthetic", train_size=60, width=0.1, batch_size=30, validation_fraction=0.25, epochs=2, tta=False
)


class SimulatedKill(BaseException):
    """Stands for SIGKILL inside pytest: a BaseException, so no ``except OSError`` clean-up runs on the way out."""


def record_write_points(monkeypatch, kill_at: int | None = None) -> list[str]:
    """Make ``storage.write_point`` log each write (and raise ``SimulatedKill`` at write ``kill_at``)."""
    reached: list[str] = []

    def point(path):
        reached.append(str(path))
        if len(reached) == kill_at:
            raise SimulatedKill(path)

    monkeypatch.setattr(storage, "write_point", point)
    return reached


def assert_run_is_whole(run_dir, epochs):
    run = storage.RunFolder(run_dir)
    assert run.read_history()["epoch"].tolist() == list(range(1, epochs + 1))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_run"] == epochs
    json.loads((run_dir / "config.json").read_text())
    assert keras.saving.load_model(run_dir / "best.keras").output.shape == (None, 10)
    leftovers = [p for p in run_dir.rglob(".*") if p.name != storage.LOCK_FILE]
    assert leftovers == [], f"temporary files left: {leftovers}"
    assert not (run_dir / storage.LOCK_FILE).exists()
    assert not (run_dir / "backup").exists()


@pytest.fixture
def staging(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))


def kind_of(point: str) -> str:
    """A write point's file, without the temporary-name decoration (".history.csv.tmp-42" -> "history.csv")."""
    name = os.path.basename(point).lstrip(".").split(".tmp-")[0]
    return "tensorboard" if "tfevents" in name else name


def test_kill_at_every_write_point_then_resume(tmp_path, monkeypatch, staging):
    config = RunConfig(**TINY)
    points = record_write_points(monkeypatch)
    train(config, tmp_path / "clean", run_id="clean", verbose=0)
    kinds = [kind_of(p) for p in points]
    # The publish sequence: config, lock heartbeat, backup swap (two points), best model, history, TensorBoard,
    # summary.
    for expected in (
        "config.json",
        "lock",
        "backup.new",
        "backup.old",
        "best.keras",
        "history.csv",
        "summary.json",
    ):
        assert expected in kinds, f"no write point for {expected}: {kinds}"
    assert "tensorboard" in kinds
    # Every point from the second epoch's first write to the summary, and the first point of each kind before
    # that: epoch 1 repeats epoch 2's sequence, so this covers every kind of write at every position in it.
    second_epoch = kinds.index("lock", kinds.index("history.csv"))
    chosen = sorted({kinds.index(kind) for kind in kinds} | set(range(second_epoch, len(points))))

    for index in chosen:
        kill_at = index + 1
        workspace = tmp_path / f"kill-{kill_at}"
        record_write_points(monkeypatch, kill_at)
        with pytest.raises(SimulatedKill):
            train(config, workspace, run_id="run", verbose=0)
        record_write_points(monkeypatch)
        result = train(config, workspace, run_id="run", verbose=0)
        where = f"killed at write {kill_at} ({kinds[index]})"
        assert result.summary["epochs_run"] == TINY["epochs"], where
        assert_run_is_whole(workspace / "runs" / "run", TINY["epochs"])


def cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return [sys.executable, "-m", "cifarlib", *args], env


def tiny_train_args(workspace, epochs=3):
    return [
        "train", "--data", "synthetic", "--train-size", "60", "--width", "0.1", "--batch-size", "30",
        "--validation-fraction", "0.25", "--epochs", str(epochs), "--workspace", str(workspace),
        "--run-id", "shared",
    ]  # fmt: skip


def test_two_train_commands_on_one_run(tmp_path, staging):
    workspace = tmp_path / "ws"
    command, env = cli(*tiny_train_args(workspace))
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = workspace / "runs" / "shared" / storage.LOCK_FILE
    deadline = time.time() + 300
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert lock.exists(), "the first command never took the lock"
    second = subprocess.run(command, env=env, capture_output=True, text=True)
    assert second.returncode == 1
    errors = [line for line in second.stderr.splitlines() if line.startswith("cifarlib train: error:")]
    assert len(errors) == 1, second.stderr
    assert f"run 'shared' is being trained by process {first.pid}" in errors[0]
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    run_dir = workspace / "runs" / "shared"
    assert_run_is_whole(run_dir, 3)


def test_a_start_that_fails_leaves_no_run_folder(tmp_path, staging):
    config = RunConfig(**{**TINY, "data": str(tmp_path / "absent.tar.gz")})
    with pytest.raises(DataError, match="absent.tar.gz"):
        train(config, tmp_path / "ws", run_id="phantom", verbose=0)
    assert not (tmp_path / "ws" / "runs" / "phantom").exists()


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_resume_recovers_a_damaged_best_model_from_the_backup(tmp_path, staging, damage):
    config = RunConfig(**TINY)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "ws", run_id="run", verbose=0, callbacks=[StopAfterFirstEpoch()])
    run_dir = tmp_path / "ws" / "runs" / "run"
    best = run_dir / "best.keras"
    if damage == "deleted":
        best.unlink()
    else:
        best.write_bytes(best.read_bytes()[:1000])
    result = train(config, tmp_path / "ws", run_id="run", verbose=0)
    assert result.summary["epochs_run"] == TINY["epochs"]
    assert_run_is_whole(run_dir, TINY["epochs"])


def test_evaluate_says_what_is_missing(tmp_path, staging):
    from cifarlib.runs import evaluate_run

    config = RunConfig(**{**TINY, "epochs": 1})
    train(config, tmp_path / "ws", run_id="done", verbose=0)
    best = tmp_path / "ws" / "runs" / "done" / "best.keras"
    best.write_bytes(b"PK torn")
    with pytest.raises(WorkspaceError, match="best.keras: cannot be loaded") as damaged:
        evaluate_run("done", tmp_path / "ws")
    assert "retrain" in str(damaged.value)
    best.unlink()
    with pytest.raises(WorkspaceError) as missing:
        evaluate_run("done", tmp_path / "ws")
    message = str(missing.value)
    assert "completed" in message and "retrain" in message and "not finished an epoch" not in message


def test_a_failed_start_keeps_a_folder_another_process_took_over(tmp_path, staging, monkeypatch):
    # This process's lock was broken as stale and another process took the run before this start failed: the
    # folder is the other process's now, and the failed start must leave it alone.
    taken_over = {"pid": os.getpid() + 1, "host": "elsewhere", "heartbeat": time.time()}

    def fail_after_losing_the_lock(workspace, run, *args):
        storage.atomic_write_text(run.file(storage.LOCK_FILE), json.dumps(taken_over))
        raise RuntimeError("failed before the first epoch")

    monkeypatch.setattr("cifarlib.train._fit", fail_after_losing_the_lock)
    with pytest.raises(RuntimeError, match="before the first epoch"):
        train(RunConfig(**TINY), tmp_path / "ws", run_id="contested", verbose=0)
    lock = tmp_path / "ws" / "runs" / "contested" / storage.LOCK_FILE
    assert json.loads(lock.read_text()) == taken_over


def test_a_lock_lost_during_training_stops_it_without_advice_to_resume(tmp_path, staging, monkeypatch):
    # Another process broke this one's lock (as stale) and took the run during the first epoch.
    taken_over = {"pid": os.getpid() + 1, "host": "elsewhere", "heartbeat": time.time()}
    refresh = run_lock.RunLock.refresh

    def taken_before_refresh(lock):
        storage.atomic_write_text(lock.path, json.dumps(taken_over))
        refresh(lock)

    monkeypatch.setattr(run_lock.RunLock, "refresh", taken_before_refresh)
    with pytest.raises(RunLockedError, match="lost its lock to process") as lost:
        train(RunConfig(**{**TINY, "epochs": 2}), tmp_path / "ws", run_id="contested", verbose=0)
    assert "resume" not in str(lost.value)
    run_dir = tmp_path / "ws" / "runs" / "contested"
    # Nothing of this process's epoch was published over the other's run, and its lock is left alone.
    assert json.loads((run_dir / storage.LOCK_FILE).read_text()) == taken_over
    assert not (run_dir / storage.HISTORY_FILE).exists()


def test_a_lock_lost_during_the_final_evaluation_leaves_the_run_unfinished(tmp_path, staging, monkeypatch):
    import cifarlib.train

    taken_over = {"pid": os.getpid() + 1, "host": "elsewhere", "heartbeat": time.time()}
    evaluate = cifarlib.train.evaluate_model

    def taken_while_evaluating(*args, **kwargs):
        storage.atomic_write_text(
            tmp_path / "ws" / "runs" / "late" / storage.LOCK_FILE, json.dumps(taken_over)
        )
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(cifarlib.train, "evaluate_model", taken_while_evaluating)
    with pytest.raises(RunLockedError, match="lost its lock to process"):
        train(RunConfig(**{**TINY, "epochs": 1}), tmp_path / "ws", run_id="late", verbose=0)
    run_dir = tmp_path / "ws" / "runs" / "late"
    assert not (run_dir / storage.SUMMARY_FILE).exists() and (run_dir / storage.BACKUP_DIR).is_dir()
    assert json.loads((run_dir / storage.LOCK_FILE).read_text()) == taken_over


def test_a_run_finished_meanwhile_is_tidied_under_the_lock_already_held(tmp_path, staging, monkeypatch):
    import cifarlib.train

    config = RunConfig(**{**TINY, "epochs": 1})
    run_dir = train(config, tmp_path / "ws", run_id="raced", verbose=0).run_dir
    summary = (run_dir / storage.SUMMARY_FILE).read_text()
    (run_dir / storage.SUMMARY_FILE).unlink()
    load = cifarlib.train.load_run_splits

    def finished_by_another_process_meanwhile(*args, **kwargs):
        # Between train's first look (unfinished) and its lock: the other process writes the summary, and a kill
        # right after it leaves its backup behind.
        (run_dir / storage.SUMMARY_FILE).write_text(summary)
        (run_dir / storage.BACKUP_DIR).mkdir()
        return load(*args, **kwargs)

    monkeypatch.setattr(cifarlib.train, "load_run_splits", finished_by_another_process_meanwhile)
    result = train(config, tmp_path / "ws", run_id="raced", verbose=0)
    assert result.summary == json.loads(summary)
    assert not (run_dir / storage.BACKUP_DIR).exists() and not (run_dir / storage.LOCK_FILE).exists()


def test_a_backup_left_aside_counts_for_recovery(tmp_path):
    from cifarlib.runs import evaluate_run

    # A kill between the two renames of a backup swap: only the aside copy holds the best model.
    run = storage.open_workspace(tmp_path / "ws").run("aside")
    aside = storage.aside_path(run.file(storage.BACKUP_DIR))
    aside.mkdir(parents=True)
    (aside / storage.BEST_MODEL_FILE).write_bytes(b"a saved model")
    (run.path / storage.CONFIG_FILE).write_text(RunConfig(**TINY).to_json())
    with pytest.raises(WorkspaceError, match="unfinished and its backup holds a copy"):
        evaluate_run("aside", tmp_path / "ws")
