"""The Keras callbacks cifarlib adds to the stock ones: epoch timing, the network's checkpoint, and publishing
to the run folder.

Keras's own callbacks (ModelCheckpoint, EarlyStopping, ReduceLROnPlateau, TensorBoard, BackupAndRestore) write
into a local staging folder. ``RunPublisher`` then updates the run folder in the workspace once per epoch, in
an order that keeps it consistent if the process dies at any point:

1. ``best.keras``, when the checkpoint improved (atomic copy);
2. ``backup/``: Keras's resume weights and optimizer state, plus the counters of the stateful callbacks
   (early-stopping and plateau patience, the best value so far), swapped in as a whole folder;
3. ``history.csv``, rewritten whole (atomically) from the rows of the epochs that are in the backup;
4. ``tensorboard/``, new or grown event files.

``BackupAndRestore`` restores weights, optimizer state (with the learning rate and step counter) and the epoch;
it does not restore callback counters or history, which is why this callback keeps them beside it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras

from cifarlib import storage
from cifarlib.errors import WorkspaceError

CALLBACK_STATE_FILE = "cifarlib_callbacks.json"
KERAS_BACKUP_METADATA = "training_metadata.json"
# Attributes that carry a stateful Keras callback's memory from one epoch to the next.
STATE_ATTRIBUTES = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")


class EpochTimer(keras.callbacks.Callback):
    """Adds ``seconds`` (wall time of the epoch, validation included) and ``learning_rate`` to each epoch's logs.

    Keras logs the learning rate itself only when it is a plain number; under a schedule this callback logs
    the schedule's rate at the end of the epoch.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["seconds"] = time.perf_counter() - self._started
        if "learning_rate" not in logs:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


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
    """

    def __init__(self, run: storage.RunFolder, staging: Path, stateful: dict[str, keras.callbacks.Callback]):
        super().__init__()
        self.run = run
        self.staging = staging
        self.stateful = stateful
        self.rows: list[dict] = []
        self._best_mtime = None

    # Keras calls on_train_begin in list order: this callback comes after BackupAndRestore (which has set the
    # restored epoch) and after the stateful callbacks (which have just reset their counters).
    def on_train_begin(self, logs=None):
        backup = self.staging / storage.BACKUP_DIR
        epochs_done = _read_json(backup / KERAS_BACKUP_METADATA).get("epoch", 0)
        history = self.run.read_history()
        self.rows = history.to_dict("records")[:epochs_done] if len(history) else []
        states = _read_json(backup / CALLBACK_STATE_FILE)
        for name, callback in self.stateful.items():
            for attribute, value in states.get(name, {}).items():
                setattr(callback, attribute, _decode(value))
        best = self.staging / storage.BEST_MODEL_FILE
        self._best_mtime = best.stat().st_mtime_ns if best.exists() else None

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{key: _plain(value) for key, value in (logs or {}).items()}}
        self.rows.append(row)
        try:
            self._publish_best()
            self._publish_backup()
            self._publish_history()
            self._publish_tensorboard()
        except WorkspaceError as error:
            self.model.stop_training = True
            raise WorkspaceError(
                f"{error}. Training stopped after epoch {epoch + 1}; the run folder {self.run.path} keeps its last "
                f"good state. Fix the workspace, then run again with run id {self.run.run_id!r} to resume."
            ) from error

    def publish_final(self) -> None:
        """After ``fit``: the last TensorBoard lines (written after the last epoch end) and the history."""
        self._publish_history()
        self._publish_tensorboard()

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
        storage.atomic_replace_tree(backup, self.run.file(storage.BACKUP_DIR))

    def _publish_history(self):
        import pandas as pd

        storage.atomic_write_text(
            self.run.file(storage.HISTORY_FILE), pd.DataFrame(self.rows).to_csv(index=False)
        )

    def _publish_tensorboard(self):
        source = self.staging / storage.TENSORBOARD_DIR
        if source.is_dir():
            storage.mirror_tree(source, self.run.file(storage.TENSORBOARD_DIR))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


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
