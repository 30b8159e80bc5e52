"""Runs as a pandas table, and the plots that compare them; used by the notebooks and the command line alike.

``runs_table`` reads every run folder's ``config.json``, ``summary.json`` and ``history.csv``; unfinished runs
appear with what their history holds so far. Plot functions return a Matplotlib figure and, given ``save_to``,
also write it as a PNG there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from cifarlib import storage

log = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "run_id", "status", "preset", "batch_size", "epochs_run", "best_epoch", "best_val_accuracy",
    "test_accuracy", "seconds_per_epoch", "total_seconds",
]


def runs_table(workspace: storage.Workspace | str | Path, *, sweep: str | None = None) -> pd.DataFrame:
    """One row per run: id, status, preset, batch size, epochs, best validation and test accuracy, timings.

    With ``sweep``, only the runs that sweep made (listed in its ``sweeps/<name>/runs.json``).
    """
    workspace = workspace if isinstance(workspace, storage.Workspace) else storage.open_workspace(workspace)
    runs = workspace.runs()
    if sweep is not None:
        from cifarlib.sweep import sweep_run_ids

        wanted = set(sweep_run_ids(workspace, sweep))
        runs = [run for run in runs if run.run_id in wanted]
    rows = [_run_row(run) for run in runs]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _run_row(run: storage.RunFolder) -> dict:
    try:
        config = run.read_json(storage.CONFIG_FILE) or {}
        summary = run.read_json(storage.SUMMARY_FILE)
    except storage.WorkspaceError as error:
        log.warning("%s", error)
        return {"run_id": run.run_id, "status": "unreadable"}
    if summary is not None:
        return {"status": "completed", **{k: summary.get(k) for k in TABLE_COLUMNS if k != "status"}}
    history = run.read_history()
    row = {"run_id": run.run_id, "status": "unfinished", "preset": config.get("preset"),
           "batch_size": config.get("batch_size"), "epochs_run": len(history)}
    if len(history) and "val_accuracy" in history:
        row["best_val_accuracy"] = float(history["val_accuracy"].max())
        row["best_epoch"] = int(history.loc[history["val_accuracy"].idxmax(), "epoch"])
    if len(history) and "seconds" in history:
        row["seconds_per_epoch"] = float(history["seconds"].mean())
        row["total_seconds"] = float(history["seconds"].sum())
    return row


def format_runs_table(table: pd.DataFrame) -> str:
    """The table as fixed-width text, accuracies in percent and times in seconds."""
    if table.empty:
        return "no runs yet"
    shown = table.copy()
    for column in ("best_val_accuracy", "test_accuracy"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{100 * v:.2f}%")
    for column in ("seconds_per_epoch", "total_seconds"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    shown = shown.rename(columns={"seconds_per_epoch": "s_per_epoch", "total_seconds": "total_s"})
    return shown.fillna("").to_string(index=False)
