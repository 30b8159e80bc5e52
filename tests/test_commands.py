"""The command line as a user meets it: --version, grouped help, mistyped flags, pipes, predict, notebooks."""

import re
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from PIL import Image

import cifarlib
from cifarlib.config import RunConfig
from cifarlib.formatting import format_accuracy
from cifarlib.project import NOTEBOOK_NAMES, copy_notebooks, notebooks_dir
from cifarlib.runs import run_predictions
from cifarlib.train import train


def cifarlib_command(*arguments, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "cifarlib", *arguments], capture_output=True, text=True, **kwargs
    )


@pytest.fixture(autouse=True)
def staging(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))


def test_version():
    done = cifarlib_command("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"cifarlib {cifarlib.__version__}"


def test_train_help_lists_what_a_newcomer_sets_first():
    text = cifarlib_command("train", "--help").stdout
    sections = re.split(r"\n(?=\S[^\n]*:\n)", text)
    titles = [section.splitlines()[0] for section in sections[1:]]
    assert titles[:2] == ["options:", "what most runs set:"], titles
    first = sections[2]
    for flag in ("--preset", "--data", "--epochs", "--batch-size", "--train-size", "--width", "--workspace"):
        assert f"  {flag} " in first, flag
    assert "--label-smoothing" not in first and "--label-smoothing" in text
    device = next(s for s in sections if s.startswith("how to use the machine"))
    assert "--precision" in device and "--jit-compile" in device


@pytest.mark.parametrize("typed", ["--epoch", "--epo", "--batchsize"])
def test_a_mistyped_or_abbreviated_flag_names_the_nearest_and_the_commands_help(typed):
    done = cifarlib_command("train", typed, "3")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"unrecognized argument {typed}" in done.stderr
    assert "(see python -m cifarlib train --help)" in done.stderr
    if typed != "--epo":
        assert "did you mean --" in done.stderr


@pytest.mark.parametrize("command", [["config"], ["runs", "--workspace", "."]])
def test_a_reader_that_goes_away_ends_the_command_quietly(command, tmp_path):
    (tmp_path / "runs").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "cifarlib", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    process.stdout.close()  # as `| head` does once it has its lines: every write now fails
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 0 and errors.decode() == ""


def test_predict_gives_evaluates_classes_for_the_same_images(small_archive, tmp_path):
    config = RunConfig.from_preset(
        "reference", data=str(small_archive), epochs=1, width=0.25, batch_size=50, tta=True
    )
    workspace = tmp_path / "ws"
    run_id = train(config, workspace, verbose=0).run_id
    images, _, probabilities = run_predictions(run_id, workspace)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for index in range(12):
        Image.fromarray(images[index]).save(folder / f"{index:02d}.png")  # PNG: the same pixels back
    big = tmp_path / "big.png"
    Image.fromarray(np.kron(images[0], np.ones((2, 2, 1), np.uint8))).save(big)

    done = cifarlib_command("predict", run_id, str(folder), str(big), "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 13
    for index, line in enumerate(lines[:12]):
        expected = int(np.argmax(probabilities[index]))
        assert line == (
            f"{folder / f'{index:02d}.png'}: {cifarlib.data.CLASS_NAMES[expected]} "
            f"{format_accuracy(probabilities[index, expected])}"
        )
    assert lines[12].startswith(f"{big}: ") and lines[12].endswith("(resized from 64x64)")


def test_predict_names_a_missing_image_in_one_line(tmp_path):
    done = cifarlib_command(
        "predict", "some-run", str(tmp_path / "nothing.png"), "--workspace", str(tmp_path)
    )
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1


def test_notebooks_copies_the_five_and_keeps_a_users_edits(tmp_path):
    target = tmp_path / "mine"
    done = cifarlib_command("notebooks", str(target))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in target.iterdir()) == [f"{name}.ipynb" for name in NOTEBOOK_NAMES]
    assert done.stdout.split() == [str(target / f"{name}.ipynb") for name in NOTEBOOK_NAMES]
    for name in NOTEBOOK_NAMES:
        nbformat.validate(nbformat.read(target / f"{name}.ipynb", as_version=4))
    # Again: the same files, nothing to refuse.
    assert cifarlib_command("notebooks", str(target)).returncode == 0
    edited = target / "03_train.ipynb"
    edited.write_text(edited.read_text().replace("batch_size", "batch_size ", 1))
    refused = cifarlib_command("notebooks", str(target))
    assert refused.returncode == 1 and "03_train.ipynb" in refused.stderr and "--overwrite" in refused.stderr
    assert "batch_size " in edited.read_text(), "the user's edit is kept"
    assert cifarlib_command("notebooks", str(target), "--overwrite").returncode == 0
    assert edited.read_bytes() == (notebooks_dir() / "03_train.ipynb").read_bytes()
    with pytest.raises(NotADirectoryError, match="not a folder"):
        copy_notebooks(edited)
    assert not [p for p in target.iterdir() if p.name.startswith(".")], "no partial copy left"
