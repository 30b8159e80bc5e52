"""Resuming without foresight: the same settings name the same run, so running them again after a disconnect
continues the unfinished run (and says so first), and a completed run says it is complete and how to retrain."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from cifarlib import storage
from cifarlib.config import RunConfig
from cifarlib.errors import DataError, RunConfigError
from cifarlib.runs import evaluate_run
from cifarlib.train import DEVICE_FIELDS, settings_run_id, train

SMALL = dict(width=0.25, batch_size=50, validation_fraction=0.2, epochs=1)


@pytest.fixture
def staging(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))


def test_the_default_run_id_comes_from_the_settings():
    config = RunConfig.from_preset("tuned", data="synthetic", epochs=3)
    run_id = settings_run_id(config)
    assert storage.check_run_id(run_id) == run_id and run_id.startswith(f"tuned-b{config.batch_size}-e3-")
    assert settings_run_id(RunConfig.from_preset("tuned", data="synthetic", epochs=3)) == run_id
    for other in (
        dict(epochs=4),
        dict(seed=1),
        dict(width=0.5),
        dict(data="keras"),
        dict(learning_rate=0.0123),
    ):
        assert settings_run_id(config.replace(**other)) != run_id, other
    # How to run on this machine is not what to train: a new runtime resumes the same run.
    device_only = dict(precision="float32", jit_compile=False, distribute="none")
    assert set(device_only) == set(DEVICE_FIELDS)
    assert settings_run_id(config.replace(**device_only)) == run_id


def test_default_run_ids_of_runs_started_before_the_pooling_plan_existed_are_unchanged():
    """Ids that cifarlib derived before ``pool_after`` was a setting, so the same command still resumes those runs."""
    # The tuned recipe as it was then (before its stem and plan changed, which makes a new network and a new id).
    assert (
        settings_run_id(
            RunConfig.from_preset("tuned", data="synthetic", epochs=3, stem="none", pool_after=None)
        )
        == "tuned-b64-e3-4e1d0d86ea"
    )
    assert settings_run_id(RunConfig.from_preset("reference", data="synthetic", epochs=3)) == (
        "reference-b256-e3-a028f1199e"
    )
    # A plan other than the reference's is a different network, so a different run.
    config = RunConfig.from_preset("tuned", data="synthetic", epochs=3)
    assert settings_run_id(config.replace(pool_after=(0, 2, 4))) != settings_run_id(config)


def test_whole_numbers_in_float_settings_give_the_same_run_id():
    as_ints = RunConfig.from_preset("tuned", data="synthetic", width=1, ema_momentum=0, learning_rate=1)
    as_floats = RunConfig.from_preset(
        "tuned", data="synthetic", width=1.0, ema_momentum=0.0, learning_rate=1.0
    )
    assert settings_run_id(as_ints) == settings_run_id(as_floats)
    assert json.loads(as_ints.to_json())["width"] == 1.0 and isinstance(as_ints.width, float)
    assert isinstance(as_ints.epochs, int)  # integer settings stay integers


def test_a_data_path_is_one_setting_however_it_is_typed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = RunConfig.from_preset("tuned", data="cifar.tar.gz")
    assert config.data == os.path.join(os.getcwd(), "cifar.tar.gz")
    for spelling in ("./cifar.tar.gz", "sub/../cifar.tar.gz", "~/cifar.tar.gz", config.data):
        assert settings_run_id(config.replace(data=spelling)) == settings_run_id(config), spelling
    assert settings_run_id(config.replace(data="other.tar.gz")) != settings_run_id(config)
    assert [RunConfig.from_preset("tuned", data=name).data for name in ("keras", "synthetic")] == [
        "keras",
        "synthetic",
    ]


def test_a_run_given_a_relative_data_path_is_evaluated_from_another_folder(
    small_archive, tmp_path, staging, monkeypatch
):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir(), elsewhere.mkdir()
    shutil.copy(small_archive, project / "cifar.tar.gz")
    monkeypatch.chdir(project)
    result = train(
        RunConfig.from_preset("reference", data="cifar.tar.gz", **SMALL), tmp_path / "ws", verbose=0
    )
    monkeypatch.chdir(elsewhere)
    scores = evaluate_run(result.run_id, tmp_path / "ws", split="validation")
    assert scores["images"] == 100 and scores["accuracy"] == pytest.approx(
        result.summary["best_val_accuracy"]
    )
    # A run stored with the path as typed (as before paths were made absolute) is found from its own folder only;
    # from elsewhere the error says how to name its images.
    config_file = tmp_path / "ws" / "runs" / result.run_id / storage.CONFIG_FILE
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "data": "cifar.tar.gz"}))
    with pytest.raises(
        DataError, match=rf"^run '{result.run_id}': .*cifar.tar.gz: no such file.*\(--data\)$"
    ):
        evaluate_run(result.run_id, tmp_path / "ws", split="validation")
    named = evaluate_run(
        result.run_id, tmp_path / "ws", split="validation", data=str(project / "cifar.tar.gz")
    )
    assert named["accuracy"] == scores["accuracy"]


def test_a_run_started_when_relative_data_paths_were_stored_as_typed_resumes(
    small_archive, tmp_path, staging, monkeypatch, capsys
):
    """Its id hashed the path as typed: the same command, from the same folder, still finds and resumes it."""
    monkeypatch.chdir(small_archive.parent)
    config = RunConfig.from_preset("reference", data=small_archive.name, **SMALL)
    workspace = storage.open_workspace(tmp_path / "ws")
    # What such a run left after a disconnect before its first epoch: its folder and its settings as typed.
    earlier = workspace.run("reference-b50-e1-ed83e7edb6")
    earlier.path.mkdir(parents=True)
    stored = {**config.to_dict(), "data": small_archive.name}
    (earlier.path / storage.CONFIG_FILE).write_text(json.dumps(stored))
    result = train(config, workspace, verbose=2)
    assert (
        capsys.readouterr()
        .out.splitlines()[0]
        .startswith(f"run {earlier.run_id}: resuming the unfinished run after epoch 0 of 1")
    )
    assert result.run_id == earlier.run_id
    assert [path.name for path in workspace.runs_dir.iterdir()] == [earlier.run_id]


def test_running_the_same_settings_again_resumes_then_reports_complete(
    small_archive, tmp_path, staging, capsys
):
    config = RunConfig.from_preset("reference", data=str(small_archive), **SMALL)
    workspace = storage.open_workspace(tmp_path / "ws")
    # What a disconnect before the first finished epoch leaves: the run folder with its settings.
    unfinished = workspace.run(settings_run_id(config))
    unfinished.path.mkdir(parents=True)
    (unfinished.path / storage.CONFIG_FILE).write_text(config.to_json())

    first = train(config, workspace, verbose=2)
    assert capsys.readouterr().out.splitlines()[0] == (
        f"run {unfinished.run_id}: resuming the unfinished run after epoch 0 of 1 in {unfinished.path}"
    )
    assert first.run_id == unfinished.run_id and first.summary["epochs_run"] == 1

    again = train(config.replace(precision="float32"), workspace, verbose=2)
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"run {unfinished.run_id}: already complete (1 epochs)")
    assert "retrain=True (--retrain)" in line and "new run_id (--run-id)" in line
    assert again.summary == first.summary
    # verbose=0 silences cifarlib's own lines too.
    train(config, workspace, verbose=0)
    assert capsys.readouterr().out == ""
    assert [path.name for path in workspace.runs_dir.iterdir()] == [unfinished.run_id]


def test_a_new_run_says_so_first(small_archive, tmp_path, staging, capsys):
    config = RunConfig.from_preset("reference", data=str(small_archive), **SMALL)
    result = train(config, tmp_path / "ws", verbose=2)
    assert (
        capsys.readouterr().out.splitlines()[0]
        == f"run {result.run_id}: new run of 1 epochs in {result.run_dir}"
    )


def test_resuming_on_another_replica_count_is_refused(small_archive, tmp_path, staging):
    config = RunConfig.from_preset("reference", data=str(small_archive), **SMALL)
    workspace = storage.open_workspace(tmp_path / "ws")
    # An unfinished run started on two replicas (a pair of GPUs), resumed here on one device.
    unfinished = workspace.run(settings_run_id(config))
    unfinished.path.mkdir(parents=True)
    record = {**config.to_dict(), "replicas": 2, "global_batch_size": 2 * config.batch_size}
    (unfinished.path / storage.CONFIG_FILE).write_text(json.dumps(record))
    written = (unfinished.path / storage.CONFIG_FILE).read_text()
    with pytest.raises(RunConfigError, match=r"started on 2 replica\(s\) and would resume on 1") as caught:
        train(config, workspace, verbose=0)
    assert "distribute=" in str(caught.value) and "\n" not in str(caught.value)
    assert (unfinished.path / storage.CONFIG_FILE).read_text() == written


def test_a_new_run_records_its_replica_count(small_archive, tmp_path, staging):
    config = RunConfig.from_preset("reference", data=str(small_archive), **SMALL)
    result = train(config, tmp_path / "ws", verbose=0)
    stored = json.loads((result.run_dir / storage.CONFIG_FILE).read_text())
    assert stored["replicas"] == 1 and stored["global_batch_size"] == config.batch_size


def test_retrain_resumes_an_unfinished_run(small_archive, tmp_path, staging, capsys):
    # An interrupted retrain, started again with the same call, continues rather than wiping the run again.
    config = RunConfig.from_preset("reference", data=str(small_archive), **SMALL)
    workspace = storage.open_workspace(tmp_path / "ws")
    unfinished = workspace.run(settings_run_id(config))
    unfinished.path.mkdir(parents=True)
    (unfinished.path / storage.CONFIG_FILE).write_text(config.to_json())
    marker = unfinished.path / "kept.txt"
    marker.write_text("the unfinished run's own file")
    result = train(config, workspace, retrain=True, verbose=2)
    assert capsys.readouterr().out.splitlines()[0].startswith(f"run {unfinished.run_id}: resuming")
    assert marker.is_file() and result.summary["epochs_run"] == 1
    # Finished, the same call retrains it from scratch.
    train(config, workspace, retrain=True, verbose=2)
    assert capsys.readouterr().out.splitlines()[0].startswith(f"run {unfinished.run_id}: new run")
    assert not marker.exists()


@pytest.mark.parametrize("verbose", [3, "yes", True, None])
def test_verbose_is_checked_first(tmp_path, verbose):
    config = RunConfig.from_preset("reference", data=str(tmp_path / "absent.tar.gz"), **SMALL)
    with pytest.raises(ValueError, match=r"^verbose must be one of \(0, 1, 2, 'auto'\), got "):
        train(config, tmp_path / "ws", verbose=verbose)
    assert not (tmp_path / "ws").exists()
