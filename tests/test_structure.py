"""The package's shape: one recipe table, resolved configs, old runs that still load, no import cycle, and a
saved model that opens with plain Keras."""

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifarlib.config import ARCHITECTURE_FIELDS, PRESETS, RunConfig
from cifarlib.errors import RunConfigError

PACKAGE = Path(__file__).resolve().parent.parent / "cifarlib"


def _cifarlib_imports(path: Path) -> set[str]:
    """The cifarlib modules ``path`` imports, at the top or inside functions (``TYPE_CHECKING`` ones left out)."""
    tree = ast.parse(path.read_text())
    type_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(child) for child in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cifarlib"):
            if node.module == "cifarlib":
                found.update(f"cifarlib.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("cifarlib."))
    modules = {f"cifarlib.{p.stem}" for p in PACKAGE.glob("*.py")}
    return {name for name in found if name in modules} - {f"cifarlib.{path.stem}"}


def test_no_import_cycle_among_cifarlib_modules():
    graph = {f"cifarlib.{p.stem}": _cifarlib_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert "cifarlib.train" in graph["cifarlib.bench_accuracy"]  # the parser sees real edges

    def path_back(start):
        """A cycle through ``start`` as a list of modules, or None."""
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return trail + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
        return None

    cycles = [cycle for module in sorted(graph) if (cycle := path_back(module))]
    assert not cycles, " ; ".join(" -> ".join(cycle) for cycle in cycles)
    # The direction the modules are meant to flow in: the network knows no training, results no training.
    assert "cifarlib.train" not in graph["cifarlib.results"]
    assert "cifarlib.train" not in graph["cifarlib.runs"]
    assert "cifarlib.sweep" not in graph["cifarlib.results"]
    assert "cifarlib.model" not in graph["cifarlib.config"]


def test_presets_are_complete_resolved_recipes():
    recipe_fields = {f.name for f in RunConfig.__dataclass_fields__.values() if f.metadata.get("recipe")}
    assert set(ARCHITECTURE_FIELDS) <= recipe_fields
    for name, recipe in PRESETS.items():
        assert set(recipe) == recipe_fields, name
    # RunConfig() is the default recipe, tuned; the 2019 one is one name away.
    assert RunConfig() == RunConfig.from_preset("tuned")
    reference = RunConfig.from_preset("reference")
    assert (reference.batch_norm, reference.head_units, reference.crop_padding) == ("concat", (128, 64), 0)
    tuned = RunConfig()
    assert (tuned.batch_norm, tuned.head_units, tuned.crop_padding, tuned.head_pool) == (
        "branch",
        (),
        2,
        "global",
    )
    # config.json records every network field, none of them null (pool_after's null is a plan of its own: a pool
    # after every module, which a stored run keeps whatever the preset's plan becomes).
    stored = json.loads(tuned.to_json())
    assert all(stored[name] is not None for name in ARCHITECTURE_FIELDS if name != "pool_after")
    assert RunConfig.from_dict(stored) == tuned


def test_runs_written_before_presets_were_complete_still_load():
    # What an earlier version wrote for a run of its "seed" preset: network fields null, newer fields absent.
    old = {
        **{
            k: v
            for k, v in RunConfig.from_preset("reference").to_dict().items()
            if k not in ("modules", "head_units")
        },
        "preset": "seed",
        "batch_norm": None,
        "head_dropout": None,
        "l2": None,
        "crop_padding": None,
        "keras_version": "3.10.0",
    }
    for name in ("module_dropout", "head_pool", "normalization"):
        old.pop(name)
    loaded = RunConfig.from_dict(json.loads(json.dumps(old)))
    assert loaded == RunConfig.from_preset("reference")
    old_tuned = {**json.loads(RunConfig().to_json()), "batch_norm": None, "crop_padding": None}
    assert RunConfig.from_dict(old_tuned) == RunConfig()
    with pytest.raises(RunConfigError, match="unknown preset 'resnet' in a stored run config"):
        RunConfig.from_dict({**old, "preset": "resnet"})


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize(
    "name", ["width", "learning_rate", "weight_decay", "l2", "warmup_epochs", "momentum"]
)
def test_every_float_setting_must_be_finite(name, value):
    with pytest.raises(RunConfigError, match=f"{name} must be a finite number") as error:
        RunConfig(**{name: value})
    assert "\n" not in str(error.value)


def test_cli_refuses_infinite_width_in_one_line_and_prints_presets(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for value in ("inf", "nan"):
        done = subprocess.run(
            [sys.executable, "-m", "cifarlib", "train", "--width", value, "--workspace", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 1
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("cifarlib train: error: ") and "width must be a finite number" in last
    shown = subprocess.run(
        [sys.executable, "-m", "cifarlib", "config", "--preset", "reference", "--epochs", "3"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    assert RunConfig.from_dict(json.loads(shown.stdout)) == RunConfig.from_preset("reference", epochs=3)
    default = subprocess.run(
        [sys.executable, "-m", "cifarlib", "config"], capture_output=True, text=True, env=env
    )
    assert RunConfig.from_dict(json.loads(default.stdout)) == RunConfig()


def test_a_tuned_run_of_one_epoch_saves_a_model_plain_keras_opens(tmp_path, monkeypatch):
    """The tuned recipe trains on a 1-epoch budget, and its best.keras loads where cifarlib is never imported."""
    from cifarlib.train import train

    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))
    config = RunConfig(
        data="synthetic",
        train_size=200,
        width=0.125,
        epochs=1,
        batch_size=50,
        precision="float32",
        jit_compile=False,
    )
    result = train(config, tmp_path / "ws", run_id="tuned-one-epoch", verbose=0)
    assert result.summary["epochs_run"] == 1 and result.summary["preset"] == "tuned"
    best = result.run_dir / "best.keras"
    script = (
        "import sys, numpy, keras\n"
        "model = keras.saving.load_model(sys.argv[1])\n"
        "assert not any(name.startswith('cifarlib') for name in sys.modules), 'cifarlib was imported'\n"
        "print(model.predict(numpy.zeros((2, 32, 32, 3), 'uint8'), verbose=0).shape)\n"
    )
    # An empty folder as the working directory and no PYTHONPATH: the checkout is not importable there.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script, str(best)], capture_output=True, text=True, env=env, cwd=empty
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "(2, 10)"


def test_an_interrupted_tuned_run_resumes_to_the_same_history(tmp_path, monkeypatch):
    """With the augmentation wrapped around the network, backup and resume still give an unbroken run."""
    import keras

    from cifarlib.train import train

    class StopAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))
    config = RunConfig(
        data="synthetic",
        train_size=200,
        width=0.125,
        epochs=3,
        batch_size=50,
        precision="float32",
        jit_compile=False,
    )
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "ws", run_id="cut", verbose=0, callbacks=[StopAfterSecondEpoch()])
    resumed = train(config, tmp_path / "ws", run_id="cut", verbose=0)
    clean = train(config, tmp_path / "ws", run_id="clean", verbose=0)
    assert resumed.history["epoch"].tolist() == [1, 2, 3]
    # The learning rate follows the same schedule across the break, and best.keras is the network alone.
    assert resumed.history["learning_rate"].tolist() == pytest.approx(clean.history["learning_rate"].tolist())
    best = keras.saving.load_model(resumed.run_dir / "best.keras")
    assert "augment" not in {layer.name for layer in best.layers}
