"""Runs as a pandas table, and the plots that compare them; used by the notebooks and the command line alike.

``runs_table`` reads every run folder's ``config.json``, ``summary.json`` and ``history.csv``; unfinished runs
appear with what their history holds so far. Plot functions return a Matplotlib figure and, given ``save_to``,
also write it as a PNG there.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cifarlib import storage
from cifarlib.data import CLASS_NAMES

log = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "run_id",
    "status",
    "preset",
    "batch_size",
    "epochs_run",
    "best_epoch",
    "best_val_accuracy",
    "test_accuracy",
    "seconds_per_epoch",
    "total_seconds",
]


# The file a sweep keeps in ``sweeps/<name>/`` listing its runs and how each ended (written by cifarlib.sweep).
SWEEP_MANIFEST = "sweep.json"


def sweep_outcomes(workspace: storage.Workspace, name: str) -> dict[str, dict]:
    """A sweep's runs and how each ended (``{"run_id": {"batch_size", "status"[, "error"]}}``)."""
    path = workspace.sweeps_dir / name / SWEEP_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sweep named {name!r} in {workspace.root}")
    return json.loads(path.read_text())["runs"]


def runs_table(workspace: storage.Workspace | str | Path, *, sweep: str | None = None) -> pd.DataFrame:
    """One row per run: id, status, preset, batch size, epochs, best validation and test accuracy, timings.

    With ``sweep``, only the runs that sweep made (listed in its ``sweeps/<name>/runs.json``).
    """
    workspace = storage.as_workspace(workspace)
    runs = workspace.runs()
    failed = set()
    if sweep is not None:
        outcomes = sweep_outcomes(workspace, sweep)
        runs = [run for run in runs if run.run_id in outcomes]
        failed = {run_id for run_id, outcome in outcomes.items() if outcome["status"] == "failed"}
    rows = [_run_row(run) for run in runs]
    for row in rows:
        if row["run_id"] in failed and row["status"] != "completed":
            row["status"] = "failed"
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
    row = {
        "run_id": run.run_id,
        "status": "unfinished",
        "preset": config.get("preset"),
        "batch_size": config.get("batch_size"),
        "epochs_run": len(history),
    }
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


# ------------------------------------------------------------------------------------------------- plots


def plot_curves(workspace, run_ids: list[str] | None = None, *, save_to=None):
    """Training and validation loss and accuracy per epoch, every run overlaid (solid: train, dashed: val)."""
    import matplotlib.pyplot as plt

    workspace = storage.as_workspace(workspace)
    runs = [run for run in workspace.runs() if run_ids is None or run.run_id in run_ids]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for index, run in enumerate(runs):
        history = run.read_history()
        if history.empty:
            continue
        color = f"C{index % 10}"
        for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
            axis.plot(history["epoch"], history[metric], color=color, label=f"{run.run_id} train")
            if f"val_{metric}" in history:
                axis.plot(
                    history["epoch"],
                    history[f"val_{metric}"],
                    color=color,
                    linestyle="--",
                    label=f"{run.run_id} val",
                )
    for axis, title in (
        (loss_axis, "loss (categorical cross-entropy)"),
        (accuracy_axis, "categorical accuracy"),
    ):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    if runs:
        accuracy_axis.legend(fontsize=7, loc="lower right")
    return finish_figure(figure, save_to)


def batch_size_analysis(table: pd.DataFrame) -> pd.DataFrame:
    """Completed runs by batch size: seconds per epoch, epochs to converge (best epoch), total time, accuracy.

    Where several runs share a batch size, their mean is shown.
    """
    done = table[table["status"] == "completed"]
    columns = ["seconds_per_epoch", "best_epoch", "total_seconds", "best_val_accuracy", "test_accuracy"]
    numeric = done[["batch_size", *columns]].apply(pd.to_numeric, errors="coerce")
    return numeric.groupby("batch_size").mean().sort_index()


def plot_batch_size_analysis(table: pd.DataFrame, *, save_to=None):
    """The reference notebook's hand-made batch-size study, as four plots against batch size."""
    import matplotlib.pyplot as plt

    analysis = batch_size_analysis(table)
    figure, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    panels = [
        ("seconds_per_epoch", "seconds per epoch"),
        ("best_epoch", "epochs to converge (best epoch)"),
        ("total_seconds", "total training time (s)"),
        ("best_val_accuracy", "accuracy"),
    ]
    for axis, (column, title) in zip(axes, panels):
        axis.plot(
            analysis.index,
            analysis[column],
            marker="o",
            label="validation" if column == "best_val_accuracy" else None,
        )
        if column == "best_val_accuracy":
            axis.plot(analysis.index, analysis["test_accuracy"], marker="s", label="test")
            axis.set_ylim(0, 1)
            axis.legend(fontsize=8)
        axis.set_xscale("log", base=2)
        axis.set_xticks(list(analysis.index), [str(b) for b in analysis.index])
        axis.set_xlabel("batch size")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    return finish_figure(figure, save_to)


def confusion_matrix(labels: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
    """Counts of true class (rows) against predicted class (columns)."""
    predicted = np.argmax(probabilities, axis=1)
    counts = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), predicted), 1)
    return pd.DataFrame(
        counts, index=pd.Index(CLASS_NAMES, name="true"), columns=pd.Index(CLASS_NAMES, name="predicted")
    )


def per_class_accuracy(matrix: pd.DataFrame) -> pd.Series:
    """Share of each true class predicted right (NaN for a class absent from the test set)."""
    totals = matrix.sum(axis=1).replace(0, np.nan)
    return (pd.Series(np.diag(matrix.values), index=matrix.index) / totals).rename("accuracy")


def plot_confusion_matrix(matrix: pd.DataFrame, *, title: str = "", save_to=None):
    """The confusion matrix as a heat map with counts, rows normalised for the colours."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 6))
    shares = matrix.div(matrix.sum(axis=1).replace(0, 1), axis=0)
    image = axis.imshow(shares.values, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix.values):
        axis.text(
            column,
            row,
            str(count),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if shares.values[row, column] > 0.5 else "black",
        )
    axis.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right")
    axis.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title or "confusion matrix")
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    return finish_figure(figure, save_to)


def plot_misclassified(images, labels, probabilities, *, count: int = 20, save_to=None):
    """A gallery of misclassified test images, most confident mistakes first, with true and predicted labels."""
    import matplotlib.pyplot as plt

    predicted = np.argmax(probabilities, axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    columns = 5
    rows = max(1, -(-len(wrong) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 2, rows * 2.3), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, wrong):
        axis.imshow(images[index].squeeze(), cmap="gray" if images.shape[-1] == 1 else None)
        axis.set_title(
            f"true {CLASS_NAMES[labels[index]]}\npred {CLASS_NAMES[predicted[index]]} "
            f"({probabilities[index, predicted[index]]:.0%})",
            fontsize=8,
        )
    figure.suptitle(
        f"{len(wrong)} misclassified test images" if len(wrong) else "no misclassified test images"
    )
    return finish_figure(figure, save_to)


def plots_dir(workspace, *, sweep: str | None = None) -> Path:
    """Where comparison plots go: the sweep's folder, or ``plots/`` in the workspace."""
    workspace = storage.as_workspace(workspace)
    folder = workspace.sweeps_dir / sweep if sweep else workspace.root / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_plots(
    workspace, *, sweep: str | None = None, run_id: str | None = None, data: str | None = None
) -> list[Path]:
    """Every plot of ``04_results`` as PNG files (for the command line); returns their paths.

    Comparisons go to ``plots_dir``; the confusion matrix and misclassified gallery of ``run_id`` (default: the
    newest completed run) to that run's ``plots/`` folder.
    """
    import matplotlib

    matplotlib.use("Agg")
    from cifarlib.runs import run_predictions

    workspace = storage.as_workspace(workspace)
    table = runs_table(workspace, sweep=sweep)
    folder = plots_dir(workspace, sweep=sweep)
    written = [folder / "curves.png", folder / "batch_size.png"]
    plot_curves(workspace, list(table["run_id"]), save_to=written[0])
    plot_batch_size_analysis(table, save_to=written[1])
    chosen = run_id or latest_completed_run(workspace)
    if chosen is not None:
        images, labels, probabilities = run_predictions(chosen, workspace, data=data)
        run_plots = workspace.run(chosen).path / "plots"
        written += [run_plots / "confusion_matrix.png", run_plots / "misclassified.png"]
        plot_confusion_matrix(confusion_matrix(labels, probabilities), title=chosen, save_to=written[2])
        plot_misclassified(images, labels, probabilities, save_to=written[3])
    return written


def latest_completed_run(workspace) -> str | None:
    """The id of the newest completed run, or ``None``."""
    completed = [run.run_id for run in storage.as_workspace(workspace).runs() if run.completed]
    return completed[-1] if completed else None


def finish_figure(figure, save_to=None):
    """Tighten the layout and, given ``save_to``, write the figure there as PNG."""
    figure.tight_layout()
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(save_to, dpi=100)
    return figure
