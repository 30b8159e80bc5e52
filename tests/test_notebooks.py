"""The notebook suite: its committed form, a papermill run of all five in order, a sweep, TensorBoard logs."""

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cifarlib.config import RunConfig
from cifarlib.credentials import scan_file
from cifarlib.project import colab_url
from cifarlib.sweep import run_sweep

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
NAMES = ["00_gpu_check", "01_drive", "02_explore_data", "03_train", "04_results"]
CHECK_MARK = "# NBVAL_IGNORE_OUTPUT"


def test_the_five_notebooks_exist():
    assert [path.stem for path in NOTEBOOKS] == NAMES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    # Every string of the notebook's JSON, metadata and attachments included (cifarlib.credentials).
    assert [str(finding) for finding in scan_file(path)] == []
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = notebook.cells
    parameter_cells = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameter_cells) == 1, "exactly one cell tagged 'parameters'"
    for cell in cells:
        if cell.cell_type != "code":
            continue
        checked = bool(cell.outputs)
        if checked:
            # Only cells whose output nbval checks keep outputs (and the execution count nbval needs).
            assert CHECK_MARK not in cell.source
            assert all(o.output_type == "stream" and o.name == "stdout" for o in cell.outputs)
        else:
            assert cell.execution_count is None, f"{path.name}: execution count on an unchecked cell"
        # Thin notebooks: logic lives in cifarlib, not here.
        assert (
            not re.search(r"^\s*(def|class|for|while) ", cell.source, re.MULTILINE) or "Setup:" in cell.source
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_skeleton(path):
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert colab_url(path.name) in cells[0].source
    code = [c for c in cells if c.cell_type == "code"]
    # The setup cell is build/setup_cell.py's, checked cell for cell by tests/test_notebook_template.py.
    assert 'find_spec("cifarlib") is None' in code[0].source
    assert code[1].source.startswith("import cifarlib")
    assert "parameters" in code[2].metadata.get("tags", [])
    # A markdown cell explains each step.
    for before, cell in zip(cells, cells[1:]):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown", f"{path.name}: code cell without an explanation before it"


def test_checked_outputs_cover_the_reference_facts():
    outputs = {
        path.stem: "".join(
            o.text
            for c in nbformat.read(path, as_version=4).cells
            if c.cell_type == "code"
            for o in c.outputs
        )
        for path in NOTEBOOKS
    }
    assert "reference network: 1,420,834 parameters" in outputs["03_train"]
    assert "reference memory formula at batch 128: 1.47 GiB" in outputs["03_train"]
    assert "each image 32x32 pixels, 3 channels, uint8" in outputs["02_explore_data"]


def test_papermill_runs_the_five_notebooks_in_order(tmp_path, small_archive, monkeypatch):
    import papermill

    monkeypatch.delenv("CIFARLIB_NOTEBOOK_PARAMS", raising=False)
    workspace = tmp_path / "ws"
    common = {"workspace": str(workspace)}
    specific = {
        "02_explore_data": {"data": str(small_archive)},
        "03_train": {
            "preset": "reference",
            "data": str(small_archive),
            "epochs": 2,
            "width": 0.25,
            "batch_size": 100,
            "run_id": "papermill",
        },
    }
    # The copies `notebooks DIR` writes, as a user who installed the wheel gets them.
    copies = tmp_path / "copies"
    copied = subprocess.run(
        [sys.executable, "-m", "cifarlib", "notebooks", str(copies)], capture_output=True, text=True
    )
    assert copied.returncode == 0, copied.stderr
    assert sorted(copies.glob("*.ipynb")) == [copies / path.name for path in NOTEBOOKS]
    for path in sorted(copies.glob("*.ipynb")):
        parameters = {**(common if path.stem != "00_gpu_check" else {}), **specific.get(path.stem, {})}
        papermill.execute_notebook(
            str(path),
            str(tmp_path / path.name),
            parameters=parameters,
            progress_bar=False,
            cwd=str(path.parent),
        )
    run_dir = workspace / "runs" / "papermill"
    assert (run_dir / "summary.json").is_file()
    assert (workspace / "plots" / "curves.png").stat().st_size > 1000
    # One batch size is no trend: 04_results shows it as a table, not as a plot of single points.
    assert not (workspace / "plots" / "batch_size.png").exists()
    assert (run_dir / "plots" / "confusion_matrix.png").stat().st_size > 1000
    assert (run_dir / "plots" / "misclassified.png").stat().st_size > 1000
    executed = nbformat.read(tmp_path / "04_results.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    # The runs table (epochs, batch), then the batch-size analysis: the group, its one batch size, one seed.
    assert re.search(r"papermill\s+completed\s+2\s+100\s", printed), printed[:2000]
    assert re.search(r"reference, width 0.25:\n.*\n\s*cifar-10-python.tar.gz\s+100\s+1\s+1\s", printed), (
        printed[:3000]
    )

    # The command line writes the same plots.
    for png in (workspace / "plots").glob("*.png"):
        png.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "cifarlib", "plots", "--workspace", str(workspace)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    written = [Path(line) for line in done.stdout.split()]
    assert [p.name for p in written] == ["curves.png", "confusion_matrix.png", "misclassified.png"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_sweep_over_two_batch_sizes(tmp_path, small_archive, capsys, monkeypatch):
    monkeypatch.delenv("CIFARLIB_NOTEBOOK_PARAMS", raising=False)
    workspace = tmp_path / "ws"
    parameters = dict(epochs=1, data=str(small_archive), width=0.25)
    table = run_sweep([50, 100], name="ci", workspace=workspace, progress=True, **parameters)
    assert sorted(table["batch_size"]) == [50, 100]
    assert list(table["status"]) == ["completed", "completed"]
    assert (workspace / "runs" / "ci-b50" / "03_train.ipynb").is_file()
    assert "run 2/2: batch 100 (ci-b100): done" in capsys.readouterr().out

    # A second call skips both; a broken run (here: its folder holds a run with other settings) is recorded
    # with its error, and the run after it still trains.
    broken = workspace / "runs" / "ci-b70"
    broken.mkdir()
    (broken / "config.json").write_text(RunConfig(data="synthetic", batch_size=70, epochs=9).to_json())
    again = run_sweep([50, 100, 70, 25], name="ci", workspace=workspace, progress=True, **parameters)
    out = capsys.readouterr().out
    assert "run 1/4: batch 50 (ci-b50): already completed, skipped" in out
    assert (
        "run 3/4: batch 70 (ci-b70): FAILED (RunConfigError: run 'ci-b70' exists with other settings" in out
    )
    assert "run 4/4: batch 25 (ci-b25): done" in out
    status = dict(zip(again["run_id"], again["status"]))
    assert status == {
        "ci-b50": "completed",
        "ci-b100": "completed",
        "ci-b70": "failed",
        "ci-b25": "completed",
    }
    executed = nbformat.read(broken / "03_train.ipynb", as_version=4)
    assert any(
        o.get("ename") == "RunConfigError" for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    # The command line shows the same sweep.
    listed = subprocess.run(
        [sys.executable, "-m", "cifarlib", "runs", "--workspace", str(workspace), "--sweep", "ci"],
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0 and "ci-b70" in listed.stdout and "failed" in listed.stdout
    # Its plots: the batch-size comparison of the completed runs, and the newest completed run's detail.
    plotted = subprocess.run(
        [sys.executable, "-m", "cifarlib", "plots", "--workspace", str(workspace), "--sweep", "ci"],
        capture_output=True,
        text=True,
    )
    assert plotted.returncode == 0, plotted.stderr[-2000:]
    written = [Path(line) for line in plotted.stdout.split()]
    assert [p.relative_to(workspace).as_posix() for p in written] == [
        "sweeps/ci/curves.png",
        "sweeps/ci/batch_size.png",
        "runs/ci-b25/plots/confusion_matrix.png",
        "runs/ci-b25/plots/misclassified.png",
    ]


def test_tensorboard_logs_open_in_tensorboard(tmp_path, small_archive, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cifarlib.train import train

    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))
    train(
        RunConfig(data=str(small_archive), epochs=3, width=0.25, batch_size=50),
        tmp_path / "ws",
        run_id="tb",
        verbose=0,
    )
    logs = tmp_path / "ws" / "runs" / "tb" / "tensorboard"
    for split, prefix in (("train", ""), ("validation", "val_")):
        events = EventAccumulator(str(logs / split), size_guidance={"tensors": 0, "scalars": 0})
        events.Reload()
        tags = events.Tags()
        for metric in ("loss", "accuracy"):
            tag = f"epoch_{metric}"
            values = events.Tensors(tag) if tag in tags["tensors"] else events.Scalars(tag)
            assert [v.step for v in values] == [0, 1, 2], f"{prefix}{metric}"
