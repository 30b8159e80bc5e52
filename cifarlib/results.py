"""Runs as a pandas table, which runs to compare, and the plots that compare them.

``runs_table`` reads every run folder's ``config.json``, ``summary.json`` and ``history.csv`` and orders the
runs by when they started (``config.json``'s ``created``); unfinished runs appear with what their history holds
so far. The notebook ``04_results`` and the ``plots`` command show the same sections through the same
functions, in this order:

1. ``describe_runs``: the table, or one sentence saying where no run was found;
2. ``curves_section``: loss and accuracy per epoch of every run;
3. ``batch_size_section``: seconds per epoch, epochs to the best one, total time and accuracy against batch
   size, per recipe (preset, width and data), or a table where there is only one batch size to show;
4. ``load_run_detail`` (the newest completed run of the selection by default), then
   ``confusion_matrix_section``, ``per_class_accuracy`` and ``misclassified_section``.

Each ``*_section`` draws its Matplotlib figure, writes it as PNG into the given folder and returns the paths
written. Accuracy is shown in percent everywhere, through ``cifarlib.formatting``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cifarlib import run_lock, storage
from cifarlib.config import DEVICE_FIELDS, RunConfig
from cifarlib.data import CLASS_NAMES
from cifarlib.errors import RunConfigError, WorkspaceError
from cifarlib.formatting import as_percent, format_accuracy
from cifarlib.timings import epoch_timings

log = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "run_id",
    "status",
    "preset",
    "batch_size",
    "epochs_run",
    "epochs",
    "best_epoch",
    "best_val_accuracy",
    "test_accuracy",
    "seconds_per_epoch",
    "startup_seconds",
    "total_seconds",
    "width",
    "data",
    "train_size",
    "seed",
    "created",
    "running_on",
    "settings",
]
# What `runs` shows by default, to fit 100 columns, oldest run first (``--wide``: every column but
# ``settings``, the start time included).
NARROW_COLUMNS = [
    "run_id",
    "status",
    "epochs_run",
    "batch_size",
    "best_val_accuracy",
    "test_accuracy",
    "seconds_per_epoch",
    "data",
    "running_on",
]
NARROW_WIDTH = 100
RUN_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(RunConfig))
# What a comparison never splits on: the setting compared, the replicate (seeds are averaged), and the settings
# that only say how to use the machine. Every other setting splits groups.
NOT_COMPARED = ("batch_size", "seed", *DEVICE_FIELDS)
ANALYSIS_COLUMNS = [
    "seconds_per_epoch",
    "startup_seconds",
    "best_epoch",
    "total_seconds",
    "best_val_accuracy",
    "test_accuracy",
]
CURVES_FILE = "curves.png"
BATCH_SIZE_FILE = "batch_size.png"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
MISCLASSIFIED_FILE = "misclassified.png"


# -------------------------------------------------------------------------------------------- run table

# The file a sweep keeps in ``sweeps/<name>/`` listing its runs and how each ended (written by cifarlib.sweep).
SWEEP_MANIFEST = "sweep.json"


def sweep_outcomes(workspace: storage.Workspace, name: str) -> dict[str, dict]:
    """A sweep's runs and how each ended (``{"run_id": {"batch_size", "status"[, "error"]}}``)."""
    path = workspace.sweeps_dir / name / SWEEP_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sweep named {name!r} in {workspace.root}")
    return json.loads(path.read_text())["runs"]


def newest_sweep(workspace: storage.Workspace) -> str | None:
    """The name of the sweep whose record was written last, or ``None`` where the workspace has no sweep."""
    manifests = [path for path in workspace.sweeps_dir.glob(f"*/{SWEEP_MANIFEST}") if path.is_file()]
    if not manifests:
        return None
    return max(manifests, key=lambda path: path.stat().st_mtime).parent.name


def chosen_sweep(workspace, sweep: str | None = None, *, all_runs: bool = False) -> str | None:
    """The sweep a comparison shows: ``sweep`` if named, else the newest sweep, or ``None`` (every run) with
    ``all_runs`` or where the workspace has no sweep."""
    if all_runs:
        return None
    return sweep or newest_sweep(storage.as_workspace(workspace, create=False))


def runs_table(workspace: storage.Workspace | str | Path, *, sweep: str | None = None) -> pd.DataFrame:
    """One row per run, oldest first: id, status, recipe, batch size, epochs, accuracies, timings, start time.

    With ``sweep``, only the runs that sweep made (listed in its manifest, ``sweeps/<name>/``).
    """
    workspace = storage.as_workspace(workspace, create=False)
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
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["created"] = pd.to_datetime(table["created"], utc=True, errors="coerce", format="ISO8601")
    # Runs whose start is unknown (no readable config.json) come first, in folder order; stable, so ties keep it.
    return table.sort_values("created", kind="stable", na_position="first").reset_index(drop=True)


def _run_row(run: storage.RunFolder) -> dict:
    try:
        config = run.read_json(storage.CONFIG_FILE) or {}
        summary = run.read_json(storage.SUMMARY_FILE)
    except WorkspaceError as error:
        log.warning("%s", error)
        return {"run_id": run.run_id, "status": "unreadable"}
    row = {
        "run_id": run.run_id,
        "preset": config.get("preset"),
        "batch_size": config.get("batch_size"),
        "epochs": config.get("epochs"),
        "width": config.get("width"),
        "data": config.get("data"),
        "train_size": config.get("train_size"),
        "seed": config.get("seed"),
        "created": config.get("created") or _written_at(run.file(storage.CONFIG_FILE)),
        "settings": compared_settings(config),
    }
    damaged = run.warn_if_history_damaged()
    history = run.read_history() if not damaged else None
    if summary is not None:
        row.update(status="completed")
        row.update({k: summary[k] for k in TABLE_COLUMNS if k in summary and k not in row})
    else:
        row.update(status="unfinished", epochs_run=0 if history is None else len(history))
        if history is not None and len(history) and "val_accuracy" in history:
            row["best_val_accuracy"] = float(history["val_accuracy"].max())
            row["best_epoch"] = int(history.loc[history["val_accuracy"].idxmax(), "epoch"])
        holder = run_lock.RunLock(run).live_holder()
        if holder is not None:
            row.update(status="running", running_on=f"{holder.get('host')} pid {holder.get('pid')}")
    # Timings always from the history, so runs summarised before steady-state timing read the same way.
    if history is not None and len(history) and "seconds" in history:
        row.update(epoch_timings(history))
    return row


def compared_settings(config: dict) -> str:
    """The settings of a stored ``config.json`` that change a result, except batch size and seed, as one JSON
    string: runs compared in one group have equal strings."""
    try:
        settings = RunConfig.from_dict(config).to_dict()
    except (RunConfigError, TypeError, ValueError):
        settings = {key: value for key, value in config.items() if key in RUN_CONFIG_FIELDS}
    kept = {key: value for key, value in settings.items() if key not in NOT_COMPARED}
    return json.dumps(kept, sort_keys=True, default=str)


def _written_at(path: Path) -> str | None:
    """When a file was last written, in UTC: the start of a run whose config.json does not record it."""
    try:
        return pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC").isoformat()
    except OSError:
        return None


def format_runs_table(table: pd.DataFrame, *, wide: bool = False) -> str:
    """The table as fixed-width text: accuracies in percent, times in seconds, the data source by its name.

    By default the columns a reader scans (``NARROW_COLUMNS``), within ``NARROW_WIDTH`` characters: a run id too
    long for that is shortened in its middle. ``wide``: every column.
    """
    if table.empty:
        return "no runs yet"
    columns = [c for c in TABLE_COLUMNS if c != "settings"] if wide else list(NARROW_COLUMNS)
    if table["running_on"].isna().all():
        columns.remove("running_on")
    shown = _formatted(
        table[columns],
        tenths=("seconds_per_epoch", "startup_seconds", "total_seconds"),
        whole=("epochs_run", "epochs", "best_epoch", "batch_size", "train_size", "seed"),
    )
    if "data" in shown:
        shown["data"] = shown["data"].map(data_name)
    if "created" in shown:
        shown["created"] = shown["created"].map(lambda t: "" if pd.isna(t) else f"{t:%Y-%m-%d %H:%M}")
    shown = shown.rename(columns={"created": "started_utc"}).fillna("")
    if not wide:
        shown = shown.rename(
            columns={
                "epochs_run": "epochs",
                "batch_size": "batch",
                "best_val_accuracy": "val_acc",
                "test_accuracy": "test_acc",
                "s_per_epoch": "s/epoch",
            }
        )
        text = shown.to_string(index=False)
        excess = max(len(line) for line in text.splitlines()) - NARROW_WIDTH
        if excess > 0:
            longest = int(shown["run_id"].str.len().max())
            shown["run_id"] = shown["run_id"].map(lambda r: shorten(r, max(20, longest - excess)))
    return shown.to_string(index=False)


def shorten(text: str, width: int) -> str:
    """``text`` cut in its middle to ``width`` characters (ids differ at both ends: the preset and the hash)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def _formatted(frame: pd.DataFrame, *, tenths: tuple[str, ...], whole: tuple[str, ...] = ()) -> pd.DataFrame:
    """A copy of ``frame`` for printing: accuracies in percent, ``tenths`` to one decimal, ``whole`` as
    integers (blank where missing), and the time columns under their short names. Columns ``frame`` lacks are
    skipped."""
    shown = frame.copy()
    for column in ("best_val_accuracy", "test_accuracy", "best_val_accuracy_spread"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else format_accuracy(v))
    for column in tenths:
        if column in shown:
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    for column in whole:
        if column in shown:
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else str(int(v)))
    return shown.rename(
        columns={
            "seconds_per_epoch": "s_per_epoch",
            "startup_seconds": "startup_s",
            "total_seconds": "total_s",
        }
    )


def describe_runs(table: pd.DataFrame, workspace, *, sweep: str | None = None) -> str:
    """The runs table as text, or one sentence naming where no run was found."""
    if table.empty:
        return no_runs_message(workspace, sweep=sweep)
    return format_runs_table(table)


def no_runs_message(workspace, *, sweep: str | None = None) -> str:
    """The one sentence shown instead of empty tables and plots."""
    workspace = storage.as_workspace(workspace)
    where = f"sweep {sweep!r} of {workspace.root}" if sweep else str(workspace.runs_dir)
    return (
        f"No runs yet in {where}: train one with 03_train (or `python -m cifarlib train`) and run this again."
    )


def newest_completed_run(table: pd.DataFrame) -> str | None:
    """The id of the most recently started completed run in ``table`` (already ordered by start), or ``None``."""
    completed = table[table["status"] == "completed"]
    return None if completed.empty else str(completed["run_id"].iloc[-1])


def data_name(data) -> str:
    """A data source as a short name: the file or folder name of a path, else the source itself."""
    if data is None or (isinstance(data, float) and np.isnan(data)):
        return ""
    return Path(str(data)).name or str(data)


def recipe_label(preset, width=None, batch_size=None) -> str:
    """``"tuned, width 0.5, batch 64"``: what a reader needs to tell runs apart (width only where not 1)."""
    parts = [str(preset) if preset is not None else "unknown preset"]
    if width is not None and not pd.isna(width) and float(width) != 1.0:
        parts.append(f"width {float(width):g}")
    if batch_size is not None and not pd.isna(batch_size):
        parts.append(f"batch {int(batch_size)}")
    return ", ".join(parts)


def run_labels(table: pd.DataFrame) -> dict[str, str]:
    """A name for each run of ``table`` that tells it apart from the others: its group (``group_labels``), its
    batch size, and its seed where the runs' seeds differ."""
    groups = group_labels(list(table["settings"].dropna().unique())) if "settings" in table else {}
    seeds_differ = table["seed"].nunique(dropna=False) > 1 if "seed" in table else False
    labels = {}
    for row in table.to_dict("records"):
        label = groups.get(row.get("settings")) or recipe_label(row.get("preset"), row.get("width"))
        if row.get("batch_size") is not None and not pd.isna(row.get("batch_size")):
            label += f", batch {int(row['batch_size'])}"
        if seeds_differ and row.get("seed") is not None and not pd.isna(row.get("seed")):
            label += f", seed {int(row['seed'])}"
        labels[row["run_id"]] = label
    return labels


def synthetic_note(table: pd.DataFrame) -> str:
    """A warning for plot titles when runs trained on synthetic data, whose figures say nothing about CIFAR-10."""
    if "data" not in table or table.empty:
        return ""
    synthetic = table["data"].map(data_name) == "synthetic"
    if synthetic.all():
        return " (SYNTHETIC data: says nothing about CIFAR-10)"
    return " (some runs on SYNTHETIC data)" if synthetic.any() else ""


# ----------------------------------------------------------------------------------------------- curves


def plot_curves(workspace, table: pd.DataFrame, *, title: str = "", save_to=None):
    """Training (solid) and validation (dashed) loss and accuracy per epoch of the runs in ``table``, in its order.

    Returns ``None`` where no run has finished an epoch yet.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    workspace = storage.as_workspace(workspace)
    histories = []
    for row in table.to_dict("records"):
        run = workspace.run(row["run_id"])
        if run.history_problem():  # named once, by the runs table this table came from
            continue
        history = run.read_history()
        if not history.empty:
            histories.append((row, history))
    if not histories:
        return None
    labels = run_labels(table)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    handles = []
    for index, (row, history) in enumerate(histories):
        color = f"C{index % 10}"
        # Markers make a run of one or two epochs visible as points, not as an empty axis.
        marker = "o" if len(history) <= 20 else None
        for axis, metric, scale in ((loss_axis, "loss", 1.0), (accuracy_axis, "accuracy", 100.0)):
            if metric in history:
                axis.plot(history["epoch"], scale * history[metric], color=color, marker=marker, markersize=3)
            if f"val_{metric}" in history:
                axis.plot(
                    history["epoch"],
                    scale * history[f"val_{metric}"],
                    color=color,
                    linestyle="--",
                    marker=marker,
                    markersize=3,
                )
        handles.append(Line2D([], [], color=color, label=f"{labels[row['run_id']]} ({row['run_id']})"))
    handles += [
        Line2D([], [], color="black", label="training"),
        Line2D([], [], color="black", linestyle="--", label="validation"),
    ]
    loss_axis.set_title("loss")
    loss_axis.set_ylabel("cross-entropy")
    accuracy_axis.set_title("accuracy")
    accuracy_axis.set_ylabel("accuracy (%)")
    first = min(history["epoch"].min() for _, history in histories)
    last = max(history["epoch"].max() for _, history in histories)
    for axis in (loss_axis, accuracy_axis):
        axis.set_xlabel("epoch")
        # Half an epoch either side, so that even a one-epoch run gets a whole-number tick under its point.
        axis.set_xlim(first - 0.5, last + 0.5)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.grid(alpha=0.3)
    # Below the axes, so that no legend entry ever covers a curve or the title.
    figure.legend(
        handles=handles, loc="outside lower center", ncols=2 if len(handles) > 4 else len(handles), fontsize=8
    )
    if not title:
        title = (
            f"Training curves: {labels[histories[0][0]['run_id']]}, run {histories[0][0]['run_id']}"
            if len(histories) == 1
            else f"Training curves of {len(histories)} runs"
        )
    figure.suptitle(title + synthetic_note(table))
    return finish_figure(figure, save_to)


def plot_run_curves(workspace, run_id: str, *, save_to=None):
    """The curves of one run (``03_train`` draws them after training)."""
    table = runs_table(workspace)
    return plot_curves(workspace, table[table["run_id"] == run_id], save_to=save_to)


def curves_section(workspace, table: pd.DataFrame, folder: Path, *, sweep: str | None = None) -> list[Path]:
    """Draw the curves of the runs in ``table`` and write them to ``folder/curves.png``; returns what it wrote."""
    title = f"Training curves of sweep {sweep!r}" if sweep and len(table) > 1 else ""
    path = Path(folder) / CURVES_FILE
    figure = plot_curves(workspace, table, title=title, save_to=path)
    return [] if figure is None else [path]


# ------------------------------------------------------------------------------------------- batch size


def batch_size_analysis(table: pd.DataFrame) -> pd.DataFrame:
    """Completed runs by comparable group and batch size: how many runs and seeds, their mean timings and
    accuracy, and the spread (largest minus smallest) of their best validation accuracy.

    A group is every setting that changes a result except batch size and seed (``compared_settings``): runs of
    other epochs, train sizes, recipes or data are never averaged together, while seeds are replicates and are.
    ``group`` names each group by what sets it apart from the others (``group_labels``).
    """
    columns = ["group", "preset", "width", "data", "batch_size", "runs", "seeds", *ANALYSIS_COLUMNS]
    columns.insert(columns.index("best_val_accuracy") + 1, "best_val_accuracy_spread")
    done = table[table["status"] == "completed"].copy()
    if done.empty:
        return pd.DataFrame(columns=columns)
    numeric = ["batch_size", "width", *ANALYSIS_COLUMNS]
    done[numeric] = done[numeric].apply(pd.to_numeric, errors="coerce")
    done["data"] = done["data"].map(data_name)
    labels = group_labels(done["settings"].unique())
    done["group"] = done["settings"].map(labels)
    groups = done.groupby(["settings", "batch_size"], dropna=False, sort=False)
    analysis = groups[ANALYSIS_COLUMNS].mean()
    analysis["runs"] = groups.size()
    analysis["seeds"] = groups["seed"].nunique()
    accuracy = groups["best_val_accuracy"]
    analysis["best_val_accuracy_spread"] = accuracy.max() - accuracy.min()
    for column in ("group", "preset", "width", "data"):
        analysis[column] = groups[column].first()
    analysis = analysis.reset_index().sort_values(["group", "batch_size"], kind="stable")
    return analysis[columns].reset_index(drop=True)


def group_labels(settings: list[str]) -> dict[str, str]:
    """A short name for each group of ``compared_settings`` strings: the preset (and width), then each setting
    that some group changed from its preset and whose value differs between the groups, as ``name value``
    (``"tuned, epochs 4, train_size 2000"``). Settings that differ only because the presets do are not named:
    the preset names them."""
    parsed = {key: json.loads(key) for key in settings}
    changed = set()
    for values in parsed.values():
        baseline = _preset_settings(values.get("preset"))
        changed |= {name for name, value in values.items() if _same(value) != _same(baseline.get(name))}
    differing = [
        name
        for name in sorted(changed - {"preset", "width"})
        if len({_same(values.get(name)) for values in parsed.values()}) > 1
    ]
    labels = {}
    for key, values in parsed.items():
        parts = [recipe_label(values.get("preset"), values.get("width"))]
        for name in differing:
            value = values.get(name)
            shown = data_name(value) if name == "data" else "all" if value is None else json.dumps(value)
            parts.append(f"{name} {shown.strip(chr(34))}")
        labels[key] = ", ".join(parts)
    return labels


def _preset_settings(preset) -> dict:
    """Every setting of ``preset`` as stored in config.json (empty for a preset this version does not know)."""
    try:
        return json.loads(json.dumps(RunConfig.from_preset(preset).to_dict(), default=str))
    except RunConfigError:
        return {}


def _same(value) -> str:
    """A value in one comparable spelling (tuples and lists alike, as config.json stores them)."""
    return json.dumps(value, sort_keys=True, default=str)


def format_batch_size_analysis(analysis: pd.DataFrame) -> str:
    """The analysis as text: accuracies in percent, times in seconds, one block per group."""
    if analysis.empty:
        return "no completed runs to compare yet"
    blocks = []
    for group, rows in analysis.groupby("group", sort=False):
        shown = _formatted(
            rows.drop(columns=["group", "preset", "width"]),
            tenths=("seconds_per_epoch", "startup_seconds", "total_seconds", "best_epoch"),
            whole=("batch_size", "runs", "seeds"),
        )
        shown = shown.rename(
            columns={"best_epoch": "best_epoch_mean", "best_val_accuracy_spread": "val_spread"}
        )
        blocks.append(f"{group}:\n{shown.fillna('').to_string(index=False)}")
    return "\n\n".join(blocks)


def describe_batch_sizes(table: pd.DataFrame) -> str:
    """The batch-size analysis of ``table`` as text; empty where there is no run at all (said once, elsewhere)."""
    return "" if table.empty else format_batch_size_analysis(batch_size_analysis(table))


def plot_batch_size_analysis(analysis: pd.DataFrame, *, title: str = "", save_to=None):
    """Four panels against batch size, one line per group with two or more batch sizes; ``None`` if none has.

    Each point is the mean over its runs (seeds); the accuracy panel draws their range as a bar. A single batch
    size is a point, not a trend: ``format_batch_size_analysis`` shows it as a table instead.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    groups = [
        (label, rows.sort_values("batch_size"))
        for label, rows in analysis.groupby("group", sort=False)
        if rows["batch_size"].nunique() >= 2
    ]
    if not groups:
        return None
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.8), layout="constrained")
    panels = [
        ("seconds_per_epoch", "seconds per epoch (steady state)", "seconds"),
        ("best_epoch", "epoch of the best validation accuracy", "epoch"),
        ("total_seconds", "total training time", "seconds"),
        ("best_val_accuracy", "accuracy", "accuracy (%)"),
    ]
    handles = []
    batch_sizes = sorted(analysis["batch_size"].dropna().unique())
    for index, (label, rows) in enumerate(groups):
        color = f"C{index % 10}"
        for axis, (column, _, _) in zip(axes, panels):
            if column != "best_val_accuracy":
                axis.plot(rows["batch_size"], rows[column], color=color, marker="o")
                continue
            low = rows["best_val_accuracy"] - rows["best_val_accuracy_spread"].fillna(0) / 2
            axis.errorbar(
                rows["batch_size"],
                as_percent(1) * rows["best_val_accuracy"],
                yerr=as_percent(1) * (rows["best_val_accuracy"] - low),
                color=color,
                marker="o",
                capsize=3,
            )
            if rows["test_accuracy"].notna().any():
                axis.plot(
                    rows["batch_size"],
                    as_percent(1) * rows["test_accuracy"],
                    color=color,
                    marker="s",
                    linestyle="--",
                )
        counts = ", ".join(str(int(n)) for n in rows["seeds"])
        handles.append(Line2D([], [], color=color, marker="o", label=f"{label} (seeds per point: {counts})"))
    handles += [
        Line2D([], [], color="black", marker="o", label="validation, best epoch (bar: range over seeds)"),
        Line2D([], [], color="black", marker="s", linestyle="--", label="test"),
    ]
    for axis, (column, panel_title, unit) in zip(axes, panels):
        axis.set_xscale("log", base=2)
        axis.set_xticks(batch_sizes, [str(int(b)) for b in batch_sizes])
        axis.minorticks_off()
        axis.set_xlabel("batch size (images per step)")
        axis.set_ylabel(unit)
        axis.set_title(panel_title, fontsize=10)
        axis.grid(alpha=0.3)
        if unit in ("seconds", "epoch"):
            # Read as ratios: an axis from zero does not exaggerate them (with room above the highest point).
            axis.set_ylim(0, 1.1 * axis.dataLim.y1 if axis.dataLim.y1 > 0 else 1)
        if column == "best_epoch":
            axis.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=3))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(2, len(handles)), fontsize=8)
    figure.suptitle(title or "Batch size: speed, convergence and accuracy (means over seeds)")
    return finish_figure(figure, save_to)


def batch_size_section(table: pd.DataFrame, folder: Path) -> list[Path]:
    """Draw the batch-size comparison and write ``folder/batch_size.png``; nothing where no recipe has two sizes."""
    path = Path(folder) / BATCH_SIZE_FILE
    title = "Batch size: speed, convergence and accuracy (means over seeds)" + synthetic_note(table)
    figure = plot_batch_size_analysis(batch_size_analysis(table), title=title, save_to=path)
    return [] if figure is None else [path]


# ------------------------------------------------------------------------------------------- one run


@dataclass
class RunDetail:
    """One run's test images, their labels and its predicted class probabilities, and where its plots go."""

    run_id: str
    label: str
    images: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    folder: Path


def load_run_detail(
    workspace, table: pd.DataFrame, *, run_id: str | None = None, data: str | None = None
) -> RunDetail | None:
    """Predictions of ``run_id`` (default: the newest completed run in ``table``) on its test images.

    Returns ``None`` where ``table`` holds no completed run and no ``run_id`` was given.
    """
    from cifarlib.runs import run_predictions

    workspace = storage.as_workspace(workspace)
    chosen = run_id or newest_completed_run(table)
    if chosen is None:
        return None
    run = workspace.run(chosen)
    config = run.read_json(storage.CONFIG_FILE) or {}
    images, labels, probabilities = run_predictions(chosen, workspace, data=data)
    label = recipe_label(config.get("preset"), config.get("width"), config.get("batch_size"))
    if data_name(data or config.get("data")) == "synthetic":
        label += ", SYNTHETIC data"
    return RunDetail(chosen, label, images, labels, probabilities, run.path / "plots")


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


def format_per_class_accuracy(detail: RunDetail | None) -> str:
    """Each class's test accuracy in percent, with the number of test images it has ("" without a run)."""
    if detail is None:
        return ""
    matrix = confusion_matrix(detail.labels, detail.probabilities)
    table = pd.DataFrame(
        {
            "accuracy": per_class_accuracy(matrix).map(lambda v: format_accuracy(v, missing="n/a")),
            "test_images": matrix.sum(axis=1),
        }
    )
    overall = format_accuracy(float(np.mean(np.argmax(detail.probabilities, axis=1) == detail.labels)))
    return f"{detail.label}, run {detail.run_id}: {overall} of {len(detail.labels)} test images\n{table}"


def plot_confusion_matrix(matrix: pd.DataFrame, *, title: str = "", save_to=None):
    """The confusion matrix as a heat map with counts, rows normalised for the colours."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 6.5), layout="constrained")
    shares = matrix.div(matrix.sum(axis=1).replace(0, 1), axis=0)
    image = axis.imshow(as_percent(1) * shares.values, cmap="Blues", vmin=0, vmax=as_percent(1))
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
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title or "confusion matrix (counts of test images)", fontsize=10)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class (%)")
    return finish_figure(figure, save_to)


def confusion_matrix_section(detail: RunDetail | None) -> list[Path]:
    """Draw the run's confusion matrix and write it to the run's ``plots/`` folder."""
    if detail is None:
        return []
    path = detail.folder / CONFUSION_MATRIX_FILE
    matrix = confusion_matrix(detail.labels, detail.probabilities)
    accuracy = format_accuracy(float(np.trace(matrix.values)) / max(1, len(detail.labels)))
    title = (
        f"Confusion matrix: {detail.label}, run {detail.run_id}\n"
        f"accuracy {accuracy} on {len(detail.labels)} test images (cells: counts)"
    )
    plot_confusion_matrix(matrix, title=title, save_to=path)
    return [path]


def plot_misclassified(images, labels, probabilities, *, count: int = 20, title: str = "", save_to=None):
    """A gallery of misclassified test images, most confident mistakes first, with true and predicted labels."""
    import matplotlib.pyplot as plt

    predicted = np.argmax(probabilities, axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    columns = 5
    rows = max(1, -(-len(wrong) // columns))
    figure, axes = plt.subplots(
        rows, columns, figsize=(columns * 2, rows * 2.3 + 0.6), squeeze=False, layout="constrained"
    )
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, wrong):
        axis.imshow(images[index].squeeze(), cmap="gray" if images.shape[-1] == 1 else None)
        axis.set_title(
            f"true {CLASS_NAMES[labels[index]]}\npredicted {CLASS_NAMES[predicted[index]]} "
            f"({sureness(probabilities[index, predicted[index]])} sure)",
            fontsize=8,
        )
    shown = (
        f"the {len(wrong)} most confident mistakes among {len(labels)} test images"
        if len(wrong)
        else f"no misclassified image among {len(labels)} test images"
    )
    shown = shown[0].upper() + shown[1:]
    figure.suptitle(f"{title}\n{shown}" if title else shown)
    return finish_figure(figure, save_to)


def sureness(probability: float) -> str:
    """A predicted probability as a whole percentage that never reads "100%" for an answer that was wrong."""
    percent = as_percent(probability)
    return f"{percent:.0f}%" if percent < 99.5 else ">99%"


def misclassified_section(detail: RunDetail | None) -> list[Path]:
    """Draw the run's most confident mistakes and write them to the run's ``plots/`` folder."""
    if detail is None:
        return []
    path = detail.folder / MISCLASSIFIED_FILE
    title = f"{detail.label}, run {detail.run_id}"
    plot_misclassified(detail.images, detail.labels, detail.probabilities, title=title, save_to=path)
    return [path]


# ------------------------------------------------------------------------------------------- all of it


def plots_dir(workspace, *, sweep: str | None = None) -> Path:
    """Where comparison plots go: the sweep's folder, or ``plots/`` in the workspace."""
    workspace = storage.as_workspace(workspace)
    folder = workspace.sweeps_dir / sweep if sweep else workspace.root / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_plots(
    workspace,
    *,
    sweep: str | None = None,
    all_runs: bool = False,
    run_id: str | None = None,
    data: str | None = None,
    written=None,
) -> list[Path]:
    """Every plot of ``04_results`` as PNG files, through the same section functions; returns their paths.

    Compares the runs of ``sweep``, by default of the newest sweep (``newest_sweep``) where the workspace has
    one, or every run with ``all_runs`` or where it has none. Comparisons go to ``plots_dir``; the confusion
    matrix and misclassified gallery of ``run_id`` (default: the newest completed run of the selection) to that
    run's ``plots/`` folder. ``written`` (a callable) is given each path as soon as it is written, so a caller
    can list what was done before a later plot fails. Raises ``WorkspaceError`` with ``no_runs_message`` where
    there is no run at all.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    workspace = storage.as_workspace(workspace, create=False)
    sweep = chosen_sweep(workspace, sweep, all_runs=all_runs)
    table = runs_table(workspace, sweep=sweep)
    if table.empty and run_id is None:
        raise WorkspaceError(no_runs_message(workspace, sweep=sweep))
    folder = plots_dir(workspace, sweep=sweep)
    paths: list[Path] = []

    def record(new: list[Path]) -> None:
        for path in new:
            paths.append(path)
            if written is not None:
                written(path)

    try:
        record(curves_section(workspace, table, folder, sweep=sweep))
        record(batch_size_section(table, folder))
        detail = load_run_detail(workspace, table, run_id=run_id, data=data)
        record(confusion_matrix_section(detail))
        record(misclassified_section(detail))
    finally:
        # The command line draws many figures in one process; none is shown, so none needs to stay open.
        plt.close("all")
    return paths


def finish_figure(figure, save_to=None):
    """Given ``save_to``, write the figure there as PNG (its layout is constrained, so nothing is clipped)."""
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(save_to, dpi=100)
    return figure
