"""``train(config, workspace) -> RunResult``: one training run, resumable, persisted to the workspace.

The steps, in order: open the run folder (a completed run is returned as it is; an unfinished one is resumed
from its last finished epoch); load and split the data, before the run folder is created; take the run's lock
(a second process training the same run stops with one line); pick precision, XLA and distribution for the device;
build and compile the network; fit with the reference callbacks writing to a local staging folder that
``RunPublisher`` mirrors into the run folder every epoch; evaluate the best checkpoint on the test set; write
``summary.json`` last. The run folder layout is described in ``cifarlib.storage``; finished runs are read back
by ``cifarlib.runs``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import keras

from cifarlib import __version__, integrity, run_lock, storage
from cifarlib.augment import FlipEpoch
from cifarlib.callbacks import EpochProgress, EpochTimer, NetworkCheckpoint, RunPublisher
from cifarlib.config import DEVICE_FIELDS, OPTIONS_OUTSIDE_OLD_RUN_IDS, REFERENCE, RunConfig, monitor_mode
from cifarlib.data import NAMED_SOURCES, channel_statistics, load_run_splits
from cifarlib.device import DevicePlan, make_strategy, plan_device
from cifarlib.errors import RunConfigError, RunInterrupted, RunLockedError, WorkspaceError
from cifarlib.evaluation import evaluate_model
from cifarlib.memory import warn_if_too_big
from cifarlib.model import build_model, load_network, training_model
from cifarlib.optimizer import (
    FreezeAfter,
    Lookahead,
    ScaledRateSGD,
    batch_norm_offsets,
    lookahead_variables,
    whitening_bias,
)
from cifarlib.pipeline import full_batches, make_inputs
from cifarlib.timings import epoch_timings

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


@dataclasses.dataclass
class FitContext:
    """What every step of one fit needs: the run, its settings, the device plan and the batch geometry."""

    run: storage.RunFolder
    config: RunConfig
    plan: DevicePlan
    train_images: int

    @property
    def global_batch(self) -> int:
        return self.plan.global_batch(self.config.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        # Training drops the last partial batch (cifarlib.pipeline), so an epoch is the full batches only.
        return max(1, full_batches(self.train_images, self.global_batch))


def settings_run_id(config: RunConfig) -> str:
    """The default run id, the same for the same settings: running them again resumes the unfinished run.

    ``tuned-b256-e100-3f9a2c1d0b``: the preset, batch size and epochs to read, then a hash of every setting
    except the device-only ones (so runs differing in any other setting, the seed included, never share an id).
    """
    return _run_id_of_settings(config, config.to_dict())


def _run_id_of_settings(config: RunConfig, settings: dict) -> str:
    kept = {
        k: v
        for k, v in settings.items()
        if k not in DEVICE_FIELDS and not (k in OPTIONS_OUTSIDE_OLD_RUN_IDS and v == REFERENCE[k])
    }
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{config.preset}-b{config.batch_size}-e{config.epochs}-{digest}"


def _default_run(workspace: storage.Workspace, config: RunConfig) -> storage.RunFolder:
    """The run of ``settings_run_id``, or the same settings' run from before data paths were stored absolute.

    Runs started before then hashed a relative ``data`` path as it was typed. Such a run, most often typed as the
    plain relative path from the folder it is resumed from, keeps its id, so running the same command resumes it
    (``_refuse_other_settings`` then compares the two paths made absolute from here).
    """
    run = workspace.run(settings_run_id(config))
    if run.path.exists() or config.data in NAMED_SOURCES:
        return run
    typed = {**config.to_dict(), "data": os.path.relpath(config.data)}
    earlier = workspace.run(_run_id_of_settings(config, typed))
    return earlier if earlier.path.exists() else run


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
        run_id: names the run; an existing unfinished run of that id is resumed. Default: derived from the
            settings (``settings_run_id``), so running the same settings again resumes their unfinished run.
        retrain: train a completed run again from scratch (its folder is replaced). An unfinished run is resumed
            all the same, so that a retrain interrupted and started again with the same call continues.
        verbose: 1: a progress bar and a line per epoch; 2: the line per epoch only; 0: silent (also cifarlib's
            own lines: new run, resumed, already complete). ``"auto"``: 1 in a terminal or a notebook, 2 where the
            output goes to a log.
        callbacks: extra Keras callbacks, called after cifarlib's own.
    """
    verbose = _resolve_verbose(verbose)
    workspace = storage.as_workspace(workspace)
    run = workspace.run(run_id) if run_id else _default_run(workspace, config)
    if run.completed and not retrain:
        return _completed_run(run, config, verbose)
    if not run.completed:
        _refuse_other_settings(run, config)
    # The data is loaded before the run folder is created, so a bad source leaves no empty run behind.
    keras.utils.set_random_seed(config.seed)
    splits = load_run_splits(config)
    _refuse_batch_above_training_split(config, len(splits[0][0]))
    created = not run.path.exists()
    # One process trains a run at a time; the lock's heartbeat is renewed every epoch (RunPublisher). A lock held
    # by another process raises RunLockedError here, before anything of the run folder is touched.
    with run_lock.RunLock(run) as lock:
        try:
            # Checked again under the lock: another process may have finished the run meanwhile.
            if run.completed and not retrain:
                return _completed_run(run, config, verbose, lock)
            # A damaged summary.json is retrained too: the run may have finished, and its files cannot tell.
            if retrain and run.file(storage.SUMMARY_FILE).exists():
                _clear_run_folder(run)
            lock.remove_temporaries()
            _check_saved_state(run)
            plan = plan_device(config)
            _prepare_run_folder(run, config, plan, verbose)
            return _fit(workspace, run, config, plan, splits, lock, verbose, callbacks)
        except BaseException as error:
            # A start that failed before its first epoch leaves no run to list or resume; removed while the lock
            # is still this process's, so never a folder that another process has taken over meanwhile.
            if created and lock.held() and not _has_trained(run):
                shutil.rmtree(run.path, ignore_errors=True)
            if isinstance(error, KeyboardInterrupt) and _has_trained(run):
                raise RunInterrupted(run.run_id) from error
            raise


def _refuse_batch_above_training_split(config: RunConfig, train_images: int) -> None:
    """Every training batch is full (the last partial one is dropped), so a batch must fit in the split."""
    if config.batch_size > train_images:
        raise RunConfigError(
            f"batch_size: {config.batch_size} is larger than the training split ({train_images:,} images); "
            "use a smaller batch or a larger --train-size"
        )


def _fit(workspace, run, config, plan, splits, lock, verbose, callbacks) -> RunResult:
    """Fit under the run's lock, evaluate the best checkpoint, write the summary (the steps of ``train``)."""
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits
    context = FitContext(run, config, plan, len(x_train))
    if verbose:
        print(_first_line(context, len(x_val), len(x_test)), flush=True)
    log.info(
        "Device %s: precision %s, jit_compile %s, strategy %s x%d",
        plan.device.name,
        plan.precision,
        plan.jit_compile,
        plan.strategy,
        plan.replicas,
    )
    with _precision_policy(plan.precision):
        strategy = make_strategy(plan) if plan.device.backend == "tensorflow" else None
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            # Per-channel statistics come from the training split itself.
            mean, std = channel_statistics(x_train)
            network = build_model(
                config, input_shape=x_train.shape[1:], channel_mean=mean, channel_std=std, stem_images=x_train
            )
            model = training_model(network, config.crop_padding, seed=config.seed, flip=config.flip)
            compile_model(model, config, plan, context.steps_per_epoch)
        warn_if_too_big(network, config, plan)

        staging = _prepare_staging(workspace, run)
        stock, stateful = _stock_callbacks(config, staging, plan, network, context.steps_per_epoch)
        publisher = RunPublisher(run, staging, stateful, lock)
        batching = dict(batch_size=context.global_batch, seed=config.seed, one_hot=config.label_smoothing > 0)
        train_inputs = make_inputs(x_train, y_train, shuffle=True, drop_remainder=True, **batching)
        val_inputs = make_inputs(x_val, y_val, shuffle=False, **batching) if len(x_val) else None

        started = time.perf_counter()
        model.fit(
            train_inputs.data,
            y=train_inputs.labels,
            batch_size=train_inputs.batch_size,
            shuffle=train_inputs.shuffle,
            epochs=config.epochs,
            validation_data=val_inputs.as_validation() if val_inputs else None,
            callbacks=[EpochTimer(), *stock, publisher, *callbacks, EpochProgress()],
            verbose=verbose,
        )
        lock.refresh()  # a fresh heartbeat for the final writes and evaluation, which no epoch's gap measured
        publisher.publish_final()
        fit_seconds = time.perf_counter() - started

        # The last epoch's weights on the validation split, scored the way the test set is (with the run's
        # test-time augmentation): the figure a fixed-budget recipe is compared on, free of best-epoch selection.
        scoring = dict(batch_size=context.global_batch, tta=config.tta, tta_translate=config.tta_translate)
        final_validation = evaluate_model(network, x_val, y_val, **scoring)
        best_network = load_network(run.file(storage.BEST_MODEL_FILE))
        test = evaluate_model(best_network, x_test, y_test, **scoring)

    summary = {
        **_history_summary(config, publisher.rows),
        "final_val_accuracy": final_validation["accuracy"],
        "final_val_loss": final_validation["loss"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "fit_seconds_this_session": fit_seconds,
        "params": int(network.count_params()),
        **_run_facts(context),
        # What later reads check the published files against (cifarlib.integrity).
        **{key: integrity.file_digest(run.file(name)) for name, key in integrity.SUMMARY_DIGESTS.items()},
    }
    # The evaluation can take minutes: the run is marked complete only while its lock is still this process's.
    lock.refresh()
    storage.atomic_write_text(run.file(storage.SUMMARY_FILE), _json(summary))
    shutil.rmtree(run.file(storage.BACKUP_DIR), ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    workspace.flush()
    return RunResult.load(run)


# -------------------------------------------------------------------------------------------------- steps


VERBOSE_VALUES = (0, 1, 2, "auto")


def _resolve_verbose(verbose: int | str) -> int:
    """Keras's ``"auto"`` made explicit: a progress bar where someone watches (a terminal or a notebook), else
    one line per epoch, so that logs hold no bar redrawn a hundred times. Other values raise ``ValueError``."""
    if isinstance(verbose, bool) or verbose not in VERBOSE_VALUES:
        raise ValueError(f"verbose must be one of {VERBOSE_VALUES}, got {verbose!r}")
    if verbose != "auto":
        return verbose
    return 1 if sys.stdout.isatty() or "ipykernel" in sys.modules else 2


def _device_name(plan: DevicePlan) -> str:
    kind, name = plan.device.kind.upper(), plan.device.name
    return kind if name.upper() == kind else f"{kind} ({name})"


def _first_line(context: FitContext, validation_images: int, test_images: int) -> str:
    """What is about to train and on what: printed before the first epoch, after the line that names the run and
    its folder (new or resumed)."""
    config, plan = context.config, context.plan
    return (
        f"{config.preset} recipe, width {config.width:g}, batch {config.batch_size}, {config.epochs} epochs: "
        f"{context.train_images:,} training / {validation_images:,} validation / {test_images:,} test images; "
        f"{_device_name(plan)}, {plan.precision}"
    )


@contextlib.contextmanager
def _precision_policy(policy: str):
    """Keras's global precision policy set to ``policy`` for the block; it is process-wide, so the caller's
    policy is put back afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def learning_rate_schedule(config: RunConfig, plan: DevicePlan, steps_per_epoch: int):
    """The optimizer's learning rate: a number, or Keras's ``CosineDecay`` with linear warm-up for ``"cosine"``.

    ``CosineDecay`` rises linearly from 0 to the peak over the warm-up steps, then follows half a cosine down to 0
    at the end of the budget. Being a schedule of the optimizer's step counter, it resumes exactly from a
    backup, and being a stock Keras class, a saved optimizer loads without cifarlib.
    """
    peak = plan.scaled_learning_rate(config.learning_rate)
    if config.schedule != "cosine":
        return peak
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = int(round(config.effective_warmup_epochs * steps_per_epoch))
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )


def compile_model(model: keras.Model, config: RunConfig, plan: DevicePlan, steps_per_epoch: int) -> None:
    """Compile ``model`` with the optimizer, schedule, weight decay, loss and metric that ``config`` asks for."""
    learning_rate = learning_rate_schedule(config, plan, steps_per_epoch)
    decay = config.weight_decay or None
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate, weight_decay=decay, **ema_settings(config))
    else:
        sgd = dict(momentum=config.momentum, nesterov=True, weight_decay=decay, **ema_settings(config))
        if config.offset_learning_rate_scale == 1.0 and not config.whitening_bias_epochs:
            # Keras's own class where no rate is scaled, so backups of runs from before the option resume as written.
            optimizer = keras.optimizers.SGD(learning_rate, **sgd)
        else:
            optimizer = ScaledRateSGD(learning_rate, rate_scale=config.offset_learning_rate_scale, **sgd)
            optimizer.scale_rate_of(batch_norm_offsets(model))
            optimizer.freezable(whitening_bias(model))
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


def ema_settings(config: RunConfig) -> dict:
    """The optimizer's arguments for an exponential moving average of the weights (none when it is off)."""
    if not config.ema_momentum:
        return {}
    return {"use_ema": True, "ema_momentum": config.ema_momentum}


def non_kernel_variables(model: keras.Model) -> list:
    """Trainable variables of rank 0 or 1: BatchNorm gammas and betas and biases, the ones kernel-only decay skips."""
    return [variable for variable in model.trainable_variables if len(variable.shape) <= 1]


def _completed_run(
    run: storage.RunFolder, config: RunConfig, verbose: int, lock: run_lock.RunLock | None = None
) -> RunResult:
    """A finished run as it is; a backup or temporary file that a kill after the summary left is removed.

    ``lock``: the run's lock when the caller holds it already (it is not reentrant: taking it again would fail).
    """
    # Returning a finished run trained with other settings would report its figures as this config's.
    _refuse_other_settings(run, config)
    summary = run.read_json(storage.SUMMARY_FILE) or {}
    best = run.file(storage.BEST_MODEL_FILE)
    problem = integrity.digest_problem(best, summary.get(integrity.SUMMARY_DIGESTS[storage.BEST_MODEL_FILE]))
    if problem:
        raise WorkspaceError(
            f"run {run.run_id!r} is complete but its {best} is damaged ({problem}); a completed run keeps no "
            "backup to restore it from: train it again with --retrain (retrain=True)"
        )
    leftovers = run.file(storage.BACKUP_DIR).exists() or any(
        storage.TEMPORARY_NAME.fullmatch(path.name) for path in run.path.rglob(".*")
    )
    if leftovers and lock is not None:
        _tidy_completed_run(run, lock)
    elif leftovers:
        try:
            with run_lock.RunLock(run) as taken:
                _tidy_completed_run(run, taken)
        except RunLockedError:
            pass  # The process holding the lock tidies it.
    result = RunResult.load(run)
    _say(
        verbose,
        f"run {run.run_id}: already complete ({result.summary.get('epochs_run')} epochs) in {run.path}; "
        "to train again, pass retrain=True (--retrain) or a new run_id (--run-id)",
    )
    return result


def _check_saved_state(run: storage.RunFolder) -> None:
    """Make sure what a resume reads is whole, under the run's lock, before anything is read or tidied.

    A summary.json that is no JSON object (the run is not complete) is set aside when a backup remains to
    resume from. A damaged backup file that the run folder holds an intact copy of (``best.keras``,
    ``history.csv``, checked against the backup's manifest) is restored from it. Anything else that would make
    the resume start from the wrong place raises ``WorkspaceError`` naming the file and how to start again.
    """
    backup = storage.recover_tree(run.file(storage.BACKUP_DIR))
    again = f"delete the run folder {run.path} to train it again from epoch 1"
    summary = run.file(storage.SUMMARY_FILE)
    if summary.exists():  # and the run is not complete: its summary is damaged
        if backup is None:
            raise WorkspaceError(
                f"{summary}: damaged ({run.summary_problem()}), and the run has no backup/ to resume from; "
                f"run again with --retrain, or {again}"
            )
        aside = summary.with_name(f"{storage.SUMMARY_FILE}.damaged")
        os.replace(summary, aside)
        log.warning("%s: damaged, set aside as %s; resuming from the backup", summary, aside.name)
    if backup is None:
        epochs = len(run.read_history())
        if epochs:
            raise WorkspaceError(
                f"run {run.run_id!r}: history.csv records {epochs} finished epochs but backup/ is missing, so the "
                f"run cannot resume after them; {again}"
            )
        return
    manifest = integrity.read_manifest(backup) or {}
    for name, problem in integrity.damaged_files(backup).items():
        intact = run.file(name)
        if name in manifest and intact.is_file() and integrity.file_digest(intact) == manifest[name]:
            storage.atomic_copy(intact, backup / name)
            log.warning("%s: damaged (%s); restored from the intact %s", backup / name, problem, intact)
            continue
        raise WorkspaceError(
            f"{backup / name}: damaged ({problem}); the run cannot resume from a damaged backup: {again}"
        )


def _tidy_completed_run(run: storage.RunFolder, lock: run_lock.RunLock) -> None:
    lock.remove_temporaries()
    shutil.rmtree(run.file(storage.BACKUP_DIR), ignore_errors=True)


def _clear_run_folder(run: storage.RunFolder) -> None:
    """Everything in the run folder but its lock (retraining from scratch)."""
    for path in run.path.iterdir():
        if path.name == storage.LOCK_FILE:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _has_trained(run: storage.RunFolder) -> bool:
    """Whether the run folder holds any finished epoch (a backup, a history or a summary)."""
    if storage.recover_tree(run.file(storage.BACKUP_DIR)) is not None:
        return True
    return any(run.file(name).exists() for name in (storage.HISTORY_FILE, storage.SUMMARY_FILE))


def _refuse_other_settings(run: storage.RunFolder, config: RunConfig) -> None:
    """Raise ``RunConfigError`` naming every difference when the run folder holds a run with other settings."""
    stored = run.read_json(storage.CONFIG_FILE)
    differences = _stored_config(run, stored).differences(config) if stored is not None else {}
    differences = {k: v for k, v in differences.items() if k not in DEVICE_FIELDS}
    if differences:
        listed = ", ".join(f"{k}: {old!r} on disk vs {new!r} now" for k, (old, new) in differences.items())
        remedy = "retrain it" if run.completed else "delete its folder to start it again"
        raise RunConfigError(
            f"run {run.run_id!r} exists with other settings ({listed}); use the same settings, a new run id, "
            f"or {remedy}"
        )


def _stored_config(run: storage.RunFolder, stored: dict) -> RunConfig:
    """The ``RunConfig`` of a run's ``config.json``; one that is no valid config raises naming the file."""
    try:
        return RunConfig.from_dict(stored)
    except (RunConfigError, TypeError) as error:
        raise RunConfigError(f"{run.file(storage.CONFIG_FILE)}: {error}") from error


def _prepare_run_folder(run: storage.RunFolder, config: RunConfig, plan: DevicePlan, verbose: int) -> None:
    _refuse_other_settings(run, config)
    stored = run.read_json(storage.CONFIG_FILE)
    if stored is not None:
        _refuse_other_replicas(run, stored, plan)
        done = run.epochs_saved()
        _say(
            verbose,
            f"run {run.run_id}: resuming the unfinished run after epoch {done} of {config.epochs} in {run.path}",
        )
        return
    _say(verbose, f"run {run.run_id}: new run of {config.epochs} epochs in {run.path}")
    record = {
        **config.to_dict(),
        "cifarlib_version": __version__,
        "keras_version": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tensorflow_version": _tensorflow_version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        # Checked on resume (see _refuse_other_replicas): the device settings are left out of the run id, but the
        # replica count sets the global batch, the scaled learning rate and the schedule's length.
        "replicas": plan.replicas,
        "global_batch_size": plan.global_batch(config.batch_size),
    }
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WorkspaceError(f"cannot create run folder {run.path} ({error.strerror or error})") from error
    storage.atomic_write_text(run.file(storage.CONFIG_FILE), _json(record))


def _refuse_other_replicas(run: storage.RunFolder, stored: dict, plan: DevicePlan) -> None:
    """Raise ``RunConfigError`` when the run was started on another number of replicas.

    The replicas multiply the batch into the global batch and scale the learning rate, and the global batch sets
    the steps per epoch, so the cosine schedule's length: a resumed optimizer step counter would be read against
    another schedule (past its end, a learning rate of 0). A run written before the count was recorded is
    taken as it is.
    """
    started_on = stored.get("replicas")
    if started_on is None or started_on == plan.replicas:
        return
    raise RunConfigError(
        f"run {run.run_id!r} was started on {started_on} replica(s) and would resume on {plan.replicas}, which "
        "changes its global batch, learning rate and schedule; resume it on the device it started on "
        f"(distribute={'none' if started_on == 1 else 'auto'!r}), or start a new run id"
    )


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


def _stock_callbacks(
    config: RunConfig, staging: Path, plan: DevicePlan, network: keras.Model, steps_per_epoch: int
):
    """Keras's callbacks as the reference used them, and those of the recipe's options; returns (all in order, the
    stateful ones by name).

    The checkpoint saves ``network``, the model without its training-only augmentation.
    """
    mode = monitor_mode(config.monitor)
    # The weight average the recipe validates and saves: Keras's EMA (kept by the optimizer) or lookahead.
    averaging = []
    if config.ema_momentum:
        averaging.append(ResumableSwapEMAWeights(restored=(staging / storage.BACKUP_DIR).is_dir()))
    if config.lookahead_steps:
        averaging.append(
            Lookahead(
                lookahead_variables(network),
                every=config.lookahead_steps,
                total_steps=config.epochs * steps_per_epoch,
            )
        )
    augmentation = [FlipEpoch()] if config.flip == "alternate" and config.crop_padding else []
    freezing = [FreezeAfter(config.whitening_bias_epochs)] if config.whitening_bias_epochs else []
    stateful = {
        "checkpoint": NetworkCheckpoint(
            str(staging / storage.BEST_MODEL_FILE),
            network=network,
            monitor=config.monitor,
            mode=mode,
            save_best_only=True,
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
    # Early stopping and the plateau schedule read only the epoch's logs; they come before the EMA swap, which must
    # see their stop decision, and the weight average comes before the checkpoint, which must save it.
    controls = [stateful[name] for name in ("early_stopping", "reduce_lr") if name in stateful]
    ordered = [*augmentation, *freezing, *controls, *averaging, stateful["checkpoint"], *extras, backup]
    return ordered, stateful


class ResumableSwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras's ``SwapEMAWeights(swap_on_epoch=True)``, made safe to resume and to stop early.

    Keras's callback puts the averaged weights in the model for each validation and at each epoch's end (so the
    history and ``best.keras`` are the averaged network's), and swaps the trained weights back as the next
    epoch begins; after the last epoch, ``fit`` leaves the averages in the model. Two cases it does not cover:

    - a backup is saved at an epoch's end, so it always holds the averages in the model and the trained weights
      in the optimizer; ``restored=True`` (a backup is being resumed from) says so, and the first resumed epoch
      swaps the trained weights back;
    - when training stops early, ``fit`` would copy the optimizer's slots (then the trained weights) into the
      model; the averages are copied into those slots first, so the averaged network is what remains.
    """

    def __init__(self, *, restored: bool):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = restored

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.model.stop_training and epoch < self.params["epochs"] - 1:
            self._finalize_ema_values()


def _history_summary(config: RunConfig, rows: list[dict]) -> dict:
    """The figures ``summary.json`` reads off the per-epoch history: epochs run, the best epoch, timings."""
    import pandas as pd

    history = pd.DataFrame(rows)
    mode = monitor_mode(config.monitor)
    if config.monitor in history:
        best_index = history[config.monitor].idxmax() if mode == "max" else history[config.monitor].idxmin()
    else:
        best_index = len(history) - 1
    best = history.iloc[best_index]
    return {
        "epochs_run": int(len(history)),
        "best_epoch": int(best["epoch"]),
        "best_val_accuracy": float(best["val_accuracy"]) if "val_accuracy" in best else None,
        "max_val_accuracy": float(history["val_accuracy"].max()) if "val_accuracy" in history else None,
        # Steady-state seconds per epoch, and the starts' compilation apart (cifarlib.timings).
        **epoch_timings(history),
    }


def _run_facts(context: FitContext) -> dict:
    """What ``summary.json`` records about the run's settings, device and software."""
    config, plan = context.config, context.plan
    return {
        "run_id": context.run.run_id,
        "preset": config.preset,
        "batch_size": config.batch_size,
        "global_batch_size": context.global_batch,
        "epochs_planned": config.epochs,
        "tta": config.tta,
        "tta_translate": config.tta_translate,
        "train_images": context.train_images,
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
    return json.dumps(values, indent=2, sort_keys=True, default=str)


def _say(verbose: int, message: str) -> None:
    """A line for the person running the notebook or the command: what happens to the run (new, resumed, done);
    nothing at ``verbose=0``."""
    if verbose:
        print(message, flush=True)
