"""The pooling plan (``pool_after``): which layers a 2x2 max-pool follows, so the grid each module works on is
a setting; checked on the built networks' shapes, the limits, old runs and the command line."""

import re

import keras
import pytest

from cifarlib import config as config_module
from cifarlib.__main__ import build_parser
from cifarlib.bench import forward_multiply_adds
from cifarlib.bench_accuracy import _safe, parse_recipe, split_recipes
from cifarlib.config import RunConfig, pooled_grid_size
from cifarlib.errors import RunConfigError
from cifarlib.model import build_inception, build_model


def module_grids(network) -> list[int]:
    """The side of the grid each Inception module's convolutions work on."""
    return [network.get_layer(f"inception_{i}_1x1").output.shape[1] for i in range(1, 5)]


def head_grid(network) -> int:
    """The side of the grid the head pools."""
    name = "global_pool" if "global_pool" in _names(network) else "average_pool"
    return network.get_layer(name).input.shape[1]


def _names(network):
    return {layer.name for layer in network.layers}


def test_default_plan_pools_after_every_module_as_the_reference_did():
    network = build_inception("reference")
    assert module_grids(network) == [32, 16, 8, 4]
    assert head_grid(network) == 2
    assert "stem_downsample" not in _names(network)
    # The reference network is unchanged: the same parameters and grids as before the plan was a setting.
    assert network.count_params() == 1_420_834
    assert pooled_grid_size(RunConfig.from_preset("reference").architecture) == 2


@pytest.mark.parametrize(
    "stem, plan, grids, head",
    [
        ("whiten", (0, 3, 4), [15, 15, 15, 7], 3),
        ("whiten", (1, 2, 4), [31, 15, 7, 7], 3),
        ("none", (0, 2, 4), [16, 16, 8, 8], 4),
        ("none", (), [32, 32, 32, 32], 32),
    ],
)
def test_each_module_works_on_the_grid_its_plan_gives(stem, plan, grids, head):
    config = RunConfig.from_preset("tuned", width=0.25, stem=stem, pool_after=plan)
    network = build_model(config)
    assert module_grids(network) == grids
    assert head_grid(network) == head == pooled_grid_size(config.architecture)
    assert ("stem_downsample" in _names(network)) == (0 in plan)
    pools = [layer for layer in network.layers if layer.name.endswith("_downsample")]
    assert len(pools) == len(plan)


def test_plans_move_multiply_adds_not_parameters():
    """Pooling sooner makes each image cheaper; the weights are the same convolutions either way."""
    every = build_model(RunConfig.from_preset("tuned", stem="whiten", pool_after=None))
    early = build_model(RunConfig.from_preset("tuned", stem="whiten", pool_after=(0, 3, 4)))
    assert early.count_params() == every.count_params()
    assert forward_multiply_adds(early) < forward_multiply_adds(every)
    limit = forward_multiply_adds(build_inception("reference"))
    for plan in [(0, 2, 4), (0, 3, 4), (1, 2, 4)]:
        network = build_model(RunConfig.from_preset("tuned", stem="whiten", pool_after=plan))
        assert network.count_params() <= 1_500_000
        assert forward_multiply_adds(network) <= limit, plan


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            dict(pool_after=(2, 1)),
            "pool_after must be none (after every module) or a list of increasing layer numbers",
        ),
        (dict(pool_after=(1, 1)), "pool_after must be none"),
        (dict(pool_after=(0, 5)), "from 0 (the stem) to the number of modules (4), got [0, 5]"),
        (dict(pool_after=(-1,)), "pool_after must be none"),
        (dict(pool_after=(True,)), "pool_after must be none"),
        (
            dict(pool_after=(0, 1, 2, 3, 4), head_pool="global", stem="whiten"),
            "pool_after [0, 1, 2, 3, 4] halves the grid more often than stem 'whiten' leaves room for",
        ),
        (
            dict(pool_after=(0, 1, 2, 3, 4), head_pool="average2x2", stem="none"),
            "head_pool 'average2x2' needs a grid of at least 2x2 at the head",
        ),
        (dict(stem="whiten", pool_after=None, head_pool="average2x2"), "leaves 1x1: use head_pool 'global'"),
    ],
)
def test_impossible_plans_are_refused_with_their_name(changes, message):
    with pytest.raises(RunConfigError, match=re.escape(message)):
        RunConfig(**changes)


def test_a_stored_run_older_than_an_option_loads_with_it_off_even_if_the_preset_turns_it_on(monkeypatch):
    """A config.json written before ``pool_after`` (or ``stem``) existed trained with pools after every module and
    no stem: it must resume as that network, not as whatever the preset holds today."""
    trained = RunConfig.from_preset("tuned")
    stored = {k: v for k, v in trained.to_dict().items() if k not in ("pool_after", "stem")}
    monkeypatch.setitem(
        config_module.PRESETS, "tuned", {**config_module.TUNED, "stem": "whiten", "pool_after": (0, 3, 4)}
    )
    loaded = RunConfig.from_dict(stored)
    assert (loaded.stem, loaded.pool_after) == ("none", None)
    # The same for options older than these that the tuned preset turned on after runs were first stored.
    older = {k: v for k, v in trained.to_dict().items() if k not in ("decay_kernels_only", "tta_translate")}
    loaded = RunConfig.from_dict(older)
    assert (loaded.decay_kernels_only, loaded.tta_translate) == (False, 0)
    # A stored null plan is "after every module", not "the preset's plan".
    assert RunConfig.from_dict({**stored, "pool_after": None}).pool_after is None
    assert RunConfig.from_dict({**stored, "pool_after": [0, 2, 4]}).pool_after == (0, 2, 4)


def test_command_line_takes_a_json_list_or_none_even_over_a_presets_plan(monkeypatch):
    from cifarlib.__main__ import _config_from_flags

    monkeypatch.setitem(config_module.PRESETS, "tuned", {**config_module.TUNED, "pool_after": (0, 3, 4)})
    parser = build_parser("config")

    def resolved(*flags):
        return _config_from_flags(parser.parse_args(["config", "--preset", "tuned", *flags])).pool_after

    assert resolved() == (0, 3, 4)
    assert resolved("--pool-after", "[0, 2, 4]") == (0, 2, 4)
    # "none" is a value of its own (a pool after every module), not "the preset's".
    assert resolved("--pool-after", "none") is None
    assert resolved("--pool-after", "null") is None
    with pytest.raises(SystemExit):
        parser.parse_args(["config", "--pool-after", "3"])


def test_a_plan_that_pools_after_every_module_is_spelt_none():
    """The same network has one spelling, so one run id: an explicit plan of every module is none."""
    assert RunConfig(pool_after=[1, 2, 3, 4]).pool_after is None
    assert RunConfig(pool_after=[1, 2, 3, 4]) == RunConfig(pool_after=None)
    assert RunConfig(modules=RunConfig().modules[:3], pool_after=[1, 2, 3]).pool_after is None
    assert RunConfig(pool_after=[1, 2, 3]).pool_after == (1, 2, 3)


def test_recipes_split_on_commas_outside_lists():
    assert split_recipes("tuned,tuned+stem=whiten+pool_after=[0,3,4]") == (
        "tuned",
        "tuned+stem=whiten+pool_after=[0,3,4]",
    )
    assert _safe("tuned+pool_after=[0,3,4]") == "tuned-pool_after-0-3-4-"
    assert split_recipes("tuned, tuned+pool_after=[0, 3, 4]") == ("tuned", "tuned+pool_after=[0,3,4]")
    for text in ["tuned,tuned+pool_after=[0,3", "tuned,,reference", "tuned+pool_after=[0]]", "tuned],[x"]:
        with pytest.raises(ValueError, match="--recipes: expected comma-separated recipes"):
            split_recipes(text)


def test_a_recipe_spells_none_as_the_command_line_does():
    # "none" is None where a setting may be None (a pool after every module), and text elsewhere (no stem).
    assert parse_recipe("tuned+stem=none+pool_after=none") == ("tuned", {"stem": "none", "pool_after": None})
    assert parse_recipe("tuned+pool_after=null") == ("tuned", {"pool_after": None})
    assert RunConfig.from_preset("tuned", stem="none", pool_after=None).architecture == (
        RunConfig.from_preset("tuned", stem="none", pool_after=[1, 2, 3, 4]).architecture
    )


def test_a_plan_trains_and_its_saved_network_reloads(small_archive, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))
    from cifarlib import storage
    from cifarlib.train import train

    config = RunConfig.from_preset(
        "tuned",
        data=str(small_archive),
        epochs=1,
        width=0.25,
        batch_size=50,
        validation_fraction=0.2,
        stem="whiten",
        pool_after=(0, 3, 4),
    )
    result = train(config, tmp_path / "ws", run_id="plan", verbose=0)
    saved = keras.saving.load_model(result.run_dir / storage.BEST_MODEL_FILE)
    assert module_grids(saved) == [15, 15, 15, 7]
    assert (
        RunConfig.from_dict(storage.as_workspace(tmp_path / "ws").run("plan").read_json(storage.CONFIG_FILE))
        == config
    )


@pytest.mark.parametrize(
    ("name", "flag"), [("early_stopping_patience", "--early-stopping-patience"), ("stem", "--stem")]
)
def test_the_command_line_and_a_recipe_agree_on_which_settings_take_none(name, flag):
    from cifarlib.__main__ import _config_from_flags

    parser = build_parser("config")
    on_the_command_line = getattr(_config_from_flags(parser.parse_args(["config", flag, "none"])), name)
    in_a_recipe = parse_recipe(f"tuned+{name}=none")[1][name]
    assert on_the_command_line == in_a_recipe
    assert (in_a_recipe is None) == config_module.setting_accepts_none(name)
    assert config_module.setting_accepts_none("early_stopping_patience")
    assert not config_module.setting_accepts_none("stem")
