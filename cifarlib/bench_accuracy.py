"""``make bench-accuracy``: the reference recipe against the tuned one, on real CIFAR-10 images, same budget.

Both recipes train on the same fixed, seeded, class-balanced split of the real training images (45,000 train /
5,000 validation by default) for the same number of epochs, through ``train`` like any other run (so each
result is a normal run folder in the workspace, resumable). The table printed at the end has one row per epoch
and one column of validation accuracy per recipe and seed (as Keras measures it during training, one view per
image), then each recipe's final figures with their spread over seeds: the last epoch's accuracy and the same
weights scored with the recipe's test-time augmentation (``final_val_accuracy`` in the run's summary), its
seconds per epoch and total training time, and its network's parameters and multiply-adds per image.

A recipe is a preset's name, optionally followed by changed settings: ``tuned+ema_momentum=0.99+flip=alternate``
is the tuned recipe with an EMA of the weights and alternating flips. So measuring one change at a time is one
command, ``--recipes tuned,tuned+ema_momentum=0.99``, and the unchanged recipe's runs, already finished, are
reused rather than trained again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cifarlib.config import RunConfig, setting_accepts_none
from cifarlib.errors import RunConfigError
from cifarlib.evaluation import describe_tta
from cifarlib.storage import RUN_ID_MAX_LENGTH, as_workspace, check_run_id
from cifarlib.timings import epoch_timings
from cifarlib.train import train

log = logging.getLogger(__name__)

# Where the real training images are when --data is not given (they are never part of the package).
DATA_VARIABLE = "CIFARLIB_ACCURACY_DATA"
VALIDATION_FRACTION = 0.1  # 45,000 / 5,000 of the 50,000 training images


def default_data() -> str | None:
    """The real training images named by ``$CIFARLIB_ACCURACY_DATA``, or ``None`` where it is unset."""
    return os.environ.get(DATA_VARIABLE) or None


def accuracy_benchmark(
    data: str | os.PathLike,
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
            f"{data}: no such file; the accuracy benchmark needs the real CIFAR-10 training images "
            "(a .tar.gz of the images, or a CIFAR-10 python archive)"
        )
    runs = planned_runs(
        data, recipes, seeds, epochs=epochs, width=width, train_size=train_size, batch_size=batch_size
    )
    workspace = as_workspace(workspace)
    columns, final, tta, sizes, steady = {}, {}, {}, {}, {}
    for recipe, seed, config, run_id in runs:
        log.warning("Training %s (recipe %s, seed %d)", run_id, recipe, seed)
        result = train(config, workspace, run_id=run_id, verbose=2)
        history = result.history.set_index("epoch")
        column = f"{recipe} s{seed}"
        columns[column] = history["val_accuracy"]
        columns[f"{column} s/epoch"] = history["seconds"]
        final[column] = result.summary.get("final_val_accuracy")
        steady[column] = epoch_timings(result.history)["seconds_per_epoch"]
        tta[recipe] = describe_tta(bool(result.summary.get("tta")), result.summary.get("tta_translate", 0))
        if recipe not in sizes:  # the same network for every seed
            sizes[recipe] = network_size(config)
    table = pd.DataFrame(columns)
    # Per-run scalars ride along with the per-epoch table (None for runs finished by an older cifarlib).
    table.attrs["final_val_accuracy"] = final
    table.attrs["tta"] = tta
    table.attrs["network"] = sizes
    table.attrs["steady_seconds_per_epoch"] = steady
    return table


def planned_runs(
    data: Path,
    recipes: tuple[str, ...],
    seeds: tuple[int, ...],
    *,
    epochs: int,
    width: float,
    train_size: int | None,
    batch_size: int | None,
) -> list[tuple[str, int, RunConfig, str]]:
    """Every run the benchmark trains, as (recipe, seed, config, run id), in order. All are built first, so a bad
    recipe or setting fails before any training rather than hours in."""
    planned = []
    # One spelling per recipe (no spaces, which would also split the table's column names).
    for recipe, (preset, changes) in {"".join(r.split()): parse_recipe(r) for r in recipes}.items():
        for seed in seeds:
            overrides = {**changes, **({"batch_size": batch_size} if batch_size is not None else {})}
            config = RunConfig.from_preset(
                preset,
                data=str(data),
                epochs=epochs,
                seed=seed,
                width=width,
                train_size=train_size,
                validation_fraction=VALIDATION_FRACTION,
                **overrides,
            )
            suffix = (
                f"-w{width:g}-e{epochs}-s{seed}"
                + (f"-n{train_size}" if train_size else "")
                + (f"-b{batch_size}" if batch_size is not None else "")
            )
            run_id = check_run_id(_run_id(recipe, suffix))
            planned.append((recipe, seed, config, run_id))
    return planned


def split_recipes(text: str) -> tuple[str, ...]:
    """``"tuned,tuned+pool_after=[0, 2, 4]"`` -> ``("tuned", "tuned+pool_after=[0,2,4]")``: commas inside a JSON
    list belong to its value, and spaces are dropped, so each recipe has one spelling (its name in the table and
    in its run ids)."""
    recipes, depth, start = [], 0, 0
    for index, character in enumerate(text):
        depth += {"[": 1, "]": -1}.get(character, 0)
        if depth < 0:
            break
        if character == "," and depth == 0:
            recipes.append(text[start:index])
            start = index + 1
    recipes.append(text[start:])
    recipes = ["".join(recipe.split()) for recipe in recipes]
    if depth or not all(recipes):
        raise ValueError(f"--recipes: expected comma-separated recipes with balanced brackets, got {text!r}")
    return tuple(recipes)


def parse_recipe(recipe: str) -> tuple[str, dict]:
    """``"tuned+ema_momentum=0.99"`` -> ``("tuned", {"ema_momentum": 0.99})``; values are read as JSON, else text,
    and ``none`` is None for a setting that may be None (``pool_after=none``), as on the command line.

    The changed settings are checked here, so a misspelt name fails before hours of training.
    """
    preset, *changes = recipe.split("+")
    overrides = {}
    for change in changes:
        name, equals, text = change.partition("=")
        if not equals or not name:
            raise ValueError(f"recipe {recipe!r}: expected preset+name=value+..., got {change!r}")
        if text.lower() == "none" and setting_accepts_none(name):
            overrides[name] = None
            continue
        try:
            overrides[name] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name] = text
    try:
        RunConfig.from_preset(preset, **overrides)
    except RunConfigError as error:
        raise RunConfigError(f"recipe {recipe!r}: {error}") from None
    return preset, overrides


def network_size(config: RunConfig) -> dict[str, int]:
    """The parameters and the multiply-adds per image of the network ``config`` trains."""
    from cifarlib.bench import forward_multiply_adds
    from cifarlib.model import build_model

    network = build_model(config)
    return {"params": int(network.count_params()), "multiply_adds": forward_multiply_adds(network)}


def format_accuracy_table(table: pd.DataFrame) -> str:
    """Per-epoch validation accuracy (percent), then each recipe's final figures with their spread over seeds:
    accuracy, seconds per epoch and total training time (means over seeds), parameters and multiply-adds."""
    final, tta = table.attrs.get("final_val_accuracy", {}), table.attrs.get("tta", {})
    sizes = table.attrs.get("network", {})
    accuracy = table[[c for c in table if not c.endswith("s/epoch")]]
    lines = [(accuracy * 100).round(2).to_string(), ""]
    recipes = list(dict.fromkeys(c.split(" ")[0] for c in accuracy))
    for recipe in recipes:
        last = accuracy[[c for c in accuracy if c.split(" ")[0] == recipe]].iloc[-1] * 100
        epoch_seconds = table[[c for c in table if c.split(" ")[0] == recipe and c.endswith("s/epoch")]]
        # Steady-state seconds per epoch (cifarlib.timings), else, for a table without them, the mean epoch.
        per_run = [table.attrs.get("steady_seconds_per_epoch", {}).get(c) for c in last.index]
        per_epoch = (
            float(np.mean(per_run)) if all(v is not None for v in per_run) else epoch_seconds.mean().mean()
        )
        size = sizes.get(recipe)
        lines.append(
            f"{recipe:>6}: {_mean_and_spread(list(last))} validation accuracy after {len(accuracy)} epochs, "
            f"{per_epoch:.0f} s/epoch, {epoch_seconds.sum().mean() / 60:.1f} min in all"
            + (
                f"; {size['params'] / 1e6:.2f} M parameters, {size['multiply_adds'] / 1e6:.0f} M multiply-adds per image"
                if size
                else ""
            )
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


def _run_id(recipe: str, suffix: str) -> str:
    """The run id of one recipe's run: ``bench-accuracy-<recipe><suffix>``, readable; where that passes the
    run-id length limit, the recipe is cut short and a hash of it keeps the id unique and the same on every
    rerun (so the run resumes)."""
    run_id = f"bench-accuracy-{_safe(recipe)}{suffix}"
    if len(run_id) <= RUN_ID_MAX_LENGTH:
        return run_id
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:10]
    keep = max(1, RUN_ID_MAX_LENGTH - len(f"bench-accuracy--{digest}{suffix}"))
    return f"bench-accuracy-{_safe(recipe)[:keep]}-{digest}{suffix}"


def _safe(recipe: str) -> str:
    """A recipe as part of a run id: ``tuned+flip=alternate`` -> ``tuned-flip-alternate``."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", recipe)
