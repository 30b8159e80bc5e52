"""Both memory estimates: the reference figure and the honest training count, checked by hand."""

import keras
import pytest

from cifarlib import build_inception, estimate_memory
from cifarlib.memory import training_memory_breakdown


def test_seed_method_reproduces_the_reference_figure():
    model = build_inception("reference")
    assert round(estimate_memory(model, 128, method="reference"), 2) == 1.47
    # The formula is linear in the batch, parameters included (the reference's mistake, kept on purpose).
    assert estimate_memory(model, 256, method="reference") == pytest.approx(2 * estimate_memory(model, 128))


def tiny_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3)(inputs))


def test_training_method_counted_by_hand():
    model = tiny_model()  # 15 parameters; outputs of 4 (input) + 3 (dense) elements per sample
    breakdown = training_memory_breakdown(model, 2, optimizer="adam", precision="float32")
    assert breakdown == {"parameters": 60, "gradients": 60, "optimizer_slots": 120, "activations": 56}
    assert estimate_memory(model, 2, method="training") == pytest.approx(296 / 1024**3)
    mixed = training_memory_breakdown(model, 2, optimizer="sgd", precision="mixed_bfloat16")
    assert mixed == {"parameters": 60, "gradients": 60, "optimizer_slots": 0, "activations": 28}


def test_training_estimate_is_below_the_seed_formula_for_the_seed_network():
    model = build_inception("reference")
    assert estimate_memory(model, 128, method="training") < estimate_memory(model, 128, method="reference")


@pytest.mark.parametrize("batch", [0, -5, 1.5, True])
def test_bad_batch_size(batch):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        estimate_memory(tiny_model(), batch)


def test_bad_method_optimizer_precision():
    with pytest.raises(ValueError, match="method must be"):
        estimate_memory(tiny_model(), 8, method="guess")
    with pytest.raises(ValueError, match="optimizer must be"):
        estimate_memory(tiny_model(), 8, method="training", optimizer="lion")
    with pytest.raises(ValueError, match="precision must be"):
        estimate_memory(tiny_model(), 8, method="training", precision="int8")


def test_weight_averaging_adds_one_slot_per_trainable_weight():
    from cifarlib.config import RunConfig
    from cifarlib.memory import run_memory_estimate

    model = tiny_model()  # 15 trainable weights
    averaged = training_memory_breakdown(model, 2, optimizer="sgd_momentum", ema=True)
    assert averaged["optimizer_slots"] == 4 * 15 * 2
    config = RunConfig.from_preset("tuned", data="synthetic")
    for averaging in (dict(ema_momentum=0.9), dict(lookahead_steps=5)):  # lookahead keeps the slow weights
        extra = run_memory_estimate(model, config.replace(**averaging)) - run_memory_estimate(model, config)
        assert extra * 1024**3 == pytest.approx(4 * 15)
