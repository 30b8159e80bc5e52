"""Run selection, ordering, grouping and the plots of ``04_results`` / ``plots``, on run folders written by hand.

The run folders here hold what ``train`` writes (config.json, history.csv, summary.json) without training a
network, so the tests check what ``results`` does with them, quickly.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cifarlib import results, run_lock, storage  # noqa: E402
from cifarlib.data import CLASS_NAMES  # noqa: E402
from cifarlib.errors import WorkspaceError  # noqa: E402
from cifarlib.formatting import format_accuracy  # noqa: E402
from cifarlib.sweep import MANIFEST  # noqa: E402


def write_run(
    workspace: Path,
    run_id: str,
    *,
    created: str,
    preset: str = "tuned",
    batch_size: int = 64,
    width: float = 1.0,
    data: str = "/data/cifar-10-python.tar.gz",
    seed: int = 0,
    epochs: int = 3,
    completed: bool = True,
    seconds: float = 10.0,
    **settings,
) -> Path:
    """A run folder as ``train`` leaves it, with a plausible history that rises with the epochs."""
    folder = workspace / "runs" / run_id
    folder.mkdir(parents=True)
    config = dict(
        preset=preset,
        batch_size=batch_size,
        width=width,
        data=data,
        seed=seed,
        epochs=epochs,
        created=created,
        **settings,
    )
    (folder / "config.json").write_text(json.dumps(config))
    epoch = np.arange(1, epochs + 1)
    history = pd.DataFrame(
        {
            "epoch": epoch,
            "loss": 2.0 / epoch,
            "accuracy": 0.5 + 0.1 * epoch / epochs,
            "val_loss": 2.2 / epoch,
            "val_accuracy": 0.48 + 0.1 * epoch / epochs + 0.001 * batch_size / 64,
            "seconds": seconds * 64 / batch_size,
            "learning_rate": 0.1,
        }
    )
    history.to_csv(folder / "history.csv", index=False)
    if completed:
        summary = {
            "run_id": run_id,
            "preset": preset,
            "batch_size": batch_size,
            "epochs_run": epochs,
            "best_epoch": epochs,
            "best_val_accuracy": float(history["val_accuracy"].iloc[-1]),
            "test_accuracy": float(history["val_accuracy"].iloc[-1]) - 0.01,
            "seconds_per_epoch": float(history["seconds"].mean()),
            "total_seconds": float(history["seconds"].sum()),
        }
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def write_sweep(workspace: Path, name: str, run_ids: list[str]) -> None:
    folder = workspace / "sweeps" / name
    folder.mkdir(parents=True)
    runs = {run_id: {"batch_size": 0, "status": "completed"} for run_id in run_ids}
    (folder / MANIFEST).write_text(json.dumps({"name": name, "parameters": {}, "runs": runs}))


@pytest.fixture
def fake_predictions(monkeypatch):
    """Stands in for loading a run's best.keras: records which run was asked for, returns 50 test images."""
    asked = []

    def run_predictions(run_id, workspace=None, *, data=None, **_):
        asked.append(run_id)
        rng = np.random.default_rng(0)
        labels = np.arange(50) % len(CLASS_NAMES)
        probabilities = rng.dirichlet(np.ones(len(CLASS_NAMES)), size=50)
        probabilities[np.arange(40), labels[:40]] += 1.0
        images = rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
        return images, labels, probabilities / probabilities.sum(axis=1, keepdims=True)

    import cifarlib.runs

    monkeypatch.setattr(cifarlib.runs, "run_predictions", run_predictions)
    return asked


def test_accuracy_is_one_percentage_format():
    assert format_accuracy(0.87324) == "87.32%"
    assert format_accuracy(1.0) == "100.00%"
    assert format_accuracy(None) == "" and format_accuracy(float("nan"), missing="n/a") == "n/a"


def test_runs_are_ordered_by_start_not_by_id(tmp_path):
    # "zz" started first, "aa" last: alphabetical order would put them the other way round.
    write_run(tmp_path, "zz-first", created="2026-11-29T10:00:00+00:00")
    write_run(tmp_path, "mm-second", created="2026-11-29T11:00:00+00:00")
    write_run(tmp_path, "aa-unfinished", created="2026-11-29T13:00:00+00:00", completed=False)
    table = results.runs_table(tmp_path)
    assert list(table["run_id"]) == ["zz-first", "mm-second", "aa-unfinished"]
    assert list(table["status"]) == ["completed", "completed", "unfinished"]
    # The newest completed run, not the newest run and not the alphabetically last one.
    assert results.newest_completed_run(table) == "mm-second"
    text = results.format_runs_table(table, wide=True)
    assert "2026-11-29 11:00" in text and "cifar-10-python.tar.gz" in text and "/data/" not in text
    assert format_accuracy(table["best_val_accuracy"].iloc[0]) in text
    narrow = results.format_runs_table(table)
    assert "cifar-10-python.tar.gz" in narrow
    assert max(map(len, narrow.splitlines())) <= results.NARROW_WIDTH


def test_the_narrow_table_fits_100_columns_and_shortens_long_ids_in_the_middle(tmp_path):
    long_id = (
        "bench-accuracy-tuned-modules-" + "-".join(["64-128-192-16-32-32"] * 3) + "-105ceb088b-w1-e10-s0"
    )
    write_run(tmp_path, long_id, created="2026-11-29T10:00:00+00:00")
    table = results.runs_table(tmp_path)
    narrow = results.format_runs_table(table)
    assert max(map(len, narrow.splitlines())) <= results.NARROW_WIDTH
    (line,) = [line for line in narrow.splitlines() if "…" in line]
    assert line.split()[0].startswith("bench-accuracy") and line.split()[0].endswith("w1-e10-s0")
    assert long_id in results.format_runs_table(table, wide=True)


def test_detailed_run_defaults_to_the_newest_completed_run_of_the_sweep(tmp_path, fake_predictions):
    write_run(tmp_path, "sweep-b64", created="2026-11-29T10:00:00+00:00", batch_size=64)
    write_run(tmp_path, "sweep-b128", created="2026-11-29T11:00:00+00:00", batch_size=128)
    # Newer, but outside the sweep: the detail must not come from it.
    write_run(tmp_path, "other", created="2026-11-29T12:00:00+00:00", preset="reference")
    write_sweep(tmp_path, "batch-size", ["sweep-b64", "sweep-b128"])
    table = results.runs_table(tmp_path, sweep="batch-size")
    assert list(table["run_id"]) == ["sweep-b64", "sweep-b128"]
    detail = results.load_run_detail(tmp_path, table)
    assert fake_predictions == ["sweep-b128"]
    assert detail.run_id == "sweep-b128" and detail.label == "tuned, batch 128"
    assert results.load_run_detail(tmp_path, results.runs_table(tmp_path)).run_id == "other"
    # An explicit run id wins.
    assert results.load_run_detail(tmp_path, table, run_id="sweep-b64").run_id == "sweep-b64"
    per_class = results.format_per_class_accuracy(detail)
    assert "tuned, batch 128, run sweep-b128" in per_class and "%" in per_class


def test_batch_size_analysis_groups_by_recipe_and_counts_runs(tmp_path):
    write_run(tmp_path, "t64-s0", created="2026-11-29T10:00:00+00:00", batch_size=64, seed=0, epochs=3)
    write_run(tmp_path, "t64-s1", created="2026-11-29T10:10:00+00:00", batch_size=64, seed=1, epochs=3)
    write_run(tmp_path, "t128", created="2026-11-29T10:20:00+00:00", batch_size=128)
    write_run(tmp_path, "ref64", created="2026-11-29T10:30:00+00:00", preset="reference", batch_size=64)
    write_run(tmp_path, "half64", created="2026-11-29T10:40:00+00:00", width=0.5, batch_size=64)
    write_run(tmp_path, "synth64", created="2026-11-29T10:50:00+00:00", data="synthetic", batch_size=64)
    write_run(tmp_path, "unfinished", created="2026-11-29T11:00:00+00:00", batch_size=64, completed=False)
    analysis = results.batch_size_analysis(results.runs_table(tmp_path))
    keyed = {
        (row.preset, row.width, row.data, row.batch_size): row for row in analysis.itertuples(index=False)
    }
    assert set(keyed) == {
        ("tuned", 1.0, "cifar-10-python.tar.gz", 64),
        ("tuned", 1.0, "cifar-10-python.tar.gz", 128),
        ("reference", 1.0, "cifar-10-python.tar.gz", 64),
        ("tuned", 0.5, "cifar-10-python.tar.gz", 64),
        ("tuned", 1.0, "synthetic", 64),
    }
    pair = keyed[("tuned", 1.0, "cifar-10-python.tar.gz", 64)]
    # Two seeds of one setting are replicates: averaged, counted, and their spread given.
    assert pair.runs == 2 and pair.seeds == 2 and pair.best_epoch == 3
    assert pair.best_val_accuracy_spread == pytest.approx(0.0)
    assert keyed[("reference", 1.0, "cifar-10-python.tar.gz", 64)].runs == 1
    # The groups are named by what sets them apart, not by every setting in which the presets differ.
    assert set(analysis["group"]) == {
        "tuned, data cifar-10-python.tar.gz",
        "reference, data cifar-10-python.tar.gz",
        "tuned, width 0.5, data cifar-10-python.tar.gz",
        "tuned, data synthetic",
    }
    assert "runs" in results.format_batch_size_analysis(analysis)


def test_runs_that_differ_in_epochs_or_train_size_are_never_averaged(tmp_path):
    # Four runs at two batch sizes, two budgets and two train sizes: each is its own point.
    write_run(tmp_path, "e1-b64", created="2026-11-29T10:00:00+00:00", batch_size=64, epochs=1)
    write_run(tmp_path, "e4-b64", created="2026-11-29T10:01:00+00:00", batch_size=64, epochs=4)
    write_run(tmp_path, "e4-b128", created="2026-11-29T10:02:00+00:00", batch_size=128, epochs=4)
    write_run(
        tmp_path, "n200-b64", created="2026-11-29T10:03:00+00:00", batch_size=64, epochs=4, train_size=200
    )
    write_run(
        tmp_path,
        "n200-b64-s1",
        created="2026-11-29T10:04:00+00:00",
        batch_size=64,
        epochs=4,
        train_size=200,
        seed=1,
    )
    # A device-only setting does not split a group.
    write_run(
        tmp_path,
        "n200-b128",
        created="2026-11-29T10:05:00+00:00",
        batch_size=128,
        epochs=4,
        train_size=200,
        precision="float32",
    )
    analysis = results.batch_size_analysis(results.runs_table(tmp_path))
    by_group = {group: rows for group, rows in analysis.groupby("group")}
    assert set(by_group) == {
        "tuned, epochs 1, train_size all",
        "tuned, epochs 4, train_size all",
        "tuned, epochs 4, train_size 200",
    }
    small = by_group["tuned, epochs 4, train_size 200"].set_index("batch_size")
    assert list(small.index) == [64, 128] and list(small["runs"]) == [2, 1] and list(small["seeds"]) == [2, 1]
    assert list(by_group["tuned, epochs 1, train_size all"]["runs"]) == [1]
    # Two groups have two batch sizes: two lines, each named in the legend.
    figure = results.plot_batch_size_analysis(analysis)
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert any(label.startswith("tuned, epochs 4, train_size all") for label in legend)
    assert any(
        label.startswith("tuned, epochs 4, train_size 200 (seeds per point: 2, 1)") for label in legend
    )
    assert not any("epochs 1," in label for label in legend), "one batch size is no line"
    speed = figure.axes[0]
    assert speed.get_ylim()[0] == 0, "the speed axis starts at zero"
    plt.close(figure)


def test_empty_workspace_says_where_it_looked(tmp_path):
    table = results.runs_table(tmp_path)
    assert table.empty
    message = results.describe_runs(table, tmp_path)
    assert message.startswith("No runs yet in ") and str(tmp_path / "runs") in message
    assert results.curves_section(tmp_path, table, tmp_path / "plots") == []
    assert results.batch_size_section(table, tmp_path / "plots") == []
    assert results.load_run_detail(tmp_path, table) is None
    with pytest.raises(WorkspaceError, match="No runs yet in"):
        results.write_plots(tmp_path)


def test_reading_a_workspace_that_does_not_exist_names_it_and_creates_nothing(tmp_path):
    missing = tmp_path / "mistyped"
    for read in (results.runs_table, results.write_plots):
        with pytest.raises(WorkspaceError, match=r"workspace .*mistyped: no such folder"):
            read(missing)
    from cifarlib.runs import evaluate_run

    with pytest.raises(WorkspaceError, match=r"workspace .*mistyped: no such folder") as raised:
        evaluate_run("some-run", missing)
    # It carries the workspace it would have been, so a caller can say where it looked.
    assert raised.value.workspace == storage.Workspace(root=missing.resolve(), on_drive=False)
    # The command line's `runs` lists nothing there, says where it looked, and exits 0 (a fresh machine).
    import subprocess
    import sys

    listed = subprocess.run(
        [sys.executable, "-m", "cifarlib", "runs", "--workspace", str(missing)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert listed.returncode == 0 and listed.stdout.startswith(f"No runs yet in {missing / 'runs'}")
    assert not missing.exists()


def _overlaps(first, second) -> bool:
    return not (
        first.x1 <= second.x0 or second.x1 <= first.x0 or first.y1 <= second.y0 or second.y1 <= first.y0
    )


def _check_readable(figure):
    """Titles, labelled axes, integer epoch ticks, and a legend that covers no axes."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert figure.get_suptitle()
    for axis in figure.axes:
        assert axis.get_title() and axis.get_xlabel() and axis.get_ylabel()
        if axis.get_xlabel() == "epoch":
            ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
    title = figure._suptitle.get_window_extent(renderer)
    for legend in figure.legends:
        box = legend.get_window_extent(renderer)
        assert not any(_overlaps(box, axis.get_window_extent(renderer)) for axis in figure.axes)
        assert not _overlaps(box, title)


def test_plots_of_a_two_batch_size_sweep(tmp_path, fake_predictions):
    ids = []
    for index, batch_size in enumerate((64, 128)):
        for seed in (0, 1):
            run_id = f"sweep-b{batch_size}-s{seed}"
            ids.append(run_id)
            write_run(
                tmp_path,
                run_id,
                created=f"2026-11-29T1{index}:0{seed}:00+00:00",
                batch_size=batch_size,
                seed=seed,
            )
    write_sweep(tmp_path, "batch-size", ids)
    table = results.runs_table(tmp_path, sweep="batch-size")
    curves = results.plot_curves(tmp_path, table)
    _check_readable(curves)
    # The accuracy axis follows the data (here 51% to 62%), not 0 to 100.
    low, high = curves.axes[1].get_ylim()
    assert 45 < low < 52 and 60 < high < 70
    figure = results.plot_batch_size_analysis(results.batch_size_analysis(table))
    _check_readable(figure)
    assert "seeds per point: 2, 2" in " ".join(t.get_text() for t in figure.legends[0].get_texts())
    # Runs that differ only in seed are told apart in the curves legend.
    curve_labels = [t.get_text() for t in curves.legends[0].get_texts()]
    assert any(label.startswith("tuned, batch 64, seed 1 ") for label in curve_labels), curve_labels
    plt.close("all")

    written = results.write_plots(tmp_path, sweep="batch-size")
    assert [p.name for p in written] == [
        results.CURVES_FILE,
        results.BATCH_SIZE_FILE,
        results.CONFUSION_MATRIX_FILE,
        results.MISCLASSIFIED_FILE,
    ]
    assert written[0].parent == tmp_path / "sweeps" / "batch-size"
    assert written[2].parent == tmp_path / "runs" / "sweep-b128-s1" / "plots"
    assert all(p.stat().st_size > 1000 for p in written)


def test_a_single_run_is_a_table_not_empty_panels(tmp_path, fake_predictions):
    write_run(
        tmp_path, "only", created="2026-11-29T10:00:00+00:00", preset="reference", batch_size=256, epochs=1
    )
    table = results.runs_table(tmp_path)
    assert results.plot_batch_size_analysis(results.batch_size_analysis(table)) is None
    assert "256" in results.format_batch_size_analysis(results.batch_size_analysis(table))
    curves = results.plot_curves(tmp_path, table)
    _check_readable(curves)
    assert curves.get_suptitle() == "Training curves: reference, batch 256, run only"
    plt.close("all")
    written = results.write_plots(tmp_path)
    assert [p.name for p in written] == [
        results.CURVES_FILE,
        results.CONFUSION_MATRIX_FILE,
        results.MISCLASSIFIED_FILE,
    ]


def test_a_run_without_a_recorded_start_is_placed_by_when_its_config_was_written(tmp_path):
    import os

    write_run(tmp_path, "b-recorded", created="2026-11-29T11:00:00+00:00")
    older = write_run(tmp_path, "c-unrecorded", created="")
    # 2026-11-29 10:20:00.5 UTC: before "b-recorded", and written with a fraction of a second as file times are.
    os.utime(older / "config.json", (1795947600.5, 1795947600.5))
    table = results.runs_table(tmp_path)
    assert list(table["run_id"]) == ["c-unrecorded", "b-recorded"]
    assert f"{table['created'].iloc[0]:%Y-%m-%d %H:%M}" == "2026-11-29 10:20"


@pytest.mark.parametrize("stored", ["[1, 2]", "{not json"])
def test_a_run_with_a_broken_config_is_listed_as_unreadable(tmp_path, stored):
    write_run(tmp_path, "good", created="2026-11-29T11:00:00+00:00")
    broken = write_run(tmp_path, "broken", created="2026-11-29T10:00:00+00:00")
    (broken / "config.json").write_text(stored)
    table = results.runs_table(tmp_path)
    assert dict(zip(table["run_id"], table["status"])) == {"broken": "unreadable", "good": "completed"}
    assert "broken" in results.format_runs_table(table)


def test_a_run_whose_lock_is_live_shows_as_running_with_its_host_and_pid(tmp_path):
    import os
    import socket

    write_run(tmp_path, "live", created="2026-11-29T10:00:00+00:00", completed=False)
    write_run(tmp_path, "left", created="2026-11-29T11:00:00+00:00", completed=False)
    workspace = storage.open_workspace(tmp_path)
    with run_lock.RunLock(workspace.run("live")):
        table = results.runs_table(tmp_path)
        text = results.format_runs_table(table)
    status = dict(zip(table["run_id"], table["status"]))
    assert status == {"live": "running", "left": "unfinished"}
    running_on = f"{socket.gethostname()} pid {os.getpid()}"
    assert table.set_index("run_id").loc["live", "running_on"] == running_on
    assert running_on in text
    # Released: no longer running, and the column is gone from the narrow table.
    assert results.runs_table(tmp_path).set_index("run_id").loc["live", "status"] == "unfinished"
    assert "running_on" not in results.format_runs_table(results.runs_table(tmp_path))
