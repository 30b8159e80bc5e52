"""``make bench-accuracy``: the reference recipe against the tuned one, on real CIFAR-10 images, same budget.

Both recipes train on the same fixed, seeded, class-balanced split of the real training images (45,000 train /
5,000 validation by default) for the same number of epochs, through ``train`` like any other run (so each
result is a normal run folder in the workspace, resumable). The table printed at the end has one row per epoch
and one column of validation accuracy per recipe and seed (as Keras measures it during training, one view per
image), then each recipe's final figures with their spread over seeds: the last epoch's accuracy and the same
weights scored with the recipe's test-time augmentation (``final_val_accuracy`` in the run's summary).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from cifarlib.config import RunConfig
from cifarlib.evaluation import describe_tta
from cifarlib.storage import as_workspace
from cifarlib.train import train

log = logging.getLogger(__name__)

# The real training images the project keeps beside the repository (never committed): see shared/data/README.
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg-train.tar.gz"
VALIDATION_FRACTION = 0.1  # 45,000 / 5,000 of the 50,000 training images


def accuracy_benchmark(
    data: str | os.PathLike = DEFAULT_DATA,
    *,
    epochs: int = 10,
    recipes: tuple[str, ...] = ("reference", "tuned"),
    seeds: tuple[int, ...] = (0,),
    workspace: str | os.PathLike = "workspace",
    width: float = 1.0,
    train_size: int | None = None,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Train every recipe x seed and return validation accuracy per epoch (rows) and run (columns).

    ``batch_size`` overrides every recipe's own (quick tests); by default each recipe trains at its preset's.
    """
    data = Path(data).expanduser().resolve()
    if not data.exists():
        raise FileNotFoundError(
            f"{data}: the real CIFAR-10 training images are not here; the accuracy benchmark needs them "
            "(see shared/data/README.md), so it was skipped"
        )
    workspace = as_workspace(workspace)
    columns, final, tta = {}, {}, {}
    for recipe in recipes:
        for seed in seeds:
            overrides = {"batch_size": batch_size} if batch_size else {}
            config = RunConfig.from_preset(
                recipe,
                data=str(data),
                epochs=epochs,
                seed=seed,
                width=width,
                train_size=train_size,
                validation_fraction=VALIDATION_FRACTION,
                **overrides,
            )
            run_id = (
                f"bench-accuracy-{recipe}-w{width:g}-e{epochs}-s{seed}"
                + (f"-n{train_size}" if train_size else "")
                + (f"-b{batch_size}" if batch_size else "")
            )
            log.warning("Training %s (recipe %s, seed %d)", run_id, recipe, seed)
            result = train(config, workspace, run_id=run_id, verbose=2)
            history = result.history.set_index("epoch")
            column = f"{recipe} s{seed}"
            columns[column] = history["val_accuracy"]
            columns[f"{column} s/epoch"] = history["seconds"]
            final[column] = result.summary.get("final_val_accuracy")
            tta[recipe] = describe_tta(
                bool(result.summary.get("tta")), result.summary.get("tta_translate", 0)
            )
    table = pd.DataFrame(columns)
    # Per-run scalars ride along with the per-epoch table (None for runs finished by an older cifarlib).
    table.attrs["final_val_accuracy"] = final
    table.attrs["tta"] = tta
    return table


def format_accuracy_table(table: pd.DataFrame) -> str:
    """Per-epoch validation accuracy (percent), then each recipe's final figures with their spread over seeds."""
    final, tta = table.attrs.get("final_val_accuracy", {}), table.attrs.get("tta", {})
    accuracy = table[[c for c in table if not c.endswith("s/epoch")]]
    lines = [(accuracy * 100).round(2).to_string(), ""]
    recipes = sorted({c.split(" ")[0] for c in accuracy})
    for recipe in recipes:
        last = accuracy[[c for c in accuracy if c.split(" ")[0] == recipe]].iloc[-1] * 100
        seconds = table[[c for c in table if c.startswith(recipe) and c.endswith("s/epoch")]].mean().mean()
        lines.append(
            f"{recipe:>6}: {_mean_and_spread(list(last))} validation accuracy after {len(accuracy)} epochs, "
            f"{seconds:.0f} s/epoch"
        )
        scored = [final.get(c) for c in last.index]
        if scored and all(v is not None for v in scored):
            lines.append(
                f"{'':>6}  {_mean_and_spread([100 * v for v in scored])} with the recipe's evaluation "
                f"({tta.get(recipe, 'no test-time augmentation')}), same weights"
            )
    return "\n".join(lines)


def _mean_and_spread(percentages: list[float]) -> str:
    """``"81.94% (seeds 82.50, 81.38; spread 1.12)"``, or just ``"82.50%"`` for one seed."""
    mean = f"{sum(percentages) / len(percentages):.2f}%"
    if len(percentages) == 1:
        return mean
    seeds = ", ".join(f"{v:.2f}" for v in percentages)
    return f"{mean} (seeds {seeds}; spread {max(percentages) - min(percentages):.2f})"
