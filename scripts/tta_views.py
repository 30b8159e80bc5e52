"""Score finished runs on their validation split under other test-time view sets than the recipe's.

Usage (from the repository root)::

    python scripts/tta_views.py RUN [RUN ...] [--workspace FOLDER] [--data ARCHIVE]

Each view (one shift, mirrored or not) is predicted once per run from its ``best.keras``; every view set in
``VIEW_SETS`` is then scored from those predictions, averaging the class probabilities (as
``cifarlib.evaluation`` does) and, beside it, the log-probabilities (as airbench averages logits). It prints
one row per view set, one column per run and the mean of the runs. The recipe's own set is the row
``RECIPE_ROW``, read from ``cifarlib.evaluation``; the figures and what they decided are in docs/accuracy.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifarlib.config import RunConfig  # noqa: E402
from cifarlib.evaluation import tta_view_list, view_of  # noqa: E402

_DIAGONAL = [(1, 1), (-1, -1)]
_ANTI_DIAGONAL = [(1, -1), (-1, 1)]
_AXES = [(0, 1), (0, -1), (1, 0), (-1, 0)]


def _both_flips(shifts, weight=1.0):
    return {(dy, dx, mirrored): weight for dy, dx in shifts for mirrored in (False, True)}


_RECIPE = RunConfig.from_preset("tuned")
RECIPE_ROW = "flip, 1-px diagonal shifts (the recipe)"

# A view is (dy, dx, mirrored); each set maps its views to their weights.
VIEW_SETS: dict[str, dict[tuple[int, int, bool], float]] = {
    "one view": {(0, 0, False): 1.0},
    "flip": _both_flips([(0, 0)]),
    # The tuned recipe's own views, read from the library so this row is always what the recipe evaluates.
    RECIPE_ROW: {view: 1.0 for view in tta_view_list(tta=_RECIPE.tta, translate=_RECIPE.tta_translate)},
    # airbench's weighting: half on the unshifted pair, half on the shifted views.
    "the same, weighted 1/2 unshifted, 1/2 shifted": {
        **_both_flips([(0, 0)], 0.25),
        **_both_flips(_DIAGONAL, 0.125),
    },
    "flip, 4 diagonal 1-px shifts": _both_flips([(0, 0), *_DIAGONAL, *_ANTI_DIAGONAL]),
    "flip, 4 axis 1-px shifts": _both_flips([(0, 0), *_AXES]),
    "flip, all 8 1-px shifts": _both_flips([(0, 0), *_DIAGONAL, *_ANTI_DIAGONAL, *_AXES]),
    "flip, 1- and 2-px diagonal shifts": _both_flips([(0, 0), *_DIAGONAL, (2, 2), (-2, -2)]),
}


def needed_views() -> list[tuple[int, int, bool]]:
    """Every view some set in ``VIEW_SETS`` uses, each once."""
    return sorted({view for weights in VIEW_SETS.values() for view in weights})


def predict_views(model, images: np.ndarray, views, batch_size: int = 256) -> dict:
    """``{view: probabilities (N, classes)}`` for each ``(dy, dx, mirrored)`` view of ``images``."""
    predictions = {}
    for view in views:
        predictions[view] = np.asarray(
            model.predict(view_of(images, *view), batch_size=batch_size, verbose=0), dtype=np.float64
        )
    return predictions


def view_set_accuracy(predictions: dict, labels: np.ndarray, weights: dict, *, log: bool = False) -> float:
    """Accuracy (%) of the weighted mean of the views' probabilities, or of their log-probabilities."""
    total = sum(weights.values())
    combined = sum(
        weight * (np.log(np.clip(predictions[view], 1e-12, 1.0)) if log else predictions[view])
        for view, weight in weights.items()
    )
    return float(100 * np.mean(np.argmax(combined / total, axis=1) == np.asarray(labels)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run ids of finished runs in the workspace")
    parser.add_argument("--workspace", default=None, help="the runs' workspace (default: cifarlib's)")
    parser.add_argument("--data", default=None, help="the runs' data source, where it moved since training")
    args = parser.parse_args(argv)

    from cifarlib.data import load_run_splits
    from cifarlib.runs import finished_run, load_best_model

    columns = {}
    for run_id in args.runs:
        run, config = finished_run(run_id, args.workspace, data=args.data)
        _, (images, labels), _ = load_run_splits(config)
        predictions = predict_views(load_best_model(run), images, needed_views())
        columns[run_id] = {
            name: (
                view_set_accuracy(predictions, labels, weights),
                view_set_accuracy(predictions, labels, weights, log=True),
            )
            for name, weights in VIEW_SETS.items()
        }
    print("validation accuracy (%), probabilities averaged / log-probabilities averaged")
    print("runs: " + ", ".join(columns))
    width = max(len(name) for name in VIEW_SETS)
    for name in VIEW_SETS:
        cells = [columns[run_id][name] for run_id in columns]
        shown = "  ".join(f"{p:.2f}/{q:.2f}" for p, q in cells)
        mean = np.mean([p for p, _ in cells]), np.mean([q for _, q in cells])
        print(f"{name:<{width}}  {shown}  mean {mean[0]:.2f}/{mean[1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
