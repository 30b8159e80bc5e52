"""Saved files damaged after they were written: nothing good is overwritten, and each damage gets one clear line."""

import json
import shutil

import keras
import pandas as pd
import pytest
from interruptions import TINY, Interrupted, StopAfter

from cifarlib import storage
from cifarlib.config import RunConfig
from cifarlib.errors import WorkspaceError
from cifarlib.train import train


class EpochsTrained(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch + 1)


def interrupted(tmp_path, epochs: int, stop_after: int):
    """A run of ``epochs`` stopped after epoch ``stop_after``: its config, workspace and folder."""
    config = RunConfig(epochs=epochs, **TINY)
    workspace = tmp_path / "ws"
    with pytest.raises(Interrupted):
        train(config, workspace, run_id="u", verbose=0, callbacks=[StopAfter(stop_after)])
    return config, workspace, workspace / "runs" / "u"


def cut_in_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(autouse=True)
def staging(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))


def test_an_empty_summary_in_an_unfinished_run_keeps_the_backup_and_resumes(tmp_path):
    config, workspace, run = interrupted(tmp_path, epochs=6, stop_after=3)
    (run / "summary.json").write_text("")
    trained = EpochsTrained()
    result = train(config, workspace, run_id="u", verbose=0, callbacks=[trained])
    assert trained.epochs == [4, 5, 6]
    assert list(result.history["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 6
    assert (run / "summary.json.damaged").read_text() == ""


def test_a_backup_deleted_by_hand_is_named_instead_of_a_false_resume(tmp_path):
    config, workspace, run = interrupted(tmp_path, epochs=6, stop_after=3)
    shutil.rmtree(run / "backup")
    with pytest.raises(WorkspaceError, match="history.csv records 3 finished epochs but backup/ is missing"):
        train(config, workspace, run_id="u", verbose=0)
    assert len(pd.read_csv(run / "history.csv")) == 3


def test_a_damaged_summary_without_a_backup_says_how_to_train_again(tmp_path):
    config = RunConfig(epochs=1, **TINY)
    train(config, tmp_path / "ws", run_id="u", verbose=0)
    run = tmp_path / "ws" / "runs" / "u"
    (run / "summary.json").write_text('{"epochs_run": 1,')
    with pytest.raises(WorkspaceError, match=r"summary.json: damaged .*run again with --retrain"):
        train(config, tmp_path / "ws", run_id="u", verbose=0)
    assert train(config, tmp_path / "ws", run_id="u", verbose=0, retrain=True).summary["epochs_run"] == 1


def test_a_damaged_backup_best_model_is_restored_from_the_intact_copy_not_copied_over_it(tmp_path):
    config, workspace, run = interrupted(tmp_path, epochs=3, stop_after=3)
    good = (run / "best.keras").read_bytes()
    cut_in_half(run / "backup" / "best.keras")
    result = train(config, workspace, run_id="u", verbose=0)
    assert result.summary["epochs_run"] == 3
    assert (run / "best.keras").read_bytes() == good
    keras.saving.load_model(run / "best.keras")


@pytest.mark.parametrize("name", ["latest.weights.h5", "training_metadata.json", "cifarlib_callbacks.json"])
def test_a_damaged_resume_file_is_named_with_how_to_start_again(tmp_path, name):
    config, workspace, run = interrupted(tmp_path, epochs=4, stop_after=2)
    cut_in_half(run / "backup" / name)
    with pytest.raises(WorkspaceError) as error:
        train(config, workspace, run_id="u", verbose=0)
    message = str(error.value)
    assert f"backup/{name}: damaged" in message and "delete the run folder" in message
    assert "\n" not in message


def test_a_partial_last_history_row_in_the_backup_is_not_accepted(tmp_path):
    config, workspace, run = interrupted(tmp_path, epochs=4, stop_after=2)
    rows = (run / "backup" / "history.csv").read_text().splitlines()
    rows[-1] = rows[-1].rsplit(",", 1)[0] + ","  # the last value (the learning rate) cut away
    (run / "backup" / "history.csv").write_text("\n".join(rows) + "\n")
    result = train(config, workspace, run_id="u", verbose=0)
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert not history.isna().any(axis=None)
    assert list(result.history["epoch"]) == [1, 2, 3, 4]


def test_a_completed_run_with_a_damaged_model_is_not_reported_complete(tmp_path):
    config = RunConfig(epochs=1, **TINY)
    train(config, tmp_path / "ws", run_id="u", verbose=0)
    best = tmp_path / "ws" / "runs" / "u" / storage.BEST_MODEL_FILE
    cut_in_half(best)
    with pytest.raises(WorkspaceError, match=r"is complete but its .*best.keras is damaged.*--retrain"):
        train(config, tmp_path / "ws", run_id="u", verbose=0)
    train(config, tmp_path / "ws", run_id="u", verbose=0, retrain=True)
    keras.saving.load_model(best)


@pytest.fixture(scope="module")
def two_finished_runs(tmp_path_factory):
    """A workspace with two finished runs, "damaged" and "whole" (copied by each test that damages it)."""
    folder = tmp_path_factory.mktemp("finished")
    config = RunConfig(epochs=3, **TINY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CIFARLIB_STAGING", str(folder / "staging"))
        train(config, folder / "ws", run_id="damaged", verbose=0)
        train(config.replace(seed=1), folder / "ws", run_id="whole", verbose=0)
    return folder / "ws"


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: "\n".join(text.splitlines()[:2]) + "\n",  # rows lost
        lambda text: text.replace(text.splitlines()[1].split(",")[1], "0.5", 1),  # a value changed
        lambda text: text.rstrip("\n").rsplit(",", 1)[0] + ",\n",  # the last row cut short
    ],
    ids=["rows-lost", "value-changed", "row-cut"],
)
def test_a_damaged_history_in_a_finished_run_is_named_and_the_other_runs_are_drawn(
    tmp_path, two_finished_runs, damage, caplog
):
    from cifarlib.results import plot_curves, runs_table
    from cifarlib.runs import evaluate_run

    workspace = tmp_path / "ws"
    shutil.copytree(two_finished_runs, workspace)
    history = workspace / "runs" / "damaged" / "history.csv"
    history.write_text(damage(history.read_text()))
    with caplog.at_level("WARNING"):
        table = runs_table(workspace)
    warnings = [r.getMessage() for r in caplog.records if "history.csv is damaged" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("run damaged:")
    figure = plot_curves(workspace, table)
    assert len(figure.axes[0].lines) == 2  # the whole run's training and validation loss only
    caplog.clear()
    with caplog.at_level("WARNING"):
        evaluate_run("damaged", workspace, split="validation")
    assert any("run damaged: history.csv is damaged" in r.getMessage() for r in caplog.records)


def test_a_whole_history_raises_no_warning(tmp_path, two_finished_runs, caplog):
    from cifarlib.results import plot_curves, runs_table

    with caplog.at_level("WARNING"):
        table = runs_table(two_finished_runs)
    assert not [r for r in caplog.records if "damaged" in r.getMessage()]
    assert len(plot_curves(two_finished_runs, table).axes[0].lines) == 4
