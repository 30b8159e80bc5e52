"""How figures are shown to people: one format for accuracy in every table, message and plot.

Accuracy is stored as a share in [0, 1] (as Keras reports it); people read it as a percentage with two
decimals. This module imports nothing from cifarlib, so training, the command line and the plots can all use it
without closing an import loop.
"""

from __future__ import annotations

import math

ACCURACY_DECIMALS = 2
ACCURACY_UNIT = "%"


def format_accuracy(value: float | None, *, missing: str = "") -> str:
    """A share in [0, 1] as a percentage with two decimals (``0.87324`` -> ``"87.32%"``); ``missing`` for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{100 * float(value):.{ACCURACY_DECIMALS}f}{ACCURACY_UNIT}"


def as_percent(value: float) -> float:
    """A share in [0, 1] as the number plotted on a percent axis."""
    return 100 * float(value)
