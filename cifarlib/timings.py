"""Seconds per epoch that mean speed.

The first epoch of every start of a run (the first run, and each resume) also traces and compiles the training
step, so it can take several times as long as the epochs after it. A run's speed is therefore the **median of the
epochs after the first of each start** (``seconds_per_epoch``), and what the starts cost beyond that is given
apart (``startup_seconds``). ``cifarlib.callbacks.EpochTimer`` marks those first epochs in the history, in the
column ``FIRST_OF_START``; a history written before the column existed has its first epoch taken as its only
start.
"""

from __future__ import annotations

import pandas as pd

from cifarlib.formatting import FIRST_OF_START


def first_epochs_of_starts(history: pd.DataFrame) -> pd.Series:
    """True for each epoch that began a start of the run (the only epochs that include compilation)."""
    if FIRST_OF_START in history:
        return history[FIRST_OF_START].fillna(0).astype(float) > 0
    return pd.Series([index == 0 for index in range(len(history))], index=history.index)


def epoch_timings(history: pd.DataFrame) -> dict[str, float]:
    """``seconds_per_epoch`` (steady state), ``startup_seconds`` and ``total_seconds`` of a run's history.

    Where no epoch follows a start (every start ran one epoch), the steady speed is unknown: ``seconds_per_epoch``
    is then the median of all epochs, compilation included, and ``startup_seconds`` is NaN.
    """
    nan = float("nan")
    if history.empty or "seconds" not in history:
        return {"seconds_per_epoch": nan, "startup_seconds": nan, "total_seconds": nan}
    seconds = history["seconds"].astype(float)
    first = first_epochs_of_starts(history)
    steady = seconds[~first]
    if steady.empty:
        return {
            "seconds_per_epoch": float(seconds.median()),
            "startup_seconds": nan,
            "total_seconds": float(seconds.sum()),
        }
    per_epoch = float(steady.median())
    return {
        "seconds_per_epoch": per_epoch,
        # Never below zero: a first epoch a little faster than the median costs nothing extra.
        "startup_seconds": float(sum(max(0.0, s - per_epoch) for s in seconds[first])),
        "total_seconds": float(seconds.sum()),
    }
