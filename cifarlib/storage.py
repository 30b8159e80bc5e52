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

Drive is slow with many small writes and syncs lazily, and a Colab VM can vanish at any moment. So training
writes to a local staging folder and the run folder is updated once per epoch from it, every file by a
temporary copy and a rename: a disconnect mid-write leaves the previous good file, never a torn one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cifarlib.errors import WorkspaceError

log = logging.getLogger(__name__)

COLAB_MOUNT_POINT = "/content/drive"
DEFAULT_DRIVE_FOLDER = "cifarlib"
DEFAULT_LOCAL_WORKSPACE = "~/cifarlib-workspace"
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
BEST_MODEL_FILE = "best.keras"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
SUMMARY_FILE = "summary.json"


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
        return (self.path / SUMMARY_FILE).is_file()

    def read_json(self, name: str) -> dict | None:
        """A JSON file of the run, or ``None`` where it is absent; a corrupt one raises ``WorkspaceError``."""
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise WorkspaceError(f"{path}: not valid JSON ({error})") from error

    def read_history(self):
        """history.csv as a DataFrame (empty where no epoch finished)."""
        import pandas as pd

        path = self.path / HISTORY_FILE
        if not path.is_file():
            return pd.DataFrame()
        return pd.read_csv(path)


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
        """Every run folder, oldest first (run ids sort by time)."""
        if not self.runs_dir.is_dir():
            return []
        return [
            RunFolder(path)
            for path in sorted(self.runs_dir.iterdir())
            if path.is_dir() and RUN_ID_PATTERN.fullmatch(path.name)
        ]

    def staging_dir(self, run_id: str) -> Path:
        """A local, fast folder where Keras callbacks write before the run folder is updated."""
        root = Path(os.environ.get("CIFARLIB_STAGING", Path(tempfile.gettempdir()) / "cifarlib-staging"))
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
) -> Workspace:
    """Open (and create) the workspace: Google Drive in Colab, else a local folder.

    Args:
        path: a local folder; overrides Drive and ``$CIFARLIB_HOME``.
        drive_folder: the folder under ``MyDrive`` used in Colab.
        mount_drive: ``None`` mounts Drive only in Colab and only when no ``path`` was given.
    """
    if mount_drive is None:
        mount_drive = path is None and in_colab()
    if mount_drive:
        root, on_drive = _mount_drive(drive_folder), True
    else:
        chosen = path if path is not None else os.environ.get("CIFARLIB_HOME", DEFAULT_LOCAL_WORKSPACE)
        root, on_drive = Path(chosen).expanduser(), False
    try:
        (root / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WorkspaceError(f"workspace {root}: cannot create it ({error.strerror or error})") from error
    return Workspace(root=root.resolve(), on_drive=on_drive)


def as_workspace(workspace: "Workspace | str | os.PathLike | None") -> Workspace:
    """A ``Workspace`` as it is; a folder or ``None`` through ``open_workspace`` (what every API that takes one does)."""
    return workspace if isinstance(workspace, Workspace) else open_workspace(workspace)


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
            f"run id must be 1-128 letters, digits, '.', '_' or '-' and start with a letter or digit, got {run_id!r}"
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
    aside = parent / f".{destination.name}.old"
    try:
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.copytree(source, fresh)
        if destination.exists():
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(destination, aside)
        os.replace(fresh, destination)
        shutil.rmtree(aside, ignore_errors=True)
    except OSError as error:
        shutil.rmtree(fresh, ignore_errors=True)
        raise _workspace_error(destination, error) from error


def recover_tree(destination: Path) -> Path | None:
    """The folder ``atomic_replace_tree`` left: the destination, else its aside copy, else ``None``."""
    if destination.is_dir():
        return destination
    aside = destination.parent / f".{destination.name}.old"
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
