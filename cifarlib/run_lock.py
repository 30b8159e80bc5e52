"""The run lock: at most one process trains a run at a time, also on Google Drive.

Google Drive's FUSE mount does not honour ``flock``, so the lock is a file, ``<run>/.lock``, created with
``O_EXCL`` that holds its owner (host, boot id, PID, process start time), a heartbeat renewed every epoch and how
long to wait for the next one. A lock whose process is dead on this host, or (another host) whose heartbeat is
older than that wait, at most ``lock_stale_seconds()``, is stale and broken. What is guaranteed under kills and
locks, and how to recover, is in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import shutil
import socket
import time
from pathlib import Path

from cifarlib.errors import RunLockedError, WorkspaceError
from cifarlib.storage import (
    BACKUP_DIR,
    LOCK_FILE,
    TEMPORARY_NAME,
    RunFolder,
    aside_path,
    atomic_write_text,
    workspace_error,
)

log = logging.getLogger(__name__)

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
                    raise workspace_error(self.path, error) from error
                log.warning("Run %s: broke a stale lock (%s).", self.run.run_id, reason)
                continue
            except OSError as error:
                raise workspace_error(self.path, error) from error
            try:
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(json.dumps(record))
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:
                self.path.unlink(missing_ok=True)
                raise workspace_error(self.path, error) from error
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
