"""``train(config, workspace) -> RunResult``: one training run, resumable, persisted to the workspace.

The steps, in order: open the run folder (a completed run is returned as it is; an unfinished one is resumed
from its last finished epoch); load and split the data; pick precision, XLA and distribution for the device;
build and compile the network; fit with the reference callbacks writing to a local staging folder that
``RunPublisher`` mirrors into the run folder every epoch; evaluate the best checkpoint on the test set; write
``summary.json`` last. The run folder layout is described in ``cifarlib.storage``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from cifarlib import __version__, storage
from cifarlib.callbacks import EpochTimer, RunPublisher
from cifarlib.config import EVALUATION_SPLITS, RunConfig, monitor_mode
from cifarlib.data import load_cifar10, split_validation, to_grayscale
from cifarlib.device import DevicePlan, make_strategy, plan_device
from cifarlib.errors import RunConfigError, WorkspaceError
from cifarlib.evaluation import evaluate_model, predict_probabilities, score
from cifarlib.memory import estimate_memory
from cifarlib.model import build_inception
from cifarlib.pipeline import make_inputs
from cifarlib.schedules import WarmupCosine

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunResult:
    """What a run left: its id and folder, ``summary.json`` as a dict, and the per-epoch history."""

    run_id: str
    run_dir: Path
    summary: dict
    history: "object"  # pandas.DataFrame

    @property
    def test_accuracy(self) -> float | None:
        return self.summary.get("test_accuracy")

    @classmethod
    def load(cls, run: storage.RunFolder) -> "RunResult":
        return cls(run.run_id, run.path, run.read_json(storage.SUMMARY_FILE) or {}, run.read_history())


def new_run_id(config: RunConfig, now: dt.datetime | None = None) -> str:
    """A run id that sorts by time and is a valid file name everywhere: ``20261128-142233-seed-b256``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{config.preset}-b{config.batch_size}"


def train(
    config: RunConfig,
    workspace: storage.Workspace | str | Path | None = None,
    *,
    run_id: str | None = None,
    retrain: bool = False,
    verbose: int | str = "auto",
    callbacks: list | tuple = (),
) -> RunResult:
    """Train (or resume, or return) the run ``run_id`` of ``config`` in ``workspace``.

    Args:
        config: the run's settings.
        workspace: a ``Workspace``, a local folder, or ``None`` for ``open_workspace()``'s default.
        run_id: names the run; an existing unfinished run of that id is resumed. Default: a new time-based id.
        retrain: train a completed run again from scratch (its folder is replaced).
        verbose: Keras's progress display.
        callbacks: extra Keras callbacks, called after cifarlib's own.
    """
    workspace = storage.as_workspace(workspace)
    run = workspace.run(run_id or new_run_id(config))
    if run.completed and not retrain:
        # Returning a finished run trained with other settings would report its figures as this config's.
        _refuse_other_settings(run, config)
        log.info("Run %s is already complete; pass retrain=True to train it again.", run.run_id)
        return RunResult.load(run)
    if retrain and run.path.exists():
        shutil.rmtree(run.path)
    _prepare_run_folder(run, config)

    keras.utils.set_random_seed(config.seed)
    splits = _load_splits(config)
    plan = plan_device(config)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(plan.precision)
    try:
        return _fit_and_finish(workspace, run, config, plan, splits, verbose, callbacks)
    finally:
        # The policy is process-wide: leave it as the caller had it.
        keras.mixed_precision.set_global_policy(previous_policy)


def _fit_and_finish(workspace, run, config, plan, splits, verbose, callbacks) -> RunResult:
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits
    log.info(
        "Device %s: precision %s, jit_compile %s, strategy %s x%d",
        plan.device.name,
        plan.precision,
        plan.jit_compile,
        plan.strategy,
        plan.replicas,
    )
    global_batch = plan.global_batch(config.batch_size)
    steps_per_epoch = max(1, -(-len(x_train) // global_batch))

    strategy = make_strategy(plan) if plan.device.backend == "tensorflow" else None
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = _build_model(config, x_train)
        _compile(model, config, plan, steps_per_epoch)
    warn_if_too_big(model, config, plan)

    staging = _prepare_staging(workspace, run)
    stock, stateful = _stock_callbacks(config, staging, plan)
    publisher = RunPublisher(run, staging, stateful)
    train_inputs = make_inputs(
        x_train,
        y_train,
        batch_size=global_batch,
        shuffle=True,
        seed=config.seed,
        one_hot=config.label_smoothing > 0,
    )
    val_inputs = (
        make_inputs(
            x_val,
            y_val,
            batch_size=global_batch,
            shuffle=False,
            seed=config.seed,
            one_hot=config.label_smoothing > 0,
        )
        if len(x_val)
        else None
    )

    started = time.perf_counter()
    model.fit(
        train_inputs.data,
        y=train_inputs.labels,
        batch_size=train_inputs.batch_size,
        shuffle=train_inputs.shuffle,
        epochs=config.epochs,
        validation_data=val_inputs.as_validation() if val_inputs else None,
        callbacks=[EpochTimer(), *stock, publisher, *callbacks],
        verbose=verbose,
    )
    publisher.publish_final()
    fit_seconds = time.perf_counter() - started

    # The last epoch's weights on the validation split, scored the way the test set is (with the run's
    # test-time augmentation): the figure a fixed-budget recipe is compared on, free of best-epoch selection.
    final_validation = evaluate_model(
        model, x_val, y_val, batch_size=global_batch, tta=config.tta, tta_translate=config.tta_translate
    )
    best_model = keras.saving.load_model(run.file(storage.BEST_MODEL_FILE))
    test = evaluate_model(
        best_model,
        x_test,
        y_test,
        batch_size=global_batch,
        tta=config.tta,
        tta_translate=config.tta_translate,
    )
    summary = _summary(
        run, config, plan, model, publisher.rows, test, final_validation, fit_seconds, len(x_train)
    )
    storage.atomic_write_text(run.file(storage.SUMMARY_FILE), _json(summary))
    shutil.rmtree(run.file(storage.BACKUP_DIR), ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    workspace.flush()
    return RunResult.load(run)


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
    run, config = _finished_run(run_id, workspace, data=data, tta=tta, tta_translate=tta_translate)
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

    Returns ``{"accuracy", "loss", "images", "tta", "tta_translate"}``. ``data`` overrides the source in the
    run's config; ``split="validation"`` scores the run's own held-out validation images instead; ``tta`` and
    ``tta_translate`` override the run's test-time augmentation (``None`` keeps it).
    """
    run, config = _finished_run(run_id, workspace, data=data, tta=tta, tta_translate=tta_translate)
    images, labels, probabilities = _predict_split(run, config, split)
    return {
        **score(probabilities, labels),
        "images": len(images),
        "tta": config.tta,
        "tta_translate": config.tta_translate,
    }


def _finished_run(run_id, workspace, **changes) -> tuple[storage.RunFolder, RunConfig]:
    """A run that has a ``best.keras``, and its stored config with the non-``None`` ``changes`` applied."""
    workspace = storage.as_workspace(workspace)
    if run_id is None:
        raise WorkspaceError(f"no completed run in {workspace.root} to analyse")
    run = workspace.run(run_id)
    stored = run.read_json(storage.CONFIG_FILE)
    if stored is None:
        raise WorkspaceError(f"{run.path}: no run there (missing {storage.CONFIG_FILE})")
    best = run.file(storage.BEST_MODEL_FILE)
    if not best.is_file():
        raise WorkspaceError(f"{best}: missing; the run has not finished an epoch yet")
    return run, RunConfig.from_dict(stored).replace(**{k: v for k, v in changes.items() if v is not None})


def _predict_split(run: storage.RunFolder, config: RunConfig, split: str):
    if split not in EVALUATION_SPLITS:
        raise ValueError(f"split must be one of {EVALUATION_SPLITS}, got {split!r}")
    _, validation, test = _load_splits(config)
    images, labels = validation if split == "validation" else test
    if len(images) == 0:
        raise RunConfigError(f"data source {config.data!r} gives run {run.run_id!r} no {split} images")
    model = keras.saving.load_model(run.file(storage.BEST_MODEL_FILE))
    probabilities = predict_probabilities(
        model, images, batch_size=config.batch_size, tta=config.tta, tta_translate=config.tta_translate
    )
    return images, labels, probabilities


# -------------------------------------------------------------------------------------------------- steps


def _refuse_other_settings(run: storage.RunFolder, config: RunConfig) -> None:
    """Raise ``RunConfigError`` naming every difference when the run folder holds a run with other settings."""
    stored = run.read_json(storage.CONFIG_FILE)
    differences = RunConfig.from_dict(stored).differences(config) if stored is not None else {}
    if differences:
        listed = ", ".join(f"{k}: {old!r} on disk vs {new!r} now" for k, (old, new) in differences.items())
        raise RunConfigError(
            f"run {run.run_id!r} exists with other settings ({listed}); use the same settings, a new run id, "
            "or retrain it"
        )


def _prepare_run_folder(run: storage.RunFolder, config: RunConfig) -> None:
    _refuse_other_settings(run, config)
    if run.read_json(storage.CONFIG_FILE) is not None:
        log.info("Resuming unfinished run %s", run.run_id)
        return
    record = {
        **config.to_dict(),
        "cifarlib_version": __version__,
        "keras_version": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tensorflow_version": _tensorflow_version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WorkspaceError(f"cannot create run folder {run.path} ({error.strerror or error})") from error
    storage.atomic_write_text(run.file(storage.CONFIG_FILE), _json(record))


def _load_splits(config: RunConfig):
    (x_train, y_train), (x_test, y_test) = load_cifar10(
        config.data, train_size=config.train_size, seed=config.seed
    )
    (x_train, y_train), (x_val, y_val) = split_validation(
        x_train, y_train, config.validation_fraction, seed=config.seed
    )
    if config.grayscale:
        # Rounded back to uint8 once, so the pipeline still moves bytes, not floats.
        x_train, x_val, x_test = (
            np.round(to_grayscale(x)).astype(np.uint8) for x in (x_train, x_val, x_test)
        )
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def _build_model(config: RunConfig, x_train: np.ndarray) -> keras.Model:
    # Per-channel statistics come from the training split itself, in [0, 1] units.
    mean = np.mean(x_train, axis=(0, 1, 2), dtype=np.float64) / 255.0
    std = np.std(x_train, axis=(0, 1, 2), dtype=np.float64) / 255.0
    return build_inception(
        config.preset,
        width=config.width,
        input_shape=x_train.shape[1:],
        channel_mean=mean.tolist(),
        channel_std=np.maximum(std, 1e-3).tolist(),
        augment_seed=config.seed,
        **config.architecture_overrides(),
    )


def _compile(model: keras.Model, config: RunConfig, plan: DevicePlan, steps_per_epoch: int) -> None:
    peak = plan.scaled_learning_rate(config.learning_rate)
    if config.schedule == "cosine":
        learning_rate = WarmupCosine(
            peak, config.epochs * steps_per_epoch, int(round(config.warmup_epochs * steps_per_epoch))
        )
    else:
        learning_rate = peak
    decay = config.weight_decay or None
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate, weight_decay=decay)
    else:
        optimizer = keras.optimizers.SGD(
            learning_rate, momentum=config.momentum, nesterov=True, weight_decay=decay
        )
    if decay and config.decay_kernels_only:
        # Decay on a kernel feeding BatchNorm only raises its effective learning rate (BN undoes its scale);
        # decay on BN scales/offsets and biases shrinks the outputs themselves. Set before the optimizer is built.
        optimizer.exclude_from_weight_decay(var_list=non_kernel_variables(model))
    if config.label_smoothing > 0:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer, loss=loss, metrics=[accuracy], jit_compile=plan.jit_compile)
    # BackupAndRestore needs built optimizer variables to load a backup into.
    optimizer.build(model.trainable_variables)


def non_kernel_variables(model: keras.Model) -> list:
    """Trainable variables of rank 0 or 1: BatchNorm gammas and betas and biases, the ones kernel-only decay skips."""
    return [variable for variable in model.trainable_variables if len(variable.shape) <= 1]


def run_memory_estimate(model: keras.Model, config: RunConfig, plan: DevicePlan | None = None) -> float:
    """GiB ``estimate_memory(method="training")`` gives for this run's batch, optimizer and precision."""
    plan = plan or plan_device(config)
    optimizer = "adam" if config.optimizer == "adam" else "sgd_momentum"
    return estimate_memory(
        model, config.batch_size, method="training", optimizer=optimizer, precision=plan.precision
    )


def warn_if_too_big(
    model: keras.Model, config: RunConfig, plan: DevicePlan, gpus: list[dict] | None = None
) -> str | None:
    """Log (and return) a warning when the training memory estimate exceeds the GPU's free memory."""
    if plan.device.kind != "gpu":
        return None
    if gpus is None:
        from cifarlib.system import gpu_info

        gpus = gpu_info()
    if not gpus:
        return None
    needed = run_memory_estimate(model, config, plan)
    free = gpus[0]["memory_free_mib"] / 1024
    if needed <= free:
        return None
    message = (
        f"estimated training memory {needed:.2f} GiB exceeds the GPU's free {free:.2f} GiB at batch "
        f"{config.batch_size}: expect an out-of-memory error; lower the batch size"
    )
    log.warning("%s", message)
    return message


def _prepare_staging(workspace: storage.Workspace, run: storage.RunFolder) -> Path:
    """A fresh local staging folder holding the run folder's published state (the truth to resume from)."""
    staging = workspace.staging_dir(run.run_id)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    backup = storage.recover_tree(run.file(storage.BACKUP_DIR))
    if backup is not None:
        shutil.copytree(backup, staging / storage.BACKUP_DIR)
    if run.file(storage.TENSORBOARD_DIR).is_dir():
        shutil.copytree(run.file(storage.TENSORBOARD_DIR), staging / storage.TENSORBOARD_DIR)
    if run.file(storage.BEST_MODEL_FILE).is_file():
        shutil.copy2(run.file(storage.BEST_MODEL_FILE), staging / storage.BEST_MODEL_FILE)
    return staging


def _stock_callbacks(config: RunConfig, staging: Path, plan: DevicePlan):
    """Keras's callbacks as the reference used them; returns (all in order, the stateful ones by name)."""
    mode = monitor_mode(config.monitor)
    stateful = {
        "checkpoint": keras.callbacks.ModelCheckpoint(
            str(staging / storage.BEST_MODEL_FILE), monitor=config.monitor, mode=mode, save_best_only=True
        )
    }
    if config.early_stopping_patience is not None:
        stateful["early_stopping"] = keras.callbacks.EarlyStopping(
            monitor=config.monitor, mode=mode, patience=config.early_stopping_patience
        )
    if config.schedule == "plateau":
        stateful["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor=config.monitor,
            mode=mode,
            factor=config.reduce_lr_factor,
            patience=config.reduce_lr_patience,
            min_delta=config.reduce_lr_min_delta,
        )
    extras = []
    if plan.device.backend == "tensorflow":
        extras.append(keras.callbacks.TensorBoard(str(staging / storage.TENSORBOARD_DIR)))
    else:
        log.warning(
            "TensorBoard logs are written only under the TensorFlow backend; skipped on %s.",
            plan.device.backend,
        )
    # BackupAndRestore comes after the callbacks it must not disturb and before RunPublisher, which reads
    # the epoch it restored.
    backup = keras.callbacks.BackupAndRestore(str(staging / storage.BACKUP_DIR), delete_checkpoint=False)
    return [*stateful.values(), *extras, backup], stateful


def _summary(run, config, plan, model, rows, test, final_validation, fit_seconds, train_images) -> dict:
    import pandas as pd

    history = pd.DataFrame(rows)
    mode = monitor_mode(config.monitor)
    if config.monitor in history:
        best_index = history[config.monitor].idxmax() if mode == "max" else history[config.monitor].idxmin()
    else:
        best_index = len(history) - 1
    best = history.iloc[best_index]
    return {
        "run_id": run.run_id,
        "preset": config.preset,
        "batch_size": config.batch_size,
        "global_batch_size": plan.global_batch(config.batch_size),
        "epochs_planned": config.epochs,
        "epochs_run": int(len(history)),
        "best_epoch": int(best["epoch"]),
        "best_val_accuracy": float(best["val_accuracy"]) if "val_accuracy" in best else None,
        "max_val_accuracy": float(history["val_accuracy"].max()) if "val_accuracy" in history else None,
        "final_val_accuracy": final_validation["accuracy"],
        "final_val_loss": final_validation["loss"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "tta": config.tta,
        "tta_translate": config.tta_translate,
        "seconds_per_epoch": float(history["seconds"].mean()),
        "total_seconds": float(history["seconds"].sum()),
        "fit_seconds_this_session": fit_seconds,
        "params": int(model.count_params()),
        "train_images": train_images,
        "device": plan.device.name,
        "device_kind": plan.device.kind,
        "precision": plan.precision,
        "jit_compile": plan.jit_compile,
        "replicas": plan.replicas,
        "keras_backend": plan.device.backend,
        "keras_version": keras.__version__,
        "tensorflow_version": _tensorflow_version(),
        "cifarlib_version": __version__,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _tensorflow_version() -> str | None:
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf.__version__


def _json(values: dict) -> str:
    import json

    return json.dumps(values, indent=2, sort_keys=True, default=str)
