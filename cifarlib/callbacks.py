"""The Keras callbacks cifarlib adds to the stock ones: epoch timing, the network's checkpoint, and publishing
to the run folder.

Keras's own callbacks (ModelCheckpoint, EarlyStopping, ReduceLROnPlateau, TensorBoard, BackupAndRestore) write
into a local staging folder. ``RunPublisher`` then updates the run folder in the workspace once per epoch.

``backup/`` is the one source of truth for how far a run got. It holds, together and swapped in as one whole
folder: Keras's resume weights and optimizer state with the epoch count, the counters of the stateful callbacks
(early-stopping and plateau patience, the best value so far), the history rows of its epochs, and a copy of the
best model so far. Every other file is derived from it, so the writes of one epoch go:

1. ``backup/`` (one folder swap: before it the run is at epoch N-1, after it at epoch N);
2. ``best.keras``, copied from the backup's when the checkpoint improved (atomic copy);
3. ``history.csv``, rewritten whole (atomically) from the backup's rows;
4. ``tensorboard/``, new or grown event files.

A kill at any point of that sequence leaves files that are either the backup's epoch or one behind it; on resume
``on_train_begin`` rewrites ``history.csv`` and ``best.keras`` from the backup, so the history is always the
continuous epochs 1..N (docs/reliability.md gives the guarantees and the test that kills at every write).

``BackupAndRestore`` restores weights, optimizer state (with the learning rate and step counter) and the epoch;
it does not restore callback counters or history, which is why this callback keeps them beside it.
"""

from __future__ import annotations

import filecmp
import json
import math
import shutil
import time
from pathlib import Path

import keras

from cifarlib import integrity, run_lock, storage
from cifarlib.errors import RunLockedError, WorkspaceError
from cifarlib.formatting import FIRST_OF_START, SAID_APART, describe_epoch, format_duration

CALLBACK_STATE_FILE = "cifarlib_callbacks.json"
# Attributes that carry a stateful Keras callback's memory from one epoch to the next.
STATE_ATTRIBUTES = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")


class EpochTimer(keras.callbacks.Callback):
    """Adds ``seconds`` (wall time of the epoch, validation included), ``learning_rate`` and
    ``first_epoch_of_start`` (1 for the first epoch of this ``fit``, which includes compilation; see
    ``cifarlib.timings``) to each epoch's logs.

    Keras logs the learning rate itself only when it is a plain number; under a schedule this callback logs
    the schedule's rate at the end of the epoch.
    """

    def on_train_begin(self, logs=None):
        self._first = True

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["seconds"] = time.perf_counter() - self._started
        logs[FIRST_OF_START] = 1.0 if getattr(self, "_first", True) else 0.0
        self._first = False
        if "learning_rate" not in logs:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class EpochProgress(keras.callbacks.ProgbarLogger):
    """Keras's progress display, with one plain line per epoch: metrics, accuracy in percent, time, learning rate.

    With ``verbose=1`` (interactive use) Keras's progress bar runs during each epoch; with ``verbose=2`` (logs,
    papermill) only the epoch lines are printed. ``EpochTimer`` puts the epoch's seconds and learning rate into
    the logs for ``history.csv``; Keras would print them as if they were metrics, so they are said apart here.
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._epochs_this_start = 0

    def on_epoch_begin(self, epoch, logs=None):
        # Keras's "Epoch 1/10" header is left out: the epoch's line names the epoch.
        self._reset_progbar()

    def on_train_batch_end(self, batch, logs=None):
        if self.verbose == 1:
            super().on_train_batch_end(batch, {k: v for k, v in (logs or {}).items() if k not in SAID_APART})

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        line = describe_epoch(epoch + 1, self.epochs, logs)
        self._epochs_this_start = getattr(self, "_epochs_this_start", 0) + 1
        left = self.epochs - (epoch + 1)
        if self._epochs_this_start == 2 and left > 0 and "seconds" in logs:
            # The second epoch of a start is the first without compilation: the first honest speed.
            line += (
                f"\nat {logs['seconds']:.1f} s per epoch, the {left} epoch{'s' if left > 1 else ''} left "
                f"take{'' if left > 1 else 's'} about {format_duration(left * logs['seconds'])}"
            )
        if self.verbose == 1 and self.progbar is not None:
            # The bar is redrawn in place ("\r"); the epoch's line overwrites it rather than following its last
            # state, which would say the same again.
            line = "\r" + " " * getattr(self.progbar, "_prev_total_width", 0) + "\r" + line
        if self.verbose:
            print(line, flush=True)


class NetworkCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras's ``ModelCheckpoint``, saving ``network`` (the model that ``fit`` trains wraps it in augmentation).

    So ``best.keras`` holds the network alone, with no training-only layer, and loads with plain Keras.
    """

    def __init__(self, filepath, *, network: keras.Model, **kwargs):
        super().__init__(filepath, **kwargs)
        self.network = network

    @property
    def model(self):
        return self.network


class RunPublisher(keras.callbacks.Callback):
    """Mirrors the staging folder into the run folder after every epoch (see the module docstring).

    Args:
        run: the run folder in the workspace.
        staging: the local folder the other callbacks write to.
        stateful: callbacks whose counters must survive a resume (keyed by a stable name).
        lock: the run's lock, whose heartbeat is renewed every epoch (``None``: no lock is held).
    """

    def __init__(
        self,
        run: storage.RunFolder,
        staging: Path,
        stateful: dict[str, keras.callbacks.Callback],
        lock: run_lock.RunLock | None = None,
    ):
        super().__init__()
        self.run = run
        self.staging = staging
        self.stateful = stateful
        self.lock = lock
        self.rows: list[dict] = []
        self._best_mtime = None

    # Keras calls on_train_begin in list order: this callback comes after BackupAndRestore (which has set the
    # restored epoch) and after the stateful callbacks (which have just reset their counters).
    def on_train_begin(self, logs=None):
        backup = self.staging / storage.BACKUP_DIR
        epochs_done = _read_json(backup / storage.KERAS_BACKUP_METADATA).get("epoch", 0)
        rows_file = backup / storage.HISTORY_FILE
        # Runs backed up before the rows were kept in the backup fall back to the run's history.csv.
        history = storage.read_history_file(
            rows_file if rows_file.is_file() else self.run.file(storage.HISTORY_FILE)
        )
        self.rows = history.to_dict("records")[:epochs_done] if len(history) else []
        if len(self.rows) != epochs_done:
            raise WorkspaceError(
                f"{self.run.path}: the backup is at epoch {epochs_done} but holds {len(self.rows)} history rows; "
                f"delete {self.run.file(storage.BACKUP_DIR)} to train run {self.run.run_id!r} again from epoch 1"
            )
        states = _read_json(backup / CALLBACK_STATE_FILE)
        for name, callback in self.stateful.items():
            for attribute, value in states.get(name, {}).items():
                setattr(callback, attribute, _decode(value))
        self._restore_from_backup()
        best = self.staging / storage.BEST_MODEL_FILE
        self._best_mtime = best.stat().st_mtime_ns if best.exists() else None

    def _restore_from_backup(self):
        """Bring history.csv and best.keras back to the backup's epoch (a kill may have come between writes)."""
        self._publish_history()
        saved_best = self.staging / storage.BACKUP_DIR / storage.BEST_MODEL_FILE
        if not saved_best.is_file():
            return
        staged = self.staging / storage.BEST_MODEL_FILE
        if not staged.is_file() or not filecmp.cmp(saved_best, staged, shallow=False):
            shutil.copyfile(saved_best, staged)
        published = self.run.file(storage.BEST_MODEL_FILE)
        if not published.is_file() or not filecmp.cmp(saved_best, published, shallow=False):
            storage.atomic_copy(saved_best, published)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{key: _plain(value) for key, value in (logs or {}).items()}}
        self.rows.append(row)
        try:
            if self.lock is not None:
                self.lock.refresh()
            self._publish_backup()
            self._publish_best()
            self._publish_history()
            self._publish_tensorboard()
        except RunLockedError:
            # Another process owns the run now: it stops here unchanged, without the advice to resume it.
            self.model.stop_training = True
            raise
        except WorkspaceError as error:
            self.model.stop_training = True
            raise WorkspaceError(
                f"{error}. Training stopped after epoch {epoch + 1}; the run folder {self.run.path} keeps its last "
                f"good state. Fix the workspace, then run again with run id {self.run.run_id!r} to resume."
            ) from error

    def publish_final(self) -> None:
        """After ``fit``: the history, the last TensorBoard lines (written after the last epoch end), and a
        ``best.keras`` that matches the staged one (the test score is taken from it next)."""
        self._publish_history()
        self._publish_tensorboard()
        staged = self.staging / storage.BEST_MODEL_FILE
        published = self.run.file(storage.BEST_MODEL_FILE)
        # A copy deleted or damaged in the workspace since it was published is replaced, not trusted.
        if staged.is_file() and (
            not published.is_file() or not filecmp.cmp(staged, published, shallow=False)
        ):
            storage.atomic_copy(staged, published)

    def _publish_best(self):
        best = self.staging / storage.BEST_MODEL_FILE
        if best.exists() and best.stat().st_mtime_ns != self._best_mtime:
            storage.atomic_copy(best, self.run.file(storage.BEST_MODEL_FILE))
            self._best_mtime = best.stat().st_mtime_ns

    def _publish_backup(self):
        backup = self.staging / storage.BACKUP_DIR
        if not backup.is_dir():
            return
        states = {
            name: {a: _encode(getattr(cb, a)) for a in STATE_ATTRIBUTES if hasattr(cb, a)}
            for name, cb in self.stateful.items()
        }
        (backup / CALLBACK_STATE_FILE).write_text(json.dumps(states))
        (backup / storage.HISTORY_FILE).write_text(history_csv(self.rows))
        best = self.staging / storage.BEST_MODEL_FILE
        if best.exists():
            shutil.copyfile(best, backup / storage.BEST_MODEL_FILE)
        # Written last: a resume checks every file against it before trusting any (cifarlib.integrity).
        integrity.write_manifest(backup)
        storage.atomic_replace_tree(backup, self.run.file(storage.BACKUP_DIR))

    def _publish_history(self):
        path = self.run.file(storage.HISTORY_FILE)
        if not self.rows:
            # No epoch finished: no history (a file left by a killed first attempt would describe nothing).
            if path.exists():
                path.unlink()
            return
        storage.atomic_write_text(path, history_csv(self.rows))

    def _publish_tensorboard(self):
        source = self.staging / storage.TENSORBOARD_DIR
        if source.is_dir():
            storage.mirror_tree(source, self.run.file(storage.TENSORBOARD_DIR))


def history_csv(rows: list[dict]) -> str:
    """The history as CSV text, the same in the backup and the run folder. NaN (a diverged loss) is written as
    ``nan``, so that an empty cell always means a damaged file (``cifarlib.integrity.history_problem``)."""
    import pandas as pd

    return pd.DataFrame(rows).to_csv(index=False, na_rep="nan")


def _read_json(path: Path) -> dict:
    """A backup's JSON file, or ``{}`` where it is absent; a damaged one raises, never read as empty."""
    return storage.read_json_file(path) or {}


def _plain(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _encode(value):
    """JSON has no infinities; callbacks start with ``best = inf``."""
    value = _plain(value)
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _decode(value):
    return float(value) if value in ("inf", "-inf") else value
