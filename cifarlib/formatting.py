"""How figures are shown to people: one format for accuracy in every table, message and plot, and the line
that says how an epoch went (printed by training and by a sweep watching its runs).

Accuracy is stored as a share in [0, 1] (as Keras reports it); people read it as a percentage with two
decimals. This module imports nothing from cifarlib, so training, the command line and the plots can all use it
without closing an import loop.
"""

from __future__ import annotations

import math

ACCURACY_DECIMALS = 2
ACCURACY_UNIT = "%"
# The history column that marks the first epoch of each start of a run (see cifarlib.timings).
FIRST_OF_START = "first_epoch_of_start"
# What an epoch's logs hold beside its metrics (cifarlib.callbacks.EpochTimer puts them there): said apart.
SAID_APART = ("seconds", "learning_rate", FIRST_OF_START)


def format_accuracy(value: float | None, *, missing: str = "") -> str:
    """A share in [0, 1] as a percentage with two decimals (``0.87324`` -> ``"87.32%"``); ``missing`` for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{100 * float(value):.{ACCURACY_DECIMALS}f}{ACCURACY_UNIT}"


def as_percent(value: float) -> float:
    """A share in [0, 1] as the number plotted on a percent axis."""
    return 100 * float(value)


def describe_epoch(epoch: int, epochs: int, logs: dict) -> str:
    """``epoch 3/10: loss 0.6354, accuracy 98.22%, validation loss 5.0307, validation accuracy 10.00%; 1.4 s,
    learning rate 0.05``."""
    # Training before validation, loss before accuracy, as Keras's own line would read if it were sorted.
    names = sorted(
        (name for name in logs if name not in SAID_APART),
        key=lambda name: (name.startswith("val_"), name.removeprefix("val_") != "loss", name),
    )
    metrics = ", ".join(
        f"{name.replace('val_', 'validation ')} "
        f"{format_accuracy(logs[name]) if name.endswith('accuracy') else f'{logs[name]:.4f}'}"
        for name in names
    )
    timing = []
    if "seconds" in logs:
        timing.append(f"{logs['seconds']:.1f} s")
    if "learning_rate" in logs:
        timing.append(f"learning rate {logs['learning_rate']:.3g}")
    return f"epoch {epoch}/{epochs}: {metrics}" + (f"; {', '.join(timing)}" if timing else "")


def format_duration(seconds: float | None) -> str:
    """``"48 s"``, ``"12 min"``, ``"2 h 05 min"``: a time to wait, to the precision anyone plans with."""
    if seconds is None or math.isnan(seconds):
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
