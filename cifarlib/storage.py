"""Where runs live: a workspace on a mounted Google Drive or in a local folder, its run folders, atomic writes.

One function, ``open_workspace``, serves Colab and everywhere else, so notebooks and the command line are
identical. In Colab it mounts Google Drive at ``/content/drive`` and uses ``MyDrive/<drive_folder>``;
elsewhere it uses the ``path`` argument, else ``$CIFARLIB_HOME``, else ``~/cifarlib-workspace``.

A run folder (the contract between train, sweep and results)::

    <workspace>/runs/<run_id>/
      config.json      the full RunConfig, plus library and framework versions and the device
      history.csv      one row per finished epoch
      best.keras       best model by the monitored metric
      backup/          resume state (Keras BackupAndRestore plus callback counters); removed on completion
      tensorboard/     TensorBoard event files
      summary.json     written last, only when the run completed
      .lock            held while a process trains the run (host, PID, heartbeat)

Drive is slow with many small writes and syncs lazily, and a Colab VM can vanish at any moment. So training
writes to a local staging folder and the run folder is updated once per epoch from it, every file by a
temporary copy and a rename: a disconnect mid-write leaves the previous good file, never a torn one.

Google Drive's FUSE mount does not honour ``flock``, so the run lock is a file created with ``O_EXCL`` that
holds its owner (host, PID, start time), a heartbeat and how long to wait for the next one; a lock whose
process is dead on this host, or (another host) whose heartbeat is older than that wait, at most
``lock_stale_seconds()``, is stale and broken. What is guaranteed under
kills and locks, and how to recover, is in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cifarlib.errors import MissingWorkspaceError, RunLockedError, WorkspaceError

log = logging.getLogger(__name__)

COLAB_MOUNT_POINT = "/content/drive"
DEFAULT_DRIVE_FOLDER = "cifarlib"
DEFAULT_LOCAL_WORKSPACE = "~/cifarlib-workspace"
RUN_ID_MAX_LENGTH = 128
RUN_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{RUN_ID_MAX_LENGTH - 1}}}")

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
BEST_MODEL_FILE = "best.keras"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
SUMMARY_FILE = "summary.json"
# Written by Keras's BackupAndRestore inside backup/: the number of finished epochs.
KERAS_BACKUP_METADATA = "training_metadata.json"
LOCK_FILE = ".lock"
# A lock held from another host is trusted at most while its heartbeat (refreshed every epoch) is younger than
# this; it must exceed the longest epoch. CIFARLIB_LOCK_STALE_SECONDS overrides it.
DEFAULT_LOCK_STALE_SECONDS = 30 * 60
# After each epoch the holder declares a shorter wait in the lock, so a run whose Colab runtime went away can be
# resumed from a new one soon after, not 30 minutes later: HEARTBEAT_MARGIN times its longest gap between
# heartbeats, but never less than MIN_LOCK_STALE_SECONDS, as Drive may carry a heartbeat written on one machine to
# another minutes late. Taking over a live holder's run is still safe: it stops at its next heartbeat, unwritten.
HEARTBEAT_MARGIN = 3
MIN_LOCK_STALE_SECONDS = 5 * 60
# A lock file that is still empty this long after it was created lost its writer between create and write.
EMPTY_LOCK_GRACE_SECONDS = 10
# Temporary names the atomic writers use (".<name>.tmp-<pid>", ".<folder>.new"), and a broken lock set aside.
TEMPORARY_NAME = re.compile(r"\..+\.tmp-(\d+)|\..+\.new|\.lock\.stale-\d+")
# Fault injection for the kill-at-every-write test and `make soak`: the process SIGKILLs itself at the Nth
# write point (1-based) named by this variable, and appends every write point to the file named by the other.
KILL_AT_WRITE_ENV = "CIFARLIB_KILL_AT_WRITE"
WRITE_LOG_ENV = "CIFARLIB_WRITE_LOG"


def in_colab() -> bool:
    """True inside a Colab runtime (where ``google.colab`` can be imported)."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class RunFolder:
    """One run's folder and the files in it."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def completed(self) -> bool:
        """Whether the run finished: its summary.json, written last, is a JSON object (a damaged one is not)."""
        return (self.path / SUMMARY_FILE).is_file() and self.summary_problem() is None

    def summary_problem(self) -> str | None:
        """What is wrong with an existing summary.json (``None``: it is whole, or there is none)."""
        from cifarlib import integrity

        path = self.path / SUMMARY_FILE
        return integrity.structure_problem(path) if path.exists() else None

    def read_json(self, name: str) -> dict | None:
        """A JSON object file of the run (see ``read_json_file``)."""
        return read_json_file(self.path / name)

    def read_history(self):
        """history.csv as a DataFrame (empty where no epoch finished)."""
        return read_history_file(self.path / HISTORY_FILE)

    def history_problem(self) -> str | None:
        """What is wrong with history.csv (``None``: whole, or absent before the first epoch): in a completed run,
        checked against the digest and the epoch count its summary recorded."""
        from cifarlib import integrity

        path = self.path / HISTORY_FILE
        try:
            summary = self.read_json(SUMMARY_FILE)
        except WorkspaceError:  # a damaged summary: the run is not complete
            summary = None
        if summary is None:
            return integrity.history_problem(path) if path.is_file() else None
        digest = summary.get(integrity.SUMMARY_DIGESTS[HISTORY_FILE])
        epochs = summary.get("epochs_run")
        problem = integrity.digest_problem(path, digest)
        if problem and digest is not None and path.is_file():
            # Say what is wrong where the format shows it; a changed value shows only in the digest.
            problem = integrity.history_problem(path, epochs) or problem
        elif problem is None and isinstance(epochs, int):
            problem = integrity.history_problem(path, epochs)
        return problem

    def warn_if_history_damaged(self) -> bool:
        """Log one line naming the run when its history.csv is damaged; returns whether it is."""
        problem = self.history_problem()
        if problem:
            log.warning(
                "run %s: %s is damaged (%s); its curves are left out", self.run_id, HISTORY_FILE, problem
            )
        return problem is not None

    def epochs_saved(self) -> int:
        """Finished epochs a resume continues after: the backup's count (the one record of how far the run
        got; history.csv may be one epoch behind it after a kill), else the history's."""
        backup = recover_tree(self.path / BACKUP_DIR)
        if backup is not None:
            try:
                return int(json.loads((backup / KERAS_BACKUP_METADATA).read_text())["epoch"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return len(self.read_history())

    def lock(self, stale_after: float | None = None) -> "RunLock":
        """The run's lock, to use as ``with run.lock() as lock: ...`` (see ``RunLock``)."""
        return RunLock(self, stale_after)


@dataclass(frozen=True)
class Workspace:
    """A folder holding ``runs/`` (and ``sweeps/``); ``on_drive`` when it is a mounted Google Drive."""

    root: Path
    on_drive: bool = False

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def sweeps_dir(self) -> Path:
        return self.root / "sweeps"

    def run(self, run_id: str) -> RunFolder:
        check_run_id(run_id)
        return RunFolder(self.runs_dir / run_id)

    def runs(self) -> list[RunFolder]:
        """Every run folder, in the order of their names (``cifarlib.results.runs_table`` orders by start)."""
        if not self.runs_dir.is_dir():
            return []
        return [
            RunFolder(path)
            for path in sorted(self.runs_dir.iterdir())
            if path.is_dir() and RUN_ID_PATTERN.fullmatch(path.name)
        ]

    def staging_dir(self, run_id: str) -> Path:
        """A local, fast folder where Keras callbacks write before the run folder is updated."""
        # One default folder per user: on a shared machine another user's (mode 0755) could not be written to.
        # Nothing is lost by the name: each start copies the run folder's published state into a fresh one.
        user = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
        default = Path(tempfile.gettempdir()) / f"cifarlib-staging-{user}"
        root = Path(os.environ.get("CIFARLIB_STAGING", default))
        key = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        return root / key / run_id

    def flush(self) -> None:
        """Push cached writes out: ``os.sync`` locally; in Colab Drive syncs on unmount (``close``)."""
        if hasattr(os, "sync"):
            os.sync()

    def close(self) -> None:
        """Flush and, on Colab, unmount Drive so every write reaches Google Drive before the VM goes."""
        self.flush()
        if self.on_drive and in_colab():
            from google.colab import drive

            drive.flush_and_unmount()


def open_workspace(
    path: str | os.PathLike | None = None,
    *,
    drive_folder: str = DEFAULT_DRIVE_FOLDER,
    mount_drive: bool | None = None,
    create: bool = True,
) -> Workspace:
    """Open (and create) the workspace: Google Drive in Colab, else a local folder.

    Args:
        path: a local folder; overrides Drive and ``$CIFARLIB_HOME``.
        drive_folder: the folder under ``MyDrive`` used in Colab.
        mount_drive: ``None`` mounts Drive only in Colab and only when no ``path`` was given.
        create: ``False`` for commands that only read runs: a folder that does not exist is then an error
            instead of a new, empty workspace (a mistyped ``--workspace`` leaves no stray folder behind).
    """
    if mount_drive is None:
        mount_drive = path is None and in_colab()
    if mount_drive:
        root, on_drive = _mount_drive(drive_folder), True
    else:
        chosen = path if path is not None else os.environ.get("CIFARLIB_HOME", DEFAULT_LOCAL_WORKSPACE)
        root, on_drive = Path(chosen).expanduser(), False
    if not create and not root.is_dir():
        raise MissingWorkspaceError(
            f"workspace {root}: no such folder (expected a folder that holds runs/)",
            Workspace(root=root.resolve(), on_drive=on_drive),
        )
    try:
        (root / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WorkspaceError(f"workspace {root}: cannot create it ({error.strerror or error})") from error
    return Workspace(root=root.resolve(), on_drive=on_drive)


def as_workspace(workspace: "Workspace | str | os.PathLike | None", *, create: bool = True) -> Workspace:
    """A ``Workspace`` as it is; a folder or ``None`` through ``open_workspace`` (what every API that takes one does).

    ``create=False`` is for readers: a folder that does not exist is an error, not a new workspace.
    """
    return workspace if isinstance(workspace, Workspace) else open_workspace(workspace, create=create)


def _mount_drive(drive_folder: str) -> Path:
    if not drive_folder or Path(drive_folder).is_absolute() or ".." in Path(drive_folder).parts:
        raise ValueError(f"drive_folder must be a relative folder name under MyDrive, got {drive_folder!r}")
    try:
        from google.colab import drive
    except ImportError as error:
        raise WorkspaceError(
            "Google Drive can only be mounted inside Colab; pass a local workspace path"
        ) from error
    try:
        drive.mount(COLAB_MOUNT_POINT)
    except Exception as error:  # noqa: BLE001 - mount failures come as several exception types.
        raise WorkspaceError(f"could not mount Google Drive at {COLAB_MOUNT_POINT}: {error}") from error
    return Path(COLAB_MOUNT_POINT) / "MyDrive" / drive_folder


def check_run_id(run_id: str) -> str:
    """Run ids are file names on every filesystem: letters, digits, '.', '_' and '-' (no ':' or '/')."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(
            f"run id must be 1-{RUN_ID_MAX_LENGTH} letters, digits, '.', '_' or '-' and start with a letter or digit, got {run_id!r}"
        )
    return run_id


# ------------------------------------------------------------------------------------------- atomic writes


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    _atomic(path, lambda temporary: temporary.write_text(text))


def atomic_copy(source: Path, destination: Path) -> None:
    """Copy a file so that ``destination`` is always either the old or the complete new file."""
    _atomic(destination, lambda temporary: shutil.copyfile(source, temporary))


def atomic_replace_tree(source: Path, destination: Path) -> None:
    """Make ``destination`` a copy of the folder ``source``, swapping whole folders.

    The copy is made beside the destination, then the old folder is renamed aside, the copy renamed in and the
    old one removed. If the process dies in between, ``recover_tree`` finds the aside copy.
    """
    parent = destination.parent
    fresh = parent / f".{destination.name}.new"
    aside = aside_path(destination)
    try:
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.copytree(source, fresh)
        write_point(fresh)
        if destination.exists():
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(destination, aside)
            write_point(aside)
        os.replace(fresh, destination)
        shutil.rmtree(aside, ignore_errors=True)
    except OSError as error:
        shutil.rmtree(fresh, ignore_errors=True)
        raise _workspace_error(destination, error) from error


def aside_path(destination: Path) -> Path:
    """Where ``atomic_replace_tree`` keeps the old folder between its two renames (``.backup.old``)."""
    return destination.parent / f".{destination.name}.old"


def recover_tree(destination: Path) -> Path | None:
    """The folder ``atomic_replace_tree`` left: the destination, else its aside copy, else ``None``."""
    if destination.is_dir():
        return destination
    aside = aside_path(destination)
    return aside if aside.is_dir() else None


def mirror_tree(source: Path, destination: Path) -> None:
    """Copy every file of ``source`` that is new or changed into ``destination``, each atomically."""
    for file in source.rglob("*"):
        if not file.is_file():
            continue
        target = destination / file.relative_to(source)
        stat = file.stat()
        if (
            target.is_file()
            and target.stat().st_size == stat.st_size
            and target.stat().st_mtime >= stat.st_mtime
        ):
            continue
        atomic_copy(file, target)


def _atomic(path: Path, write) -> None:
    temporary = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        write_point(path)
        os.replace(temporary, path)
    except OSError as error:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
        raise _workspace_error(path, error) from error


def _workspace_error(path: Path, error: OSError) -> WorkspaceError:
    reason = error.strerror or str(error)
    return WorkspaceError(
        f"cannot write {path} ({reason}); is the Drive still mounted and is there space left?"
    )


def read_json_file(path: Path) -> dict | None:
    """A JSON object file, or ``None`` where it is absent; a damaged one (not JSON, or JSON but not an object)
    raises ``WorkspaceError`` naming the file, so it is never read as empty."""
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise WorkspaceError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(values, dict):
        raise WorkspaceError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values


def read_history_file(path: Path):
    """A history CSV as a DataFrame; empty where the file is absent or holds no row."""
    import pandas as pd

    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


_write_points_reached = 0


def write_point(path: Path) -> None:
    """Called by every atomic writer just before its rename: where a kill hurts most (fault injection).

    Unless ``CIFARLIB_KILL_AT_WRITE`` or ``CIFARLIB_WRITE_LOG`` is set this only counts. The kill-at-every-write
    test and ``make soak`` use it to stop the process at a chosen write, exactly as a real SIGKILL would.
    """
    global _write_points_reached
    _write_points_reached += 1
    log_file = os.environ.get(WRITE_LOG_ENV)
    if log_file:
        with open(log_file, "a") as handle:
            handle.write(f"{_write_points_reached}\t{path}\n")
    if os.environ.get(KILL_AT_WRITE_ENV) == str(_write_points_reached):
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------------------ run lock


def lock_stale_seconds() -> float:
    """The longest another host's lock may go without a heartbeat before it counts as abandoned (its holder may
    declare a shorter wait, never below ``MIN_LOCK_STALE_SECONDS``)."""
    value = os.environ.get("CIFARLIB_LOCK_STALE_SECONDS")
    if value is None:
        return DEFAULT_LOCK_STALE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"CIFARLIB_LOCK_STALE_SECONDS must be a positive number of seconds, got {value!r}")
    return seconds


class RunLock:
    """A run's ``.lock`` file: at most one process trains a run at a time, also on Google Drive.

    ``acquire`` creates the file with ``O_CREAT | O_EXCL`` (atomic on local disks and on Drive's mount) and
    writes the owner into it: host name and boot id (the same machine, only when both match), PID, the
    process's start time (so a reused PID is not mistaken for the owner) and a heartbeat that ``refresh``
    renews every epoch. A held lock raises ``RunLockedError`` naming
    the run and its holder; a stale one (owner dead on this host, or heartbeat too old) is broken and taken.
    """

    def __init__(self, run: RunFolder, stale_after: float | None = None):
        self.run = run
        self.path = run.path / LOCK_FILE
        self.stale_after = lock_stale_seconds() if stale_after is None else stale_after
        self.record: dict | None = None
        self._longest_gap = 0.0  # between this process's heartbeats

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.run.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WorkspaceError(
                f"cannot create run folder {self.run.path} ({error.strerror or error})"
            ) from error
        if self.path.is_dir():
            raise WorkspaceError(
                f"{self.path}: a folder where the run's lock file belongs; remove it (cifarlib never makes one) "
                "and run again"
            )
        # Two tries: the second follows breaking a stale lock.
        for _ in range(2):
            record = _owner_record()
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(self.path)
                reason = self._stale_reason(holder)
                if reason is None:
                    raise RunLockedError(self._held_message(holder)) from None
                try:
                    self._break(holder)
                except OSError as error:
                    raise _workspace_error(self.path, error) from error
                log.warning("Run %s: broke a stale lock (%s).", self.run.run_id, reason)
                continue
            except OSError as error:
                raise _workspace_error(self.path, error) from error
            try:
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(json.dumps(record))
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:
                self.path.unlink(missing_ok=True)
                raise _workspace_error(self.path, error) from error
            self.record = record
            return
        raise RunLockedError(self._held_message(_read_lock(self.path)))

    def refresh(self) -> None:
        """Renew the heartbeat; raises ``RunLockedError`` if another process has taken the lock meanwhile."""
        if self.record is None:
            raise RuntimeError("refresh() on a lock that is not held")
        holder = _read_lock(self.path)
        if not _same_owner(holder, self.record):
            raise RunLockedError(
                f"run {self.run.run_id!r}: lost its lock to {_describe(holder)} (this process's heartbeat reached "
                f"it older than the {self.record.get('stale_after', self.stale_after):.0f} s its lock allowed?); "
                "stopped so that two processes never write one run"
            )
        now = time.time()
        self._longest_gap = max(self._longest_gap, now - self.record["heartbeat"])
        declared = self._bounded_wait(HEARTBEAT_MARGIN * self._longest_gap)
        self.record = {**self.record, "heartbeat": now, "stale_after": declared}
        atomic_write_text(self.path, json.dumps(self.record))

    def held(self) -> bool:
        """Whether the lock file still names this process (it may have been broken and taken meanwhile)."""
        return self.record is not None and _same_owner(_read_lock(self.path), self.record)

    def release(self) -> None:
        if self.record is not None and _same_owner(_read_lock(self.path), self.record):
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.record = None

    def remove_temporaries(self) -> list[Path]:
        """Delete what killed writers left in the run folder; returns the paths removed.

        Only the lock holder writes the run folder, so while it is held every temporary file in it is stale:
        ``.<name>.tmp-<pid>`` files, a half-copied ``.backup.new``, a broken lock set aside. A ``.backup.old``
        left between the two renames of a backup swap is the only good backup when ``backup/`` is missing,
        so it is renamed back rather than deleted.
        """
        if self.record is None:
            raise RuntimeError("remove_temporaries() needs the lock held")
        removed = []
        backup = self.run.path / BACKUP_DIR
        aside = aside_path(backup)
        if aside.is_dir():
            if backup.is_dir():
                shutil.rmtree(aside, ignore_errors=True)
                removed.append(aside)
            else:
                os.replace(aside, backup)
        for path in sorted(self.run.path.rglob(".*"), key=lambda p: len(p.parts), reverse=True):
            if not TEMPORARY_NAME.fullmatch(path.name) or not path.exists():
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def live_holder(self) -> dict | None:
        """The owner record (``host``, ``pid``, ...) of a lock that protects a run now, else ``None``."""
        if not self.path.is_file():
            return None
        holder = _read_lock(self.path)
        return holder if holder is not None and self._stale_reason(holder) is None else None

    def _stale_reason(self, holder: dict | None) -> str | None:
        """Why the lock on disk no longer protects anyone, or ``None`` while it does."""
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return "it was just removed"
            return f"unreadable and {age:.0f} s old" if age > EMPTY_LOCK_GRACE_SECONDS else None
        if _on_this_machine(holder):
            pid = holder.get("pid")
            if not isinstance(pid, int) or not _process_alive(pid):
                return f"process {pid} on this host is gone"
            start = holder.get("process_start")
            if start is not None and _process_start(pid) not in (None, start):
                return f"process {pid} on this host is gone (its PID now belongs to another process)"
            return None
        beat = _heartbeat(holder)
        age = math.inf if beat is None else time.time() - beat
        if age > self._patience(holder):
            return f"its heartbeat from host {holder.get('host')} is {age:.0f} s old"
        return None

    def _patience(self, holder: dict | None) -> float:
        """How long ``holder`` may stay silent before its lock is taken over: the wait it declared after its last
        epoch, held to the same bounds it was written with (a damaged or hand-edited value cannot shorten it
        further), else this process's own (``stale_after``)."""
        declared = (holder or {}).get("stale_after")
        if (
            isinstance(declared, bool) or not isinstance(declared, (int, float)) or declared != declared
        ):  # NaN
            return self.stale_after
        return self._bounded_wait(declared)

    def _bounded_wait(self, seconds: float) -> float:
        """``seconds`` held between ``MIN_LOCK_STALE_SECONDS`` and this process's ``stale_after`` (which wins)."""
        return float(min(self.stale_after, max(MIN_LOCK_STALE_SECONDS, seconds)))

    def _break(self, holder: dict | None) -> None:
        """Set the stale lock aside and delete it, unless another process replaced it meanwhile."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        if _read_lock(aside) != holder and not self.path.exists():
            # Someone took the lock between our read and our rename: put theirs back.
            os.replace(aside, self.path)
            return
        aside.unlink(missing_ok=True)

    def _held_message(self, holder: dict | None) -> str:
        held = f"run {self.run.run_id!r} is being trained by {_describe(holder)}; wait for it to finish"
        if holder is not None and _on_this_machine(holder):
            return f"{held}, or stop that process (it is on this machine)"
        if holder is None:
            when = f"once the lock file is {EMPTY_LOCK_GRACE_SECONDS} s old"
        else:  # another machine's, with a heartbeat (without one it would be stale)
            when = f"from {_utc_time(_heartbeat(holder) + self._patience(holder))}"
        return (
            f"{held}, or if that machine is gone, run again {when}, when its lock counts as abandoned, or delete "
            f"{self.path} now"
        )


def _owner_record() -> dict:
    now = time.time()
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": _process_start(os.getpid()),
        "boot_id": _boot_id(),
        "acquired": now,
        "heartbeat": now,
    }


def _same_owner(holder: dict | None, record: dict) -> bool:
    keys = ("host", "pid", "acquired")
    return holder is not None and all(holder.get(k) == record.get(k) for k in keys)


def _read_lock(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "a process that is creating its lock"
    return f"process {holder.get('pid')} on host {holder.get('host')} (last heartbeat {_utc_time(_heartbeat(holder))})"


def _on_this_machine(holder: dict) -> bool:
    """Whether the lock was taken on this machine (host name and boot id both match), where its PID means something."""
    return holder.get("host") == socket.gethostname() and holder.get("boot_id") == _boot_id()


def _heartbeat(holder: dict | None) -> float | None:
    """The holder's last heartbeat, in seconds since 1970; ``None`` where the lock holds no plausible one (a
    damaged or hand-edited file: not a number, or not between 1970 and a day from now)."""
    beat = (holder or {}).get("heartbeat")
    if isinstance(beat, bool) or not isinstance(beat, (int, float)) or not 0 <= beat <= time.time() + 86_400:
        return None
    return float(beat)


def _utc_time(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"{dt.datetime.fromtimestamp(seconds, dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _boot_id() -> str | None:
    """This machine's boot id (Linux): two machines that happen to share a host name differ in it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) still answers signal 0 but holds nothing.
    return _process_state(pid) != "Z"


def _process_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; the fields after it are plain.
    return text.rsplit(")", 1)[1].split()


def _process_state(pid: int) -> str | None:
    fields = _process_stat(pid)
    return fields[0] if fields else None


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused PID from its owner."""
    fields = _process_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None
