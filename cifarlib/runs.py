"""Finished runs read back: a run's predictions and its score on the test set or its own validation split.

``evaluate_run`` scores a run's ``best.keras`` as ``train`` did at the end (``python -m cifarlib evaluate``);
``run_predictions`` gives the images, labels and class probabilities behind that score (the results notebook's
confusion matrix and sample grids). Both load the images through ``cifarlib.data.load_run_splits``, the same
function ``train`` uses, so a run is scored on exactly the split it was held out from. ``predict_files``
classifies a user's own image files (``python -m cifarlib predict``).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd

from cifarlib import storage
from cifarlib.config import EVALUATION_SPLITS, RunConfig
from cifarlib.data import CLASS_NAMES, image_files, load_run_splits, read_image, to_grayscale
from cifarlib.errors import DataError, RunConfigError, WorkspaceError
from cifarlib.evaluation import predict_probabilities, score
from cifarlib.model import load_network


def run_predictions(
    run_id: str,
    workspace: storage.Workspace | str | Path | None = None,
    *,
    data: str | None = None,
    split: str = "test",
    tta: bool | None = None,
    tta_translate: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A run's test (or ``split="validation"``) images, labels, and the class probabilities its ``best.keras`` gives them.

    The images are loaded as the run loaded them (same source unless ``data`` overrides it, same seeded
    validation split, same grayscale setting). Predictions use the run's test-time augmentation unless
    ``tta`` / ``tta_translate`` override it (to score a finished run another way without retraining).
    """
    run, config = finished_run(run_id, workspace, data=data, tta=tta, tta_translate=tta_translate)
    return _predict_split(run, config, split)


def evaluate_run(
    run_id: str,
    workspace: storage.Workspace | str | Path | None = None,
    *,
    data: str | None = None,
    split: str = "test",
    tta: bool | None = None,
    tta_translate: int | None = None,
) -> dict:
    """Reload a run's ``best.keras`` and score it on the test set (as ``train`` did at the end) or its validation split.

    Returns ``{"accuracy", "loss", "images", "tta", "tta_translate", "label_smoothing"}``; the loss is the plain
    cross-entropy, which differs from the history's training loss where the run trained with label smoothing. ``data`` overrides the source in the
    run's config; ``split="validation"`` scores the run's own held-out validation images instead; ``tta`` and
    ``tta_translate`` override the run's test-time augmentation (``None`` keeps it).
    """
    run, config = finished_run(run_id, workspace, data=data, tta=tta, tta_translate=tta_translate)
    images, labels, probabilities = _predict_split(run, config, split)
    return {
        **score(probabilities, labels),
        "images": len(images),
        "tta": config.tta,
        "tta_translate": config.tta_translate,
        "label_smoothing": config.label_smoothing,
    }


def predict_files(
    run_id: str, paths, workspace: storage.Workspace | str | Path | None = None
) -> pd.DataFrame:
    """The class a run's ``best.keras`` gives each image file among ``paths`` (files, or folders of them).

    Returns one row per file: ``file``, ``predicted_class``, ``probability`` and ``note`` (the original size of
    a picture that was resized to 32x32). The images go through exactly what scores the run: the network takes
    raw 0-255 pixels (it standardises them itself), in grayscale where the run trained so, and the probabilities
    are averaged over the run's test-time augmentation views (``cifarlib.evaluation.predict_probabilities``).
    """
    run, config = finished_run(run_id, workspace)
    files = image_files(paths)
    read = [read_image(file, resize=True) for file in files]
    images = np.stack([array for array, _ in read])
    if config.grayscale:
        images = np.round(to_grayscale(images)).astype(np.uint8)
    probabilities = predict_probabilities(
        load_best_model(run),
        images,
        batch_size=config.batch_size,
        tta=config.tta,
        tta_translate=config.tta_translate,
    )
    predicted = np.argmax(probabilities, axis=1)
    return pd.DataFrame(
        {
            "file": [str(file) for file in files],
            "predicted_class": [CLASS_NAMES[i] for i in predicted],
            "probability": probabilities[np.arange(len(files)), predicted],
            "note": ["" if size is None else f"resized from {size[0]}x{size[1]}" for _, size in read],
        }
    )


def finished_run(run_id, workspace, **changes) -> tuple[storage.RunFolder, RunConfig]:
    """A run that has a ``best.keras``, and its stored config with the non-``None`` ``changes`` applied."""
    run = storage.as_workspace(workspace, create=False).run(run_id)
    stored = run.read_json(storage.CONFIG_FILE)
    if stored is None:
        raise WorkspaceError(f"{run.path}: no run there (missing {storage.CONFIG_FILE})")
    _check_best_model(run)
    run.warn_if_history_damaged()
    try:
        config = RunConfig.from_dict(stored)
    except (RunConfigError, TypeError) as error:
        raise RunConfigError(f"{run.file(storage.CONFIG_FILE)}: {error}") from error
    return run, config.replace(**{k: v for k, v in changes.items() if v is not None})


def _predict_split(run: storage.RunFolder, config: RunConfig, split: str):
    if split not in EVALUATION_SPLITS:
        raise ValueError(f"split must be one of {EVALUATION_SPLITS}, got {split!r}")
    try:
        _, validation, test = load_run_splits(config)
    except DataError as error:
        # The images may have moved, or the run was stored with a path relative to another folder.
        raise DataError(f"run {run.run_id!r}: {error}; name the run's images with data= (--data)") from error
    images, labels = validation if split == "validation" else test
    if len(images) == 0:
        raise RunConfigError(f"data source {config.data!r} gives run {run.run_id!r} no {split} images")
    model = load_best_model(run)
    probabilities = predict_probabilities(
        model, images, batch_size=config.batch_size, tta=config.tta, tta_translate=config.tta_translate
    )
    return images, labels, probabilities


def load_best_model(run: storage.RunFolder) -> keras.Model:
    """The run's ``best.keras``; a file that does not load raises ``WorkspaceError`` saying how to recover."""
    best = run.file(storage.BEST_MODEL_FILE)
    try:
        return load_network(best)
    except Exception as error:  # noqa: BLE001 - a damaged zip or weights file fails in many ways.
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise WorkspaceError(f"{best}: cannot be loaded ({reason}); {_recovery(run)}") from error


def _check_best_model(run: storage.RunFolder) -> None:
    """Raise ``WorkspaceError`` saying exactly what is missing, and how to get it back, when best.keras is absent."""
    best = run.file(storage.BEST_MODEL_FILE)
    if best.is_file():
        return
    backup = storage.recover_tree(run.file(storage.BACKUP_DIR))
    if not run.completed and backup is None and len(run.read_history()) == 0:
        raise WorkspaceError(f"{best}: missing; run {run.run_id!r} has not finished an epoch yet")
    raise WorkspaceError(f"{best}: missing; {_recovery(run)}")


def _recovery(run: storage.RunFolder) -> str:
    """How to get a run's best model back: resume from its backup, or retrain (a completed run keeps none)."""
    # A kill between the two renames of a backup swap leaves the backup aside; a resume renames it back.
    backup = storage.recover_tree(run.file(storage.BACKUP_DIR))
    if not run.completed and backup is not None and (backup / storage.BEST_MODEL_FILE).is_file():
        return (
            f"run {run.run_id!r} is unfinished and its backup holds a copy: train it again with the same settings "
            "and run id to resume, which restores best.keras"
        )
    if run.completed:
        return (
            f"run {run.run_id!r} is completed and keeps no backup, so its trained weights are lost: retrain it "
            "(train with the same run id and --retrain)"
        )
    return (
        f"run {run.run_id!r} is unfinished and no backup holds a copy, so its trained weights are lost: train it "
        "again under a new run id, or delete its folder and train again"
    )
