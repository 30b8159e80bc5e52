"""The command line as a user meets it: --version, grouped help, mistyped flags, pipes, predict, notebooks."""

import logging
import os
import re
import subprocess
import sys
import zipfile

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


@pytest.fixture(scope="module")
def trained(small_archive, tmp_path_factory):
    """One short run with flip test-time augmentation: (its workspace, its run id)."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CIFARLIB_STAGING", str(root / "staging"))
        config = RunConfig.from_preset(
            "reference", data=str(small_archive), epochs=1, width=0.25, batch_size=50, tta=True
        )
        return root / "ws", train(config, root / "ws", verbose=0).run_id


def test_predict_gives_evaluates_classes_for_the_same_images(trained, tmp_path):
    workspace, run_id = trained
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


def test_the_readmes_export_serves_the_networks_probabilities(trained, tmp_path):
    import keras
    import tensorflow as tf

    workspace, run_id = trained
    images, _, _ = run_predictions(run_id, workspace)
    network = keras.models.load_model(workspace / "runs" / run_id / "best.keras")
    network.export(str(tmp_path / "exported"))  # as the README says
    served = tf.saved_model.load(str(tmp_path / "exported"))
    raw = images[:6].astype("float32")  # raw 0-255 pixels, as the README says
    np.testing.assert_allclose(served.serve(raw).numpy(), network.predict(raw, verbose=0), atol=1e-5)


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


@pytest.fixture
def offline(monkeypatch):
    """No network: CIFAR-10's site cannot be reached and nothing is cached."""
    import cifarlib.__main__ as cli
    import cifarlib.data

    def unreachable(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(cli.socket, "create_connection", unreachable)
    monkeypatch.setattr(cifarlib.data, "official_archive_cached", lambda cache_dir=None: False)
    yield cli
    logging.getLogger("cifarlib.data").filters.clear()


def test_offline_fallback_says_so_in_one_line(offline, tmp_path, capsys, caplog):
    arguments = ["train", "--data", "keras", "--fallback-synthetic", "--epochs", "1", "--train-size", "200"]
    assert offline.main([*arguments, "--width", "0.25", "--workspace", str(tmp_path / "W")]) == 0
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [
        "no network (www.cs.toronto.edu cannot be reached): training on SYNTHETIC data, whose accuracy says "
        "nothing about CIFAR-10"
    ]
    assert not [record for record in caplog.records if "SYNTHETIC" in record.getMessage()]


def test_a_complete_run_on_keras_data_asks_no_network(offline, tmp_path, monkeypatch, capsys):
    import cifarlib.__main__ as cli

    arguments = ["--data", "keras", "--epochs", "1", "--train-size", "200", "--width", "0.25"]
    config = cli._config_from_flags(cli.build_parser("train").parse_args(["train", *arguments]))
    run = tmp_path / "W" / "runs" / cifarlib.train.settings_run_id(config)
    run.mkdir(parents=True)
    (run / "config.json").write_text(config.to_json())
    (run / "summary.json").write_text('{"epochs_run": 1, "best_epoch": 1, "test_accuracy": 0.5}')
    with zipfile.ZipFile(run / "best.keras", "w") as best:  # stands for the saved model: an intact zip
        best.writestr("config.json", "{}")

    def no_download(*args, **kwargs):
        raise AssertionError("asked the network for a run that is complete")

    monkeypatch.setattr(offline.socket, "create_connection", no_download)
    monkeypatch.setattr(cifarlib.data, "download_official", no_download)
    assert (
        offline.main(["train", *arguments, "--fallback-synthetic", "--workspace", str(tmp_path / "W")]) == 0
    )
    assert "already complete" in capsys.readouterr().out


def test_ctrl_c_during_start_up_is_one_line_without_resume_advice(tiny_archive, tmp_path):
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "cifarlib", "train", "--data", str(tiny_archive), "--width", "0.25"]
        + ["--epochs", "2", "--workspace", str(tmp_path / "W")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(1.0)  # while TensorFlow loads
    os.killpg(process.pid, signal.SIGINT)
    out, errors = process.communicate(timeout=120)
    assert process.returncode == 130
    assert errors.splitlines() == ["cifarlib train: interrupted"], errors[-3000:]
    assert not (tmp_path / "W" / "runs").exists() or not list((tmp_path / "W" / "runs").iterdir())


@pytest.mark.parametrize("command", ["runs", "plots"])
def test_an_empty_default_workspace_points_to_the_local_one(command, tmp_path):
    (tmp_path / "workspace" / "runs" / "tuned-b64-e2-0123456789").mkdir(parents=True)
    home = tmp_path / "home"
    done = cifarlib_command(command, cwd=tmp_path, env={**os.environ, "CIFARLIB_HOME": str(home)})
    said = done.stdout + done.stderr
    assert "add --workspace workspace" in said, said
    assert str(home) in said, "it still says where it looked"
