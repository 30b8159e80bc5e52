"""Parameter sweeps (batch sizes first): ``03_train`` executed once per value with papermill.

Each run's executed notebook is saved in its run folder (``runs/<run_id>/03_train.ipynb``), so what happened,
errors included, can be read later. The sweep's manifest ``sweeps/<name>/sweep.json`` lists its runs and how
each ended. A run that already completed is skipped, an unfinished one resumes (same run id, same
parameters), and a failed run is recorded with its cause and does not stop the others, whatever the failure:
an exception in the notebook, a kernel that died (out of memory, killed), a cell that ran past
``cell_timeout``, or an error of papermill itself. Only an interrupt (Ctrl-C) stops the sweep, after recording it.

Progress is one line per run ("run 2/4: batch 128 ...") and one per finished epoch, read from the run's
``history.csv`` while the notebook runs, instead of papermill's bar of notebook cells.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path

from cifarlib import storage
from cifarlib.data import absolute_source
from cifarlib.errors import RunInterrupted
from cifarlib.formatting import describe_epoch
from cifarlib.project import notebooks_dir
from cifarlib.results import SWEEP_MANIFEST, format_runs_table, runs_table, sweep_outcomes

log = logging.getLogger(__name__)

# The package's own copy where cifarlib is installed, else the checkout's notebooks/.
NOTEBOOKS_DIR = notebooks_dir()
TRAIN_NOTEBOOK = NOTEBOOKS_DIR / "03_train.ipynb"
EXECUTED_NOTEBOOK = "03_train.ipynb"
# The kernel process's own error stream (C++ log lines, and its complaints when the sweep is stopped under it),
# kept beside the executed notebook rather than printed into the sweep's output.
KERNEL_LOG = "kernel.log"
MANIFEST = SWEEP_MANIFEST
__all__ = ["run_sweep", "sweep_outcomes"]
# How often the progress watcher looks for a new epoch in the running run's history.csv.
PROGRESS_POLL_SECONDS = 2.0
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _kernel_config():
    """Where the platform has Unix sockets, the kernel talks to papermill over them instead of local TCP ports:
    no other user of the machine can connect, and ipykernel has no reason to warn, for every run, that the
    traffic is unencrypted."""
    from traitlets.config import Config

    return Config({"KernelManager": {"transport": "ipc"}}) if os.name == "posix" else Config()


def _kernel_manager_logging_to(path: Path):
    """nbclient's kernel manager, starting the kernel with its stderr appended to ``path``.

    The kernel runs in a session of its own, so Ctrl-C stops only the sweep; without this, the kernel then
    printed a screen of tracebacks about its closed sockets into the sweep's terminal.
    """
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            with open(path, "ab") as log_file:  # the kernel keeps its own copy of the descriptor
                return await super().start_kernel(stderr=log_file, **kw)

    return LoggedKernelManager


def run_sweep(
    batch_sizes=(64, 128, 256, 512),
    *,
    name: str = "batch-size",
    workspace: storage.Workspace | str | Path | None = None,
    notebook: str | Path = TRAIN_NOTEBOOK,
    progress: bool = True,
    kernel_name: str | None = None,
    cell_timeout: float | None = None,
    **parameters,
):
    """Run ``03_train`` for every batch size; returns the sweep's results table (a DataFrame).

    Args:
        batch_sizes: the values to sweep.
        name: the sweep's name; its run ids are ``<name>-b<batch_size>``.
        workspace: where runs go (a Workspace, a folder, or None for the default).
        notebook: the training notebook to execute.
        progress: print a line per run and one per finished epoch (else log them).
        kernel_name: Jupyter kernel (default: the notebook's).
        cell_timeout: seconds one notebook cell may run before the run is recorded as failed (None: no limit).
        **parameters: other ``03_train`` parameters, the same for every run (epochs, data, preset, ...).
    """
    import papermill

    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"sweep name must be letters, digits, '_' or '-', got {name!r}")
    batch_sizes = [_positive_int(b) for b in batch_sizes]
    if not batch_sizes:
        raise ValueError("batch_sizes must list at least one batch size")
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook}: the training notebook to execute is missing")
    # The notebook runs in its own folder, so a relative data path is made absolute from here.
    parameters = _absolute_data(parameters)
    workspace = storage.as_workspace(workspace)
    manifest_path = workspace.sweeps_dir / name / MANIFEST
    manifest = _read_manifest(manifest_path, name, parameters)

    for position, batch_size in enumerate(batch_sizes, start=1):
        run_id = f"{name}-b{batch_size}"
        run = workspace.run(run_id)
        prefix = f"run {position}/{len(batch_sizes)}: batch {batch_size} ({run_id})"
        if run.completed:
            _say(progress, f"{prefix}: already completed, skipped")
            manifest["runs"][run_id] = {"batch_size": batch_size, "status": "completed"}
            continue
        _say(progress, f"{prefix}: {'resuming' if run.path.exists() else 'training'} ...")
        run.path.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        watcher = _EpochWatcher(run, parameters.get("epochs"), progress)
        watcher.start()
        try:
            papermill.execute_notebook(
                str(notebook),
                str(run.file(EXECUTED_NOTEBOOK)),
                parameters={
                    **parameters,
                    "batch_size": batch_size,
                    "run_id": run_id,
                    "workspace": str(workspace.root),
                    # One line per epoch: the executed notebook is a log, not a screen to redraw a bar on.
                    "verbose": 2,
                },
                kernel_name=kernel_name,
                kernel_manager_class=_kernel_manager_logging_to(run.file(KERNEL_LOG)),
                config=_kernel_config(),
                progress_bar=False,
                execution_timeout=cell_timeout,
                cwd=str(notebook.parent),
            )
        except KeyboardInterrupt as interrupt:
            manifest["runs"][run_id] = {"batch_size": batch_size, "status": "failed", "error": "interrupted"}
            storage.atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
            if run.path.exists() and run.epochs_saved() > 0:
                raise RunInterrupted(run_id) from interrupt
            raise
        except Exception as error:  # noqa: BLE001 - any failure of one run is recorded and the sweep goes on.
            message = failure_cause(error)
            manifest["runs"][run_id] = {"batch_size": batch_size, "status": "failed", "error": message}
            _say(
                progress,
                f"{prefix}: FAILED ({message}); its executed notebook is {run.file(EXECUTED_NOTEBOOK)}",
            )
        else:
            manifest["runs"][run_id] = {"batch_size": batch_size, "status": "completed"}
            _say(progress, f"{prefix}: done in {time.perf_counter() - started:.0f} s")
        finally:
            watcher.stop()
        storage.atomic_write_text(manifest_path, json.dumps(manifest, indent=2))

    storage.atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
    table = runs_table(workspace, sweep=name)
    _say(progress, format_runs_table(table))
    return table


def failure_cause(error: BaseException) -> str:
    """One line saying why a run of the sweep failed, for sweep.json and the sweep's output."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    if isinstance(error, papermill.PapermillExecutionError):
        cause = f"{error.ename}: {error.evalue}"
    elif isinstance(error, DeadKernelError):
        cause = f"DeadKernelError: the notebook's kernel died (out of memory, or killed): {error}"
    elif isinstance(error, CellTimeoutError):
        cause = "CellTimeoutError: a cell ran past the sweep's cell_timeout"
    else:
        cause = f"{type(error).__name__}: {error}"
    return " ".join(cause.split())


class _EpochWatcher:
    """Prints each epoch the running notebook finishes, read from its run's history.csv (a thread), in the line
    training itself prints (``describe_epoch``)."""

    def __init__(self, run: storage.RunFolder, epochs, progress: bool):
        self.run, self.epochs, self.progress = run, epochs, progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._seen = len(run.read_history())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def new_lines(self) -> list[str]:
        """The lines of the epochs finished since the last call."""
        history = self.run.read_history()
        rows = history.to_dict("records")[self._seen :]
        self._seen = max(self._seen, len(history))
        if not rows:
            return []
        # The run's own config.json says how many epochs it trains (the preset's count when none was passed).
        stored = self.run.read_json(storage.CONFIG_FILE) or {}
        epochs = stored.get("epochs") or self.epochs or "?"
        return [
            "    " + describe_epoch(int(row["epoch"]), epochs, {k: v for k, v in row.items() if k != "epoch"})
            for row in rows
        ]

    def _watch(self) -> None:
        while not self._stop.wait(PROGRESS_POLL_SECONDS):
            try:
                lines = self.new_lines()
            except Exception:  # noqa: BLE001 - a file caught mid-rename is read again at the next poll.
                continue
            for line in lines:
                _say(self.progress, line)


def _read_manifest(path: Path, name: str, parameters: dict) -> dict:
    if path.is_file():
        manifest = json.loads(path.read_text())
        # A sweep recorded before data paths were made absolute resumes from the folder it was started in.
        if _absolute_data(manifest.get("parameters")) != parameters:
            raise ValueError(
                f"sweep {name!r} exists with other parameters {manifest.get('parameters')} (now {parameters}); "
                "use the same parameters to resume it, or another --name"
            )
        return {**manifest, "parameters": parameters}
    return {"name": name, "parameters": parameters, "runs": {}}


def _absolute_data(parameters):
    if isinstance(parameters, dict) and isinstance(parameters.get("data"), str):
        return {**parameters, "data": absolute_source(parameters["data"])}
    return parameters


def _positive_int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"batch sizes must be positive integers, got {value!r}")
    return value


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)
    else:
        log.info("%s", message)
