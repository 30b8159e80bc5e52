"""A sweep survives any failure of one run (an exception, a dead kernel, a time-out) and records its cause.

A stand-in training notebook keeps this fast: it fails in the way its batch size names, or else writes the
history and summary a finished run leaves.
"""

import json
import subprocess
import sys

import nbformat
import pytest

from cifarlib import storage
from cifarlib.sweep import run_sweep, sweep_outcomes

PARAMETERS = "batch_size = 0\nrun_id = ''\nworkspace = ''\nepochs = 2\nverbose = 2\n"
BODY = """
import os, signal, time
from pathlib import Path
run = Path(workspace) / "runs" / run_id
if batch_size == 2:
    os.kill(os.getpid(), signal.SIGKILL)
if batch_size == 3:
    raise ValueError("batch 3 is refused")
if batch_size == 4:
    time.sleep(60)
if batch_size == 6:
    (run / "started").write_text("")
    time.sleep(60)
(run / "history.csv").write_text("epoch,loss,val_accuracy\\n1,2.0,0.3\\n2,1.5,0.4\\n")
time.sleep(2.5)
(run / "summary.json").write_text('{"run_id": "%s", "batch_size": %d, "epochs_run": 2}' % (run_id, batch_size))
"""


def stand_in(path, parameters, body):
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    book.cells = [cell, nbformat.v4.new_code_cell(body)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, path)
    return path


@pytest.fixture
def notebook(tmp_path):
    return stand_in(tmp_path / "fake_train.ipynb", PARAMETERS, BODY)


def test_every_kind_of_failure_is_recorded_and_the_sweep_goes_on(tmp_path, notebook, capfd):
    workspace = tmp_path / "ws"
    table = run_sweep(
        [1, 2, 3, 4, 5], name="faults", workspace=workspace, notebook=notebook, cell_timeout=15, epochs=2
    )
    out, err = capfd.readouterr()  # the kernels' own output too, not only this process's
    # The kernels talk to papermill over Unix sockets: no per-run warning about unencrypted TCP.
    assert "without encryption" not in out + err
    status = dict(zip(table["run_id"], table["status"]))
    assert status == {
        "faults-b1": "completed",
        "faults-b2": "failed",
        "faults-b3": "failed",
        "faults-b4": "failed",
        "faults-b5": "completed",
    }
    errors = {
        run_id: outcome.get("error", "")
        for run_id, outcome in sweep_outcomes(storage.open_workspace(workspace), "faults").items()
    }
    assert errors["faults-b2"].startswith("DeadKernelError: the notebook's kernel died")
    assert errors["faults-b3"] == "ValueError: batch 3 is refused"
    assert errors["faults-b4"].startswith("CellTimeoutError")
    assert "run 1/5: batch 1 (faults-b1): training ..." in out
    assert "run 2/5: batch 2 (faults-b2): FAILED (DeadKernelError" in out
    assert "run 5/5: batch 5 (faults-b5): done" in out
    # The epochs come from the run's history.csv while the notebook runs.
    assert "    epoch 2/2: loss 1.5000, validation accuracy 40.00%" in out
    manifest = json.loads((workspace / "sweeps" / "faults" / "sweep.json").read_text())
    assert manifest["runs"]["faults-b3"]["status"] == "failed"


def test_cli_exits_non_zero_when_a_run_failed(tmp_path, notebook):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cifarlib",
            "sweep",
            "--batch-sizes",
            "3,1",
            "--epochs",
            "2",
            "--workspace",
            str(tmp_path / "ws"),
            "--notebook",
            str(notebook),
            "--name",
            "cli",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "cli-b3" in done.stdout and "failed" in done.stdout and "completed" in done.stdout


def test_ctrl_c_during_a_sweep_is_one_line(tmp_path, notebook):
    import os
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "cifarlib", "sweep", "--batch-sizes", "6", "--workspace", str(tmp_path / "ws")]
        + ["--notebook", str(notebook), "--name", "stop"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C in a terminal signals the foreground process group; the kernel runs in a session of its own.
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    started = tmp_path / "ws" / "runs" / "stop-b6" / "started"
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert started.exists(), "the run's notebook never started"
    os.killpg(process.pid, signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130
    assert errors.splitlines() == ["cifarlib sweep: interrupted"], errors[-3000:]
    # The kernel's own complaints went to the run's kernel.log.
    assert (tmp_path / "ws" / "runs" / "stop-b6" / "kernel.log").is_file()


def test_the_watcher_reads_the_epoch_count_from_the_run(tmp_path):
    from cifarlib.sweep import _EpochWatcher

    run = storage.open_workspace(tmp_path).run("watched")
    run.path.mkdir(parents=True)
    watcher = _EpochWatcher(run, None, progress=True)  # no epochs parameter: the preset's count
    assert watcher.new_lines() == []
    (run.path / "config.json").write_text('{"epochs": 7}')
    (run.path / "history.csv").write_text("epoch,loss,val_accuracy,seconds\n1,2.0,0.3,1.25\n")
    assert watcher.new_lines() == ["    epoch 1/7: loss 2.0000, validation accuracy 30.00%; 1.2 s"]
    assert watcher.new_lines() == []


def test_a_relative_data_path_names_the_file_beside_the_user_not_the_notebook(tmp_path, monkeypatch):
    """The notebook runs in its own folder; a sweep recorded with the path as typed resumes all the same."""
    body = """
from pathlib import Path
assert Path(data).is_file(), f"{data} is no file seen from {Path.cwd()}"
run = Path(workspace) / "runs" / run_id
(run / "history.csv").write_text("epoch,loss,val_accuracy\\n1,2.0,0.3\\n")
(run / "summary.json").write_text('{"run_id": "%s", "batch_size": %d, "epochs_run": 1}' % (run_id, batch_size))
"""
    notebook = stand_in(tmp_path / "notebooks" / "train.ipynb", PARAMETERS + "data = ''\n", body)
    user = tmp_path / "user"
    (user / "cifar.tar.gz").parent.mkdir()
    (user / "cifar.tar.gz").write_bytes(b"the images")
    monkeypatch.chdir(user)
    manifest = user / "ws" / "sweeps" / "typed" / "sweep.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"name": "typed", "parameters": {"data": "cifar.tar.gz"}, "runs": {}}))
    table = run_sweep(
        [8], name="typed", workspace="ws", notebook=notebook, progress=False, data="cifar.tar.gz"
    )
    assert list(table["status"]) == ["completed"]
    assert json.loads(manifest.read_text())["parameters"] == {"data": str(user / "cifar.tar.gz")}
