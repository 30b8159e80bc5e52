"""The seed network is exactly the reference's; width, presets and module options behave as documented."""

import re

import numpy as np
import pytest

from cifarlib.config import REFERENCE_MODULES
from cifarlib.model import build_inception, dense_block, inception_module


def reference_param_count(modules, head, channels=3, classes=10):
    """Parameters of the reference topology counted by hand, independently of Keras."""
    total = 0
    for f1, f3r, f3, f5r, f5, fp in modules:
        total += channels * f1 + f1  # 1x1
        total += channels * f3r + f3r + 9 * f3r * f3 + f3  # 3x3 reduce, 3x3
        total += channels * f5r + f5r + 25 * f5r * f5 + f5  # 5x5 reduce, 5x5
        total += channels * fp + fp  # pool projection
        channels = f1 + f3 + f5 + fp
        total += 4 * channels  # BatchNormalization after the concatenation
    features = channels
    for units in head:
        total += features * units + units + 4 * units  # Dense + BatchNormalization
        features = units
    return total + features * classes + classes


def test_seed_network_is_the_reference():
    model = build_inception("reference")
    assert model.count_params() == 1_420_834
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 1_416_930
    assert model.count_params() - trainable == 3_904
    assert reference_param_count(REFERENCE_MODULES, (128, 64)) == 1_420_834
    concat_shapes = [model.get_layer(f"inception_{i}_concat").output.shape for i in range(1, 5)]
    assert concat_shapes == [(None, 32, 32, 256), (None, 16, 16, 480), (None, 8, 8, 512), (None, 4, 4, 512)]
    assert model.get_layer("flatten").output.shape == (None, 512)
    assert model.output.shape == (None, 10)


def test_layer_names_are_clean():
    model = build_inception("reference")
    assert all(re.fullmatch(r"[a-z0-9_]+", layer.name) for layer in model.layers)
    assert model.get_layer("inception_1_3x3_reduce").filters == 96


def test_narrow_network_scales_every_count():
    model = build_inception("reference", width=0.25)
    narrow = [tuple(max(1, round(f * 0.25)) for f in module) for module in REFERENCE_MODULES]
    assert model.count_params() == reference_param_count(narrow, (32, 16))
    assert model.get_layer("inception_1_concat").output.shape == (None, 32, 32, 16 + 32 + 8 + 8)
    probabilities = model.predict(np.zeros((3, 32, 32, 3), np.uint8), verbose=0)
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_grayscale_input_shape():
    model = build_inception("reference", width=0.25, input_shape=(32, 32, 1))
    assert model.input.shape == (None, 32, 32, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"architecture": "resnet"}, "unknown preset"),
        ({"width": 0}, "width must be a positive"),
        ({"width": -1.0}, "width must be a positive"),
        ({"batch_norm": "everywhere"}, "batch_norm must be one of"),
        ({"input_shape": (32, 32, 4)}, "input_shape"),
    ],
)
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_inception(**kwargs)


def test_branch_batch_norm_places_bn_inside_every_branch():
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = inception_module(inputs, [4, 4, 4, 2, 2, 2], name="m", batch_norm="branch", pool=False)
    model = keras.Model(inputs, outputs)
    names = {layer.name for layer in model.layers}
    for branch in ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"):
        assert f"m_{branch}_bn" in names and f"m_{branch}_relu" in names
        assert model.get_layer(f"m_{branch}").use_bias is False
    assert "m_bn" not in names
    assert outputs.shape == (None, 8, 8, 12)


def test_module_and_dense_block_reject_bad_sizes():
    import keras

    with pytest.raises(ValueError, match="six positive"):
        inception_module(keras.Input((8, 8, 3)), [1, 2, 3], name="m")
    with pytest.raises(ValueError, match="units must be positive"):
        dense_block(keras.Input((4,)), 0, name="d")


def test_dense_block_order_matches_the_reference():
    import keras

    inputs = keras.Input((16,))
    model = keras.Model(inputs, dense_block(inputs, 8, name="dense_1"))
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == ["Dense", "Dropout", "BatchNormalization"]


def test_tuned_preset_keeps_the_reference_modules():
    model = build_inception("tuned", width=0.25)
    assert model.get_layer("inception_4_concat").output.shape[-1] == sum(
        max(1, round(f * 0.25)) for f in (160, 224, 64, 64)
    )
    # The crops and flips are training-only: they wrap the network for fitting and stay out of it (and so
    # out of the saved best.keras).
    from cifarlib.model import training_model

    assert "augment" not in {layer.name for layer in model.layers}
    assert training_model(model, 2, seed=0).get_layer("augment") is not None


def test_standardisation_and_whitening_stem_run_in_float32_under_mixed_precision():
    import keras

    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        network = build_inception("tuned", width=0.25, stem_images=images)
        stem_output = keras.Model(network.input, network.get_layer("whiten_gelu").output)(images[:2])
        first_conv = network.get_layer("inception_1_1x1")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    for name in ("standardize", "whiten", "whiten_gelu"):
        assert network.get_layer(name).compute_dtype == "float32", name
    assert keras.backend.standardize_dtype(stem_output.dtype) == "float32"
    # The modules after the stem still compute in bfloat16: only the stem is kept in float32.
    assert first_conv.compute_dtype == "bfloat16"
