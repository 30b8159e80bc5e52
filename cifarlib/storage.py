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

The run lock that keeps two processes off one run is ``cifarlib.run_lock``. What is guaranteed under kills and
locks, and how to recover, is in docs/reliability.md.
"""

from __future__ import annotations

import getpass
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cifarlib.errors import MissingWorkspaceError, WorkspaceError

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
        raise workspace_error(destination, error) from error


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
        raise workspace_error(path, error) from error


def workspace_error(path: Path, error: OSError) -> WorkspaceError:
    """A failed write as one line naming the file, and what usually causes it on Drive."""
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
