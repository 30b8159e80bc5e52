"""cifarlib as a user installs it: the built wheel in a fresh virtual environment with only its declared
dependencies (no test requirements, no checkout on the path), every command run from an empty folder.

The environment is made once per session (installing TensorFlow takes minutes; pip's cache helps).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import venvs

import cifarlib

pytestmark = pytest.mark.installed

TINY = ["--data", "synthetic", "--train-size", "256", "--width", "0.25"]


class User:
    """A new user: a venv with the wheel installed, an empty home, and an empty folder to work in."""

    def __init__(self, bin_dir: Path, root: Path):
        self.bin_dir = bin_dir
        self.folder = root / "work"
        self.folder.mkdir()
        self.env = venvs.user_env(bin_dir, root / "home")

    def run(self, *arguments: str):
        return venvs.run_checked([self.bin_dir / "python", *arguments], cwd=self.folder, env=self.env)

    def cifarlib(self, *arguments: str):
        return self.run("-m", "cifarlib", *arguments)


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> User:
    wheel = venvs.built_wheel(tmp_path_factory)
    root = tmp_path_factory.mktemp("user")
    bin_dir = venvs.create_venv(sys.executable, root / "venv", str(wheel))
    return User(bin_dir, root)


@pytest.fixture(scope="module")
def trained(user) -> tuple[str, str]:
    """One run trained by the command line: (its run id, the command's output)."""
    answer = user.cifarlib("train", "--epochs", "3", *TINY, "--workspace", "W")
    (run_dir,) = (user.folder / "W" / "runs").iterdir()
    return run_dir.name, answer.stdout + answer.stderr


def test_killed_during_epoch_2_and_started_again_unchanged_resumes(user):
    """A disconnect, as a user meets it: the same command, without a run id, continues the unfinished run."""
    command = [user.bin_dir / "python", "-m", "cifarlib", "train", "--epochs", "3", *TINY, "--workspace", "K"]
    command[command.index("256")] = "1024"  # longer epochs, so that the kill lands inside epoch 2
    process = subprocess.Popen(
        command, cwd=user.folder, env=user.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    runs = user.folder / "K" / "runs"
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        histories = list(runs.glob("*/history.csv"))
        if histories and len(histories[0].read_text().splitlines()) >= 2:  # a header and epoch 1
            break
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed"
    process.kill()
    process.wait()
    (run_dir,) = runs.iterdir()
    assert not (run_dir / "summary.json").exists()

    again = user.run(*map(str, command[1:]))
    assert again.stdout.splitlines()[0].startswith(
        f"run {run_dir.name}: resuming the unfinished run after epoch "
    )
    assert [path.name for path in runs.iterdir()] == [run_dir.name]
    epochs = [int(row["epoch"]) for row in csv.DictReader((run_dir / "history.csv").open())]
    assert epochs == [1, 2, 3]
    assert (
        user.run(*map(str, command[1:]))
        .stdout.splitlines()[0]
        .startswith(f"run {run_dir.name}: already complete")
    )


def test_the_wheel_carries_the_notebooks_its_dependencies_and_its_address(tmp_path_factory):
    wheel = zipfile.ZipFile(venvs.built_wheel(tmp_path_factory))
    shipped = sorted(n for n in wheel.namelist() if n.startswith("cifarlib/notebooks/"))
    # The five notebooks, and not the scripts that build them.
    checkout = sorted(f"cifarlib/notebooks/{p.name}" for p in (venvs.CHECKOUT / "notebooks").glob("*.ipynb"))
    assert shipped == checkout and len(shipped) == 5
    (metadata_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = wheel.read(metadata_name).decode()
    assert f"\nVersion: {cifarlib.__version__}\n" in metadata
    declared = sorted(
        line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")
    )
    listed = [
        line.strip()
        for line in (venvs.CHECKOUT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [d.split("<")[0].split(">")[0].lower() for d in declared] == sorted(
        line.split("<")[0].split(">")[0].lower() for line in listed
    )
    assert "tensorboard" in [d.split(">")[0] for d in declared]
    assert f"Project-URL: Repository, {cifarlib.project.repository_url()}" in metadata


def test_the_sdist_builds_the_same_package(tmp_path_factory):
    names = venvs.built_sdist(tmp_path_factory)
    import tarfile

    members = {
        Path(m).relative_to(Path(m).parts[0]).as_posix() for m in tarfile.open(names).getnames() if "/" in m
    }
    assert {"requirements.txt", "notebooks/03_train.ipynb", "cifarlib/__init__.py"} <= members


def test_help_prints_no_tensorflow_log_line(user):
    answer = user.cifarlib("--help")
    assert "train" in answer.stdout
    assert not venvs.TENSORFLOW_LOG_LINE.search(answer.stdout + answer.stderr)


def test_an_error_prints_one_line(user):
    answer = subprocess.run(
        [user.bin_dir / "python", "-m", "cifarlib", "evaluate", "no-such-run", "--workspace", "W"],
        cwd=user.folder,
        env=user.env,
        capture_output=True,
        text=True,
    )
    assert answer.returncode == 1
    assert (
        answer.stderr.strip().startswith("cifarlib evaluate: error:") and len(answer.stderr.splitlines()) == 1
    )


def test_train_from_an_empty_folder(user, trained):
    run_id, output = trained
    run_dir = user.folder / "W" / "runs" / run_id
    assert output.splitlines()[0] == f"run {run_id}: new run of 3 epochs in {run_dir.resolve()}"
    assert json.loads((run_dir / "config.json").read_text())["preset"] == "tuned", "the default recipe"
    history = (run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3, "a header and one row per epoch"
    assert json.loads((run_dir / "summary.json").read_text())["epochs_run"] == 3
    assert (run_dir / "best.keras").is_file() and any((run_dir / "tensorboard").rglob("*tfevents*"))
    assert not venvs.TENSORFLOW_LOG_LINE.search(output), output[:2000]


def test_evaluate_runs_and_report(user, trained):
    run_id, _ = trained
    evaluated = user.cifarlib("evaluate", run_id, "--workspace", "W").stdout
    assert f"run {run_id}: test loss" in evaluated
    # The tuned recipe trains with label smoothing: the printed loss is said to differ from the history's.
    assert "with label smoothing 0.1, so the two differ" in evaluated
    assert run_id in user.cifarlib("runs", "--workspace", "W").stdout
    report = user.cifarlib("report").stdout
    assert "CPU:" in report and "RAM available" in report and "GPU" in report


def test_a_two_point_sweep(user):
    user.cifarlib("sweep", "--batch-sizes", "32,64", "--epochs", "1", *TINY, "--workspace", "S")
    for batch_size in (32, 64):
        summary = user.folder / "S" / "runs" / f"batch-size-b{batch_size}" / "summary.json"
        assert json.loads(summary.read_text())["epochs_run"] == 1


def test_the_results_notebook_under_papermill(user, trained):
    notebooks = Path(
        user.run("-c", "from cifarlib.project import notebooks_dir; print(notebooks_dir())").stdout.strip()
    )
    assert notebooks.is_relative_to(user.bin_dir.parent), "the installed package's own notebooks"
    executed = user.folder / "04_results.ipynb"
    user.run(
        "-m", "papermill", "--cwd", ".", notebooks / "04_results.ipynb", executed, "-p", "workspace", "W"
    )
    cells = json.loads(executed.read_text())["cells"]
    outputs = json.dumps([cell.get("outputs", []) for cell in cells])
    assert trained[0] in outputs, "the runs table lists the trained run"
    assert not venvs.TENSORFLOW_LOG_LINE.search(outputs)


def test_version_notebooks_and_predict_from_an_empty_folder(user, trained):
    # The `cifarlib` command the wheel installs, beside `python -m cifarlib`.
    version = venvs.run_checked([user.bin_dir / "cifarlib", "--version"], cwd=user.folder, env=user.env)
    assert version.stdout.strip() == f"cifarlib {cifarlib.__version__}"
    written = user.cifarlib("notebooks", "nb").stdout.split()
    assert [Path(p).name for p in written] == [f"{name}.ipynb" for name in cifarlib.project.NOTEBOOK_NAMES]
    assert all((user.folder / "nb" / Path(p).name).is_file() for p in written)
    # Three of the trained run's own kind of picture: one 32x32 PNG, one larger JPEG, in a folder.
    user.run(
        "-c",
        "import numpy as np; from PIL import Image; import os; os.makedirs('pictures'); "
        "Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save('pictures/a.png'); "
        "Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save('pictures/b.jpg')",
    )
    lines = user.cifarlib("predict", trained[0], "pictures", "--workspace", "W").stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        str(Path("pictures") / "a.png"),
        str(Path("pictures") / "b.jpg"),
    ]
    assert lines[1].endswith("(resized from 64x48)")
    from cifarlib.data import CLASS_NAMES

    assert all(line.split(": ")[1].split()[0] in CLASS_NAMES for line in lines)
