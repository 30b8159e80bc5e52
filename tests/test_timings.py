"""Seconds per epoch that mean speed: the first epoch of each start (tracing, compilation) is counted apart."""

import json

import pandas as pd
import pytest
from interruptions import TINY, Interrupted, StopAfter

from cifarlib.config import RunConfig
from cifarlib.formatting import FIRST_OF_START, format_duration
from cifarlib.timings import epoch_timings
from cifarlib.train import train


@pytest.fixture(autouse=True)
def staging(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))


def test_steady_seconds_are_the_median_after_the_first_epoch_of_each_start():
    # A run started, stopped after epoch 2, resumed: epochs 1 and 3 compiled.
    history = pd.DataFrame(
        {"epoch": [1, 2, 3, 4, 5], "seconds": [20.1, 3.8, 29.3, 4.0, 4.2], FIRST_OF_START: [1, 0, 1, 0, 0]}
    )
    timings = epoch_timings(history)
    assert timings["seconds_per_epoch"] == pytest.approx(4.0)
    assert timings["startup_seconds"] == pytest.approx((20.1 - 4.0) + (29.3 - 4.0))
    assert timings["total_seconds"] == pytest.approx(61.4)
    # A history from before the column: its first epoch is its one start.
    older = epoch_timings(history.drop(columns=[FIRST_OF_START]))
    assert older["seconds_per_epoch"] == pytest.approx(4.1)
    # One epoch per start: no steady epoch to measure, and no start-up figure pretended.
    single = epoch_timings(pd.DataFrame({"seconds": [12.0], FIRST_OF_START: [1]}))
    assert single["seconds_per_epoch"] == 12.0 and pd.isna(single["startup_seconds"])


def test_a_resumed_run_marks_each_start_and_reports_steady_seconds(tmp_path, capsys):
    config = RunConfig(epochs=6, **TINY)
    workspace = tmp_path / "ws"
    with pytest.raises(Interrupted):
        train(config, workspace, run_id="r", verbose=2, callbacks=[StopAfter(3)])
    first_start = capsys.readouterr().out
    result = train(config, workspace, run_id="r", verbose=2)
    second_start = capsys.readouterr().out
    history = result.history
    assert list(history[FIRST_OF_START]) == [1, 0, 0, 1, 0, 0]
    steady = history["seconds"][history[FIRST_OF_START] == 0].median()
    summary = json.loads((workspace / "runs" / "r" / "summary.json").read_text())
    assert summary["seconds_per_epoch"] == pytest.approx(steady)
    assert summary["startup_seconds"] == pytest.approx(
        sum(max(0.0, s - steady) for s in history["seconds"][history[FIRST_OF_START] == 1])
    )
    # The second epoch of each start says what the rest will take at the speed it measured.
    epoch_2 = history["seconds"].iloc[1]
    assert f"at {epoch_2:.1f} s per epoch, the 4 epochs left take about {format_duration(4 * epoch_2)}" in (
        first_start
    )
    assert "the 1 epoch left takes about" in second_start
    assert first_start.count("left take about") == 1 and second_start.count("left takes about") == 1


def test_durations_read_as_people_plan():
    assert format_duration(48) == "48 s"
    assert format_duration(12 * 60) == "12 min"
    assert format_duration(125 * 60) == "2 h 05 min"
    assert format_duration(float("nan")) == "unknown"
