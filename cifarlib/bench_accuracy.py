"""``make bench-accuracy``: the reference recipe against the tuned one, on real CIFAR-10 images, same budget.

Both recipes train on the same fixed, seeded, class-balanced split of the real training images (45,000 train /
5,000 validation by default) for the same number of epochs, through ``train`` like any other run (so each
result is a normal run folder in the workspace, resumable). The table printed at the end has one row per epoch
and one column of validation accuracy per recipe and seed, then the final figures with their spread over seeds.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from cifarlib.config import RunConfig
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
    recipes: tuple[str, ...] = ("seed", "tuned"),
    seeds: tuple[int, ...] = (0,),
    workspace: str | os.PathLike = "workspace",
    width: float = 1.0,
    train_size: int | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Train every recipe x seed and return validation accuracy per epoch (rows) and run (columns)."""
    data = Path(data).expanduser().resolve()
    if not data.exists():
        raise FileNotFoundError(
            f"{data}: the real CIFAR-10 training images are not here; the accuracy benchmark needs them "
            "(see shared/data/README.md), so it was skipped"
        )
    workspace = as_workspace(workspace)
    columns = {}
    for recipe in recipes:
        for seed in seeds:
            config = RunConfig.from_preset(
                recipe, data=str(data), epochs=epochs, seed=seed, width=width, train_size=train_size,
                batch_size=batch_size, validation_fraction=VALIDATION_FRACTION,
            )
            run_id = f"bench-accuracy-{recipe}-w{width:g}-e{epochs}-s{seed}" + (f"-n{train_size}" if train_size else "")
            log.warning("Training %s (recipe %s, seed %d)", run_id, recipe, seed)
            result = train(config, workspace, run_id=run_id, verbose=2)
            history = result.history.set_index("epoch")
            columns[f"{recipe} s{seed}"] = history["val_accuracy"]
            columns[f"{recipe} s{seed} s/epoch"] = history["seconds"]
    return pd.DataFrame(columns)


def format_accuracy_table(table: pd.DataFrame) -> str:
    """Per-epoch validation accuracy (percent) and seconds, then each recipe's last-epoch mean and spread."""
    accuracy = table[[c for c in table if not c.endswith("s/epoch")]]
    lines = [(accuracy * 100).round(2).to_string(), ""]
    recipes = sorted({c.split(" ")[0] for c in accuracy})
    for recipe in recipes:
        last = accuracy[[c for c in accuracy if c.split(" ")[0] == recipe]].iloc[-1] * 100
        spread = f" (seeds {', '.join(f'{v:.2f}' for v in last)}; spread {last.max() - last.min():.2f})" if len(last) > 1 else ""
        seconds = table[[c for c in table if c.startswith(recipe) and c.endswith("s/epoch")]].mean().mean()
        lines.append(f"{recipe:>6}: {last.mean():.2f}% validation accuracy after {len(accuracy)} epochs{spread}, "
                     f"{seconds:.0f} s/epoch")
    return "\n".join(lines)
