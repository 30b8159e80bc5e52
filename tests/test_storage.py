"""The run lock (two processes, a killed holder, another host's heartbeat) and clean-up after killed writers."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from cifarlib import run_lock, storage
from cifarlib.errors import RunLockedError

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from cifarlib import run_lock, storage
    with run_lock.RunLock(storage.RunFolder(storage.Path(sys.argv[1]))):
        print("locked", flush=True)
        time.sleep(600)
    """
)


@pytest.fixture
def run(tmp_path):
    return storage.open_workspace(tmp_path / "ws").run("r1")


def hold_in_subprocess(run):
    """A second process that takes the run's lock and keeps it until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run.path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert process.stdout.readline().strip() == "locked"
    return process


def test_second_process_is_refused_then_takes_over_after_a_kill(run):
    holder = hold_in_subprocess(run)
    try:
        with pytest.raises(RunLockedError) as refused:
            run_lock.RunLock(run).acquire()
        message = str(refused.value)
        assert "\n" not in message
        assert "'r1'" in message and f"process {holder.pid} on host {socket.gethostname()}" in message
        # The holder's lock is untouched by the refused attempt.
        assert json.loads((run.path / ".lock").read_text())["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The killed holder's lock is left on disk, and does not block the next run.
    assert (run.path / ".lock").exists()
    with run_lock.RunLock(run) as lock:
        assert json.loads((run.path / ".lock").read_text())["pid"] == os.getpid()
        lock.refresh()
    assert not (run.path / ".lock").exists()


def test_lock_from_another_host_is_trusted_until_its_heartbeat_is_old(run):
    run.path.mkdir(parents=True)
    other = {"host": "colab-vm-elsewhere", "pid": 1, "acquired": time.time(), "heartbeat": time.time()}
    (run.path / ".lock").write_text(json.dumps(other))
    with pytest.raises(RunLockedError, match="host colab-vm-elsewhere"):
        run_lock.RunLock(run, stale_after=60).acquire()
    (run.path / ".lock").write_text(json.dumps({**other, "heartbeat": time.time() - 120}))
    with run_lock.RunLock(run, stale_after=60):
        assert json.loads((run.path / ".lock").read_text())["host"] == socket.gethostname()


def test_a_holder_with_short_epochs_declares_a_shorter_wait_never_below_the_floor(run, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(run_lock.time, "time", lambda: clock[0])
    lock = run_lock.RunLock(run, stale_after=30 * 60)
    lock.acquire()
    assert "stale_after" not in json.loads(lock.path.read_text())  # before its first epoch: the full wait
    for gap, declared in [(40, run_lock.MIN_LOCK_STALE_SECONDS), (150, 450), (20, 450), (900, 30 * 60)]:
        clock[0] += gap
        lock.refresh()
        assert json.loads(lock.path.read_text())["stale_after"] == declared, (
            gap
        )  # 3x its longest gap, bounded
    lock.release()


@pytest.mark.parametrize(
    "declared, own, waited",
    [
        (300, 1800, 300),  # the holder's shorter declared wait
        (3600, 1800, 1800),  # never longer than this process's own
        (1, 1800, run_lock.MIN_LOCK_STALE_SECONDS),  # never below the floor a holder writes with
        (10**400, 1800, 1800),
        ("soon", 1800, 1800),  # a nonsense value is ignored
        (float("nan"), 1800, 1800),
        (None, 1800, 1800),  # a lock written before holders declared one
    ],
)
def test_another_hosts_lock_is_taken_over_after_the_wait_it_declared(run, declared, own, waited):
    run.path.mkdir(parents=True)
    beat = time.time() - waited
    other = {"host": "colab-vm-gone", "pid": 1, "acquired": beat, "heartbeat": beat + 5}
    if declared is not None:
        other["stale_after"] = declared
    (run.path / ".lock").write_text(json.dumps(other))
    with pytest.raises(
        RunLockedError, match=r"run again from \d{4}-\d\d-\d\d .* UTC, when its lock counts as"
    ):
        run_lock.RunLock(run, stale_after=own).acquire()
    (run.path / ".lock").write_text(json.dumps({**other, "heartbeat": beat - 5}))
    with run_lock.RunLock(run, stale_after=own):
        assert json.loads((run.path / ".lock").read_text())["host"] == socket.gethostname()


@pytest.mark.parametrize("heartbeat", ['"x"', "null", "NaN", "Infinity", "1e300", "-5", "true"])
def test_a_lock_with_a_damaged_heartbeat_is_taken_over_not_a_crash(run, heartbeat):
    run.path.mkdir(parents=True)
    (run.path / ".lock").write_text(
        f'{{"host": "colab-vm-gone", "pid": 1, "acquired": 1, "heartbeat": {heartbeat}, "stale_after": 1e999}}'
    )
    with run_lock.RunLock(run, stale_after=60):
        assert json.loads((run.path / ".lock").read_text())["host"] == socket.gethostname()


def test_a_live_process_on_this_machine_is_waited_for_not_timed(run):
    run.path.mkdir(parents=True)
    mine = {**run_lock._owner_record(), "heartbeat": time.time() - 10**6}  # this test process: alive
    (run.path / ".lock").write_text(json.dumps(mine))
    with pytest.raises(RunLockedError, match=r"or stop that process \(it is on this machine\)$"):
        run_lock.RunLock(run, stale_after=60).acquire()


def test_a_lock_taken_over_stops_the_old_holder(run):
    lock = run_lock.RunLock(run)
    lock.acquire()
    taken = {"host": "another-host", "pid": 7, "acquired": time.time(), "heartbeat": time.time()}
    (run.path / ".lock").write_text(json.dumps(taken))
    with pytest.raises(RunLockedError, match="lost its lock to process 7 on host another-host"):
        lock.refresh()
    lock.release()
    assert json.loads((run.path / ".lock").read_text()) == taken  # not ours: left alone


def test_empty_lock_file_counts_as_held_only_briefly(run):
    run.path.mkdir(parents=True)
    (run.path / ".lock").write_text("")
    with pytest.raises(RunLockedError):
        run_lock.RunLock(run).acquire()
    old = time.time() - 60
    os.utime(run.path / ".lock", (old, old))
    with run_lock.RunLock(run):
        pass


def test_temporaries_of_killed_writers_are_removed_under_the_lock(run):
    run.path.mkdir(parents=True)
    (run.path / "tensorboard" / "train").mkdir(parents=True)
    keep = ["history.csv", "best.keras", "tensorboard/train/events.out.tfevents.1.host.2.v2"]
    stale = [".best.keras.tmp-123", ".history.csv.tmp-9", "tensorboard/train/.events.out.tfevents.1.v2.tmp-5"]
    for name in keep + stale:
        (run.path / name).write_text("x")
    (run.path / ".backup.new").mkdir()
    (run.path / ".backup.old").mkdir()
    (run.path / ".backup.old" / "latest.weights.h5").write_text("weights")
    with run_lock.RunLock(run) as lock:
        removed = lock.remove_temporaries()
        # With backup/ missing, the aside copy is the last good backup: it is put back, not deleted.
        assert (run.path / "backup" / "latest.weights.h5").read_text() == "weights"
    assert sorted(p.relative_to(run.path).as_posix() for p in removed) == sorted([*stale, ".backup.new"])
    assert all((run.path / name).exists() for name in keep)
    assert not [p for p in run.path.rglob(".*")]


def test_kill_at_a_chosen_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "history.csv"
    target.write_text("old")
    script = "from pathlib import Path; from cifarlib import storage; storage.atomic_write_text(Path(r'%s'), 'new')"
    done = subprocess.run(
        [sys.executable, "-c", script % target],
        env={**os.environ, storage.KILL_AT_WRITE_ENV: "1", "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == -signal.SIGKILL
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.glob(".history.csv.tmp-*")], "the kill came before the rename"


def test_lock_stale_seconds_setting(monkeypatch):
    monkeypatch.setenv("CIFARLIB_LOCK_STALE_SECONDS", "nan")
    with pytest.raises(ValueError, match="CIFARLIB_LOCK_STALE_SECONDS must be a positive number"):
        run_lock.lock_stale_seconds()
    monkeypatch.setenv("CIFARLIB_LOCK_STALE_SECONDS", "90")
    assert run_lock.lock_stale_seconds() == 90


def test_same_host_name_on_another_machine_goes_by_the_heartbeat(run):
    """Two VMs may share a host name: with another boot id the PID means nothing here, only the heartbeat."""
    run.path.mkdir(parents=True)
    twin = {
        "host": socket.gethostname(),
        "boot_id": "another-boot",
        "pid": 999_999_999,
        "acquired": time.time(),
        "heartbeat": time.time(),
    }
    (run.path / ".lock").write_text(json.dumps(twin))
    with pytest.raises(RunLockedError):
        run_lock.RunLock(run, stale_after=60).acquire()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="names the folder by uid where there is one")
def test_default_staging_is_one_folder_per_user_and_workspace(tmp_path, monkeypatch):
    # A shared machine: another user's staging folder (mode 0755) could not be written to.
    monkeypatch.delenv("CIFARLIB_STAGING", raising=False)
    monkeypatch.setattr(storage.tempfile, "gettempdir", lambda: str(tmp_path))
    first = storage.open_workspace(tmp_path / "a").staging_dir("r1")
    assert first.parent.parent == tmp_path / f"cifarlib-staging-{os.getuid()}"
    assert storage.open_workspace(tmp_path / "b").staging_dir("r1") != first
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "chosen"))
    assert storage.open_workspace(tmp_path / "a").staging_dir("r1").parent.parent == tmp_path / "chosen"
