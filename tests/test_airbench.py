"""airbench's ingredients as RunConfig options, on synthetic data: each reaches the network or the fit, does what
airbench's does, and is off in the reference preset (which trains exactly what it trained before); the tuned preset
takes only the whitening stem."""

import json

import keras
import numpy as np
import pandas as pd
import pytest

from cifarlib import storage
from cifarlib.augment import FlipEpoch, RandomCropFlip
from cifarlib.bench import forward_multiply_adds
from cifarlib.bench_accuracy import format_accuracy_table, network_size, parse_recipe
from cifarlib.config import PRESETS, RunConfig
from cifarlib.device import plan_device
from cifarlib.errors import RunConfigError
from cifarlib.model import (
    WHITENING_EPS,
    build_inception,
    build_model,
    load_network,
    patch_whitening_kernel,
    training_model,
    whitening_stem_with_bias,
)
from cifarlib.optimizer import (
    LOOKAHEAD_KEEP_PER_STEP,
    Lookahead,
    ScaledRateSGD,
    batch_norm_offsets,
    lookahead_keep,
    lookahead_variables,
    whitening_bias,
)
from cifarlib.train import compile_model, train

AIRBENCH_OPTIONS = dict(
    stem="whiten",
    batch_norm_momentum=0.6,
    batch_norm_scale=False,
    logit_temperature=9.0,
    activation="gelu",
    identity_init=True,
    flip="alternate",
    ema_momentum=0.9,
    offset_learning_rate_scale=64.0,
    whitening_bias_epochs=1,
)
SMALL = dict(width=0.25, batch_size=50, validation_fraction=0.2)


def batch_norm_layers(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def smooth_images(count: int, seed: int = 0) -> np.ndarray:
    """Images whose neighbouring pixels are correlated, like photographs (and unlike white noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(count, 8, 8, 3))
    images = np.kron(coarse, np.ones((1, 4, 4, 1))) + rng.normal(0, 12, size=(count, 32, 32, 3))
    return np.clip(np.round(images), 0, 255).astype("uint8")


def test_presets_turn_on_only_the_measured_options_and_old_runs_load_unchanged():
    # The tuned recipe takes the whitening stem (with its own pooling plan, docs/accuracy.md); every other option
    # is off in every preset, and the reference has none of them.
    stems = {"reference": "none", "tuned": "whiten"}
    for name in PRESETS:
        config = RunConfig.from_preset(name)
        assert (config.stem, config.flip, config.ema_momentum) == (stems[name], "random", 0.0)
        assert (config.batch_norm_momentum, config.batch_norm_scale, config.logit_temperature) == (
            0.99,
            True,
            1.0,
        )
        assert (config.activation, config.identity_init) == ("relu", False)
        assert config.offset_learning_rate_scale == 1.0
        assert config.whitening_bias_epochs == 0
    # A config.json written before these options existed trained with all of them off, and resumes that way.
    reference = RunConfig.from_preset("reference")
    stored = {key: value for key, value in reference.to_dict().items() if key not in AIRBENCH_OPTIONS}
    assert RunConfig.from_dict(stored) == reference
    tuned = RunConfig.from_preset("tuned")
    stored = {
        key: value for key, value in tuned.to_dict().items() if key not in (*AIRBENCH_OPTIONS, "pool_after")
    }
    assert RunConfig.from_dict(stored) == RunConfig.from_preset("tuned", stem="none", pool_after=None)
    # With the options off, the reference network is the one the rest of the suite checks (same parameters).
    assert build_inception("reference").count_params() == 1_420_834


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(batch_norm_momentum=1.0), "batch_norm_momentum must be in [0, 1)"),
        (dict(ema_momentum=-0.1), "ema_momentum must be in [0, 1)"),
        (dict(lookahead_steps=-1), "lookahead_steps must be an integer >= 0"),
        (dict(lookahead_steps=2.5), "lookahead_steps must be an integer >= 0"),
        (
            dict(lookahead_steps=5, ema_momentum=0.9),
            "lookahead_steps and ema_momentum are two weight averages",
        ),
        (dict(logit_temperature=0.0), "logit_temperature must be a finite number > 0"),
        (dict(flip="sometimes"), "flip must be one of"),
        (dict(stem="patchify"), "stem must be one of"),
        (dict(batch_norm_scale="no"), "batch_norm_scale must be true or false"),
        (dict(head_pool="max"), "head_pool must be one of .*'global_max'.*, got 'max'"),
        (dict(activation="swish"), "activation must be one of"),
        (dict(identity_init=1), "identity_init must be true or false"),
        (dict(offset_learning_rate_scale=0.0), "offset_learning_rate_scale must be > 0"),
        (
            dict(offset_learning_rate_scale=64, optimizer="adam"),
            "offset_learning_rate_scale=64 needs optimizer 'sgd'",
        ),
        (dict(whitening_bias_epochs=-1), "whitening_bias_epochs must be a non-negative integer"),
        (dict(whitening_bias_epochs=2.5), "whitening_bias_epochs must be a non-negative integer"),
        (dict(whitening_bias_epochs=3, stem="none"), "whitening_bias_epochs=3 needs stem 'whiten'"),
        (dict(whitening_bias_epochs=2, optimizer="adam"), "whitening_bias_epochs=2 needs optimizer 'sgd'"),
    ],
)
def test_bad_option_values_are_refused_with_their_name(changes, message):
    with pytest.raises(RunConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        RunConfig(**changes)


def test_a_bad_whitening_bias_epochs_gives_one_error_not_two():
    with pytest.raises(RunConfigError) as error:
        RunConfig(whitening_bias_epochs=True, optimizer="adam")
    assert "must be a non-negative integer, got True" in str(error.value)
    assert "needs optimizer" not in str(error.value)


def test_whitening_stem_needs_global_pooling():
    # Its unpadded convolution leaves 31x31, which the reference's four pools end at 1x1.
    with pytest.raises(
        RunConfigError, match="stem 'whiten' with pool_after none leaves 1x1: use head_pool 'global'"
    ):
        RunConfig.from_preset("reference", stem="whiten")


@pytest.mark.parametrize("preset", ["reference", "tuned"])
def test_batch_norm_momentum_and_scale_reach_every_batch_norm_layer(preset):
    plain = build_model(RunConfig.from_preset(preset, width=0.25))
    changed = build_model(
        RunConfig.from_preset(preset, width=0.25, batch_norm_momentum=0.6, batch_norm_scale=False)
    )
    assert {layer.momentum for layer in batch_norm_layers(plain)} == {0.99}
    layers = batch_norm_layers(changed)
    assert len(layers) == len(batch_norm_layers(plain)) > 4
    assert all(layer.momentum == 0.6 and not layer.scale and layer.gamma is None for layer in layers)
    # Without a scale, each BatchNorm layer has one weight fewer per channel.
    channels = sum(layer.beta.shape[0] for layer in layers)
    assert plain.count_params() - changed.count_params() == channels


def test_batch_norm_momentum_is_the_share_of_the_moving_mean_kept():
    model = build_model(RunConfig(width=0.25, batch_norm_momentum=0.6, batch_norm="branch"))
    layer = model.get_layer("inception_1_1x1_bn")
    before = np.array(layer.moving_mean)
    probe = keras.Model(model.input, layer.input)
    images = smooth_images(8)
    batch_mean = np.asarray(probe(images.astype("float32"))).mean(axis=(0, 1, 2))
    model(images.astype("float32"), training=True)
    np.testing.assert_allclose(
        np.array(layer.moving_mean), 0.6 * before + 0.4 * batch_mean, rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("preset", ["reference", "tuned"])
def test_gelu_follows_every_convolution_and_hidden_dense_layer(preset):
    network = build_model(RunConfig.from_preset(preset, width=0.25, activation="gelu"))
    activations = [
        layer.activation.__name__
        for layer in network.layers
        if isinstance(layer, keras.layers.Activation)
        or (isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.name != "predictions")
    ]
    activations = [name for name in activations if name != "linear"]  # convolutions followed by BatchNorm
    assert len(activations) >= 24 and set(activations) == {"gelu"}


@pytest.mark.parametrize("preset", ["reference", "tuned"])
def test_identity_init_passes_the_first_channels_through_every_convolution(preset):
    network = build_model(RunConfig.from_preset(preset, width=0.25, identity_init=True))
    # The trainable ones: the whitening stem (in the tuned preset) is fitted to the images, not initialised.
    convolutions = [
        layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D) and layer.trainable
    ]
    assert len(convolutions) >= 24
    rng = np.random.default_rng(0)
    for layer in convolutions:
        inputs = rng.normal(size=(2, 8, 8, layer.kernel.shape[2])).astype("float32")
        count = min(layer.kernel.shape[2:])
        outputs = np.asarray(keras.ops.conv(inputs, layer.kernel, padding="same"))
        np.testing.assert_allclose(outputs[..., :count], inputs[..., :count], atol=1e-6, err_msg=layer.name)
        if layer.kernel.shape[3] > count:  # the other filters keep their random start
            assert np.abs(outputs[..., count:]).max() > 0.01
    plain = build_model(RunConfig.from_preset(preset, width=0.25))
    assert not np.allclose(np.array(plain.get_layer("inception_1_3x3").kernel)[1, 1, 0, 0], 1.0)


def test_logit_temperature_divides_the_logits_before_the_softmax():
    model = build_model(RunConfig(width=0.25, logit_temperature=9.0))
    logits = keras.Model(model.input, model.get_layer("logits").output)
    images = smooth_images(4).astype("float32")
    expected = np.asarray(keras.ops.softmax(np.asarray(logits(images)) / 9.0))
    np.testing.assert_allclose(np.asarray(model(images)), expected, rtol=1e-5, atol=1e-6)
    assert model.output.shape == (None, 10)


def test_global_max_head_takes_each_channels_largest_response_over_the_grid():
    config = RunConfig.from_preset("tuned", width=0.25, head_pool="global_max")
    network = build_model(config)
    head = network.get_layer("global_pool")
    assert isinstance(head, keras.layers.GlobalMaxPooling2D)
    probe = keras.Model(network.input, [head.input, head.output])
    grid, pooled = (np.asarray(x, dtype=np.float32) for x in probe(smooth_images(4).astype("float32")))
    assert grid.shape[1:3] == (3, 3)
    np.testing.assert_array_equal(pooled, grid.max(axis=(1, 2)))
    # The same weights as the average-pooling head's, at the same cost.
    average = build_model(config.replace(head_pool="global"))
    assert isinstance(average.get_layer("global_pool"), keras.layers.GlobalAveragePooling2D)
    assert network.count_params() == average.count_params()
    assert forward_multiply_adds(network) == forward_multiply_adds(average)


def test_whitening_kernel_makes_the_patch_second_moments_the_identity_up_to_eps():
    rng = np.random.default_rng(1)
    images = (smooth_images(64) - 127.5) / 64.0 + rng.normal(0, 0.01, size=(64, 32, 32, 3))
    kernel = patch_whitening_kernel(images)
    assert kernel.shape == (2, 2, 3, 24)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])
    patches = np.stack(
        [images[:, dy : dy + 31, dx : dx + 31, :] for dy in (0, 1) for dx in (0, 1)], axis=3
    ).reshape(-1, 12)
    eigenvalues = np.linalg.eigvalsh(patches.T @ patches / len(patches))
    outputs = patches @ kernel[..., :12].reshape(12, 12)
    moments = outputs.T @ outputs / len(outputs)
    # Exactly diag(lambda / (lambda + eps)): decorrelated, and unit variance but for eps.
    np.testing.assert_allclose(
        moments, np.diag(np.sort(eigenvalues / (eigenvalues + WHITENING_EPS))), atol=1e-6
    )
    assert np.abs(moments - np.eye(12)).max() <= WHITENING_EPS / (eigenvalues.min() + WHITENING_EPS) + 1e-6


def test_whitening_stem_whitens_the_normalised_training_images_and_is_frozen():
    images = smooth_images(200)
    network = build_model(RunConfig(width=0.25, stem="whiten"), stem_images=images)
    stem = network.get_layer("whiten")
    assert not stem.trainable and not any("whiten" in v.path for v in network.trainable_variables)
    outputs = np.asarray(keras.Model(network.input, stem.output)(images.astype("float32")), dtype=np.float64)
    assert outputs.shape == (200, 31, 31, 24)
    first_half = outputs[..., :12].reshape(-1, 12)
    moments = first_half.T @ first_half / len(first_half)
    assert np.abs(moments - np.eye(12)).max() < 0.05
    # Without the images it builds with the same shapes (for counting), but whitens nothing.
    unfitted = build_model(RunConfig(width=0.25, stem="whiten"))
    assert unfitted.count_params() == network.count_params()
    assert not np.allclose(np.array(unfitted.get_layer("whiten").kernel), np.array(stem.kernel))


@pytest.mark.parametrize("identity_init", [False, True])
def test_whitening_bias_is_the_stems_only_trainable_weight_and_starts_at_zero(identity_init):
    images = smooth_images(200)
    config = RunConfig.from_preset("tuned", width=0.25, whitening_bias_epochs=3, identity_init=identity_init)
    network = build_model(config, stem_images=images)
    stem = network.get_layer("whiten")
    assert [v.path for v in network.trainable_variables if "whiten" in v.path] == [stem.bias.path]
    assert whitening_bias(training_model(network, 2, seed=0)) == [stem.bias]
    np.testing.assert_array_equal(np.array(stem.bias), np.zeros(24))
    without = build_model(config.replace(whitening_bias_epochs=0), stem_images=images)
    # The same fitted whitening, which identity initialisation leaves alone.
    np.testing.assert_array_equal(np.array(stem.kernel), np.array(without.get_layer("whiten").kernel))
    assert network.count_params() == without.count_params() + 24
    assert whitening_bias(without) == []


def test_every_new_network_option_stays_within_the_limits():
    """At full width, at most 1.5 M parameters and no more multiply-adds per image than the reference network."""
    limit = forward_multiply_adds(build_inception("reference"))
    options = {k: v for k, v in AIRBENCH_OPTIONS.items() if k != "ema_momentum"}
    network = build_model(RunConfig(**options, head_pool="global_max"))
    assert network.count_params() <= 1_500_000
    assert forward_multiply_adds(network) <= limit
    assert any(layer.name.startswith("inception_") for layer in network.layers)


def test_a_scaled_rate_is_sgd_at_that_rate_on_those_variables_only():
    """Several Nesterov steps with momentum and decoupled weight decay: the scaled variable moves exactly as under
    plain SGD at 4x the rate (with the decay per step unchanged, as in airbench), the other as under plain SGD."""
    gradients = [np.array([0.3, -1.0, 2.0], "float32"), np.array([0.5, 0.25, -0.75], "float32")]
    start = [np.array([1.0, 2.0, -1.0], "float32"), np.array([-0.5, 0.5, 1.5], "float32")]

    def steps(optimizer, which, variables=None):
        variables = variables or [keras.Variable(start[i]) for i in which]
        for step in range(5):
            optimizer.apply(
                [keras.ops.convert_to_tensor(gradients[i] * (1 + step)) for i in which], variables
            )
        return [np.array(v) for v in variables]

    fast, slow = keras.Variable(start[0]), keras.Variable(start[1])
    scaled = ScaledRateSGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.1, rate_scale=4.0)
    scaled.scale_rate_of([fast])
    got = steps(scaled, [0, 1], [fast, slow])
    sgd = dict(momentum=0.9, nesterov=True)
    np.testing.assert_allclose(
        got[0], steps(keras.optimizers.SGD(0.2, weight_decay=0.025, **sgd), [0])[0], rtol=1e-5
    )
    np.testing.assert_allclose(
        got[1], steps(keras.optimizers.SGD(0.05, weight_decay=0.1, **sgd), [1])[0], rtol=1e-5
    )
    assert not np.allclose(
        got[0], steps(keras.optimizers.SGD(0.05, weight_decay=0.1, **sgd), [0])[0], rtol=1e-3
    )
    with pytest.raises(ValueError, match="before the optimizer is built"):
        scaled.scale_rate_of([fast])


def test_a_frozen_variable_stays_exactly_where_it_was_while_the_others_learn_on():
    """PyTorch's requires_grad=False: no step, no weight decay, its momentum kept as it was; otherwise plain SGD."""
    sgd = dict(momentum=0.9, nesterov=True, weight_decay=0.1)
    freezable, other = keras.Variable([1.0, -2.0, 0.5]), keras.Variable([0.5, 0.5, -1.5])
    optimizer = ScaledRateSGD(0.05, **sgd)
    optimizer.freezable([freezable])
    with pytest.raises(ValueError, match="needs the optimizer built"):
        optimizer.freeze(True)
    reference = [keras.Variable(np.array(v)) for v in (freezable, other)]
    reference_sgd = keras.optimizers.SGD(0.05, **sgd)
    paused = keras.Variable(np.array(freezable))  # plain SGD that skips the frozen steps
    paused_sgd = keras.optimizers.SGD(0.05, **sgd)
    gradients = [keras.ops.convert_to_tensor(g) for g in ([0.3, -1.0, 2.0], [1.0, 0.25, -0.75])]

    def steps(count, frozen):
        optimizer.freeze(frozen)
        for _ in range(count):
            optimizer.apply(gradients, [freezable, other])
            reference_sgd.apply(gradients, reference)
            if not frozen:
                paused_sgd.apply(gradients[:1], [paused])

    optimizer.build([freezable, other])
    steps(3, frozen=False)
    np.testing.assert_allclose(np.array(freezable), np.array(reference[0]), rtol=1e-6)
    held = np.array(freezable)
    steps(3, frozen=True)
    np.testing.assert_array_equal(np.array(freezable), held)
    assert not np.allclose(np.array(reference[0]), held)  # unfrozen, momentum and decay would have moved it
    np.testing.assert_allclose(np.array(other), np.array(reference[1]), rtol=1e-6)
    steps(2, frozen=False)  # freed again, it goes on with the momentum it had when it was frozen
    np.testing.assert_allclose(np.array(freezable), np.array(paused), rtol=1e-6)
    with pytest.raises(ValueError, match="before the optimizer is built"):
        optimizer.freezable([other])
    # Frozen before its first step, it stays at its start.
    start = keras.Variable([1.0, -2.0, 0.5])
    early = ScaledRateSGD(0.05, **sgd)
    early.freezable([start])
    early.build([start])
    early.freeze(True)
    early.apply([keras.ops.ones(3)], [start])
    np.testing.assert_array_equal(np.array(start), [1.0, -2.0, 0.5])


def test_whitening_bias_learns_in_its_epochs_then_stays_frozen_across_a_resume(
    small_archive, tmp_path, monkeypatch
):
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))
    config = RunConfig.from_preset(
        "tuned", data=str(small_archive), epochs=3, whitening_bias_epochs=1, precision="float32", **SMALL
    )

    class Record(keras.callbacks.Callback):
        def __init__(self, stop_after=None):
            super().__init__()
            self.stop_after, self.bias, self.kernel = stop_after, [], []

        def on_train_begin(self, logs=None):
            stem = whitening_stem_with_bias(self.model)
            self.stem, self.start = stem, np.array(stem.kernel)

        def on_epoch_end(self, epoch, logs=None):
            self.bias.append(np.array(self.stem.bias))
            self.kernel.append(np.array(self.stem.kernel))
            if epoch == self.stop_after:
                raise KeyboardInterrupt

    # Stopped after its learning epoch, so the resumed run must freeze it itself.
    first = Record(stop_after=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "ws", run_id="bias", verbose=0, callbacks=[first])
    second = Record()
    train(config, tmp_path / "ws", run_id="bias", verbose=0, callbacks=[second])
    (learnt,) = first.bias
    assert np.abs(learnt).max() > 0  # it learnt in epoch 1, from zero
    assert len(second.bias) == 2
    for bias in second.bias:  # frozen in epochs 2 and 3, after the resume
        np.testing.assert_array_equal(bias, learnt)
    for kernel in (*first.kernel, *second.kernel):  # the whitening itself never learns
        np.testing.assert_array_equal(kernel, first.start)


def test_offset_learning_rate_scale_reaches_every_batch_norm_offset_and_nothing_else():
    """One training step of the tuned network from the same weights: each BatchNorm offset moves 16 times as far
    with offset_learning_rate_scale=16, every other weight the same."""
    config = RunConfig.from_preset("tuned", width=0.25, precision="float32", schedule="constant", stem="none")
    images = smooth_images(16).astype("float32")
    labels = np.arange(16) % 10

    def one_step(scale):
        keras.utils.set_random_seed(3)
        network = build_model(config)
        model = training_model(network, 0, seed=0)
        run_config = config.replace(offset_learning_rate_scale=scale)
        compile_model(model, run_config, plan_device(run_config), steps_per_epoch=1)
        before = {v.path: np.array(v) for v in model.trainable_variables}
        model.train_on_batch(images, keras.utils.to_categorical(labels, 10))
        return {v.path: np.array(v) - before[v.path] for v in model.trainable_variables}

    plain, fast = one_step(1.0), one_step(16.0)
    offsets = {v.path for v in batch_norm_offsets(build_model(config))}
    assert offsets and offsets == {path for path in plain if path.endswith("/beta")}
    for path, step in plain.items():
        if path in offsets:
            np.testing.assert_allclose(fast[path], 16 * step, rtol=1e-4, atol=1e-8)
        else:
            np.testing.assert_allclose(fast[path], step, rtol=1e-4, atol=1e-8)
    assert any(np.abs(plain[path]).max() > 0 for path in offsets)


def alternate_flip_outputs(images, epoch, order=None):
    layer = RandomCropFlip(0, flip="alternate")
    layer.build(images.shape)
    layer.epoch.assign(epoch)
    order = np.arange(len(images)) if order is None else order
    outputs = np.asarray(layer(images[order], training=True))
    return outputs[np.argsort(order)]


def test_alternating_flips_mirror_each_image_on_every_other_epoch():
    images = smooth_images(64).astype("float32")
    mirrored = images[:, :, ::-1, :]
    epochs = [alternate_flip_outputs(images, epoch) for epoch in range(4)]
    flipped = [np.array([np.array_equal(out, m) for out, m in zip(outs, mirrored)]) for outs in epochs]
    kept = [np.array([np.array_equal(out, i) for out, i in zip(outs, images)]) for outs in epochs]
    for epoch in range(4):
        assert (flipped[epoch] | kept[epoch]).all()
    # Each image is mirrored on every other epoch, about half of them on even epochs.
    assert (
        (flipped[0] == ~flipped[1]).all()
        and (flipped[0] == flipped[2]).all()
        and (flipped[1] == flipped[3]).all()
    )
    assert 16 <= flipped[0].sum() <= 48
    # Which epochs an image is mirrored on does not depend on where it is in a batch (the data is shuffled).
    shuffled = alternate_flip_outputs(images, 0, order=np.random.default_rng(0).permutation(64))
    np.testing.assert_array_equal(shuffled, epochs[0])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_training_steps_see_the_flip_alternate_between_epochs(jit_compile):
    """The network scores how much brighter an image's left half is than its right: +1 as given, -1 mirrored.

    With a target of +1 and a learning rate of 0, an epoch's loss is about 0 when the images went in as given
    and about 4 when they went in mirrored, so the losses show what the compiled training steps were fed.
    """
    images = np.zeros((20, 32, 32, 3), "float32")
    images[:, :, :16, :] = 255.0  # the same image, so every image is in the same half
    inputs = keras.Input((32, 32, 3))
    score = keras.layers.Dense(1, use_bias=False)
    network = keras.Model(inputs, score(keras.layers.Flatten()(inputs)))
    sides = np.where(np.arange(32) < 16, 1.0, -1.0)[None, :, None] * np.ones((32, 1, 3))
    score.kernel.assign((sides / (16 * 32 * 3 * 255.0)).reshape(-1, 1))
    model = training_model(network, 1, seed=0, flip="alternate")
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    history = model.fit(images, np.ones(20), batch_size=10, epochs=4, verbose=0, callbacks=[FlipEpoch()])
    mirrored = [loss > 2.0 for loss in history.history["loss"]]
    assert all(loss < 0.5 or loss > 3.0 for loss in history.history["loss"])
    assert mirrored in ([False, True, False, True], [True, False, True, False])


def kernel_of(model, name="predictions/kernel"):
    (variable,) = [v for v in model.weights if v.path.endswith(name)]
    return np.array(variable, dtype=np.float64)


class KernelRecord(keras.callbacks.Callback):
    """Records the output layer's kernel during a run: before its first step, after every step, at each epoch's
    end (what the checkpoint and the backup saw) and at the end; ``stop_after`` stops the run after that epoch,
    as a kill would."""

    def __init__(self, stop_after=None):
        super().__init__()
        self.stop_after = stop_after
        self.first = None
        self.trained = []
        self.at_epoch_end = []
        self.final = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.first is None:
            self.first = kernel_of(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self.trained.append(kernel_of(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.at_epoch_end.append(kernel_of(self.model))
        if epoch == self.stop_after:
            raise KeyboardInterrupt

    def on_train_end(self, logs=None):
        self.final = kernel_of(self.model)


def test_ema_weights_are_the_ones_validated_saved_and_kept_across_a_resume(
    small_archive, tmp_path, monkeypatch
):
    """The averaged weights are what best.keras and the final model hold; a resume continues the trained weights
    and the average from the backup (checked on the output layer's kernel, step by step)."""
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))
    momentum = 0.5
    config = RunConfig.from_preset(
        "tuned", data=str(small_archive), epochs=3, ema_momentum=momentum, precision="float32", **SMALL
    )

    first = KernelRecord(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "ws", run_id="ema", verbose=0, callbacks=[first])
    steps = len(first.trained) // 2
    averages, average = [], None
    for index, weights in enumerate(first.trained):
        average = weights if average is None else momentum * average + (1 - momentum) * weights
        if (index + 1) % steps == 0:
            averages.append(average)
    np.testing.assert_allclose(first.at_epoch_end, averages, atol=1e-5)
    assert not np.allclose(averages[-1], first.trained[-1], atol=1e-4)  # the average really differs

    second = KernelRecord()
    result = train(config, tmp_path / "ws", run_id="ema", verbose=0, callbacks=[second])
    # The resumed epoch starts from the trained weights, not from the average the backup held in the model.
    np.testing.assert_allclose(second.first, first.trained[-1], atol=1e-6)
    for weights in second.trained:
        average = momentum * average + (1 - momentum) * weights
    averages.append(average)
    np.testing.assert_allclose(second.final, average, atol=1e-5)
    # best.keras holds the average at the best epoch (the first with the highest validation accuracy).
    history = result.history["val_accuracy"].tolist()
    best_epoch = history.index(max(history))
    saved = keras.saving.load_model(tmp_path / "ws" / "runs" / "ema" / storage.BEST_MODEL_FILE)
    np.testing.assert_allclose(kernel_of(saved), averages[best_epoch], atol=1e-5)
    assert json.loads((result.run_dir / "config.json").read_text())["ema_momentum"] == momentum


def test_lookahead_schedule_is_airbenchs():
    # airbench: decay = 0.95**5 * (step / total)**3, the share of the slow weights kept at a sync every 5 steps.
    assert LOOKAHEAD_KEEP_PER_STEP == 0.95
    assert lookahead_keep(0, 1000, 5) == 0.0
    assert lookahead_keep(500, 1000, 5) == pytest.approx(0.95**5 * 0.125)
    assert lookahead_keep(1000, 1000, 5) == pytest.approx(0.95**5)
    assert lookahead_keep(1000, 1000, 2) == pytest.approx(0.95**2)
    assert lookahead_keep(1200, 1000, 5) == pytest.approx(
        0.95**5
    )  # steps past the budget keep the end's share


def test_lookahead_syncs_every_k_steps_before_validation_and_trains_on_from_the_slow_weights():
    """Replays the rule step by step on a small model: every k optimizer steps, and before each validation (here
    at each epoch's end, 7 steps not being a multiple of 3), slow += (1 - keep) * (trained - slow); the network
    then holds the slow weights, and the next step starts from them."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(70, 4)).astype("float32"), rng.normal(size=(70, 1)).astype("float32")
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    events = []

    def weights(trained):  # a callback's self.model: under JAX, reaching it brings the variables up to date
        return [np.array(v, dtype=np.float64) for v in trained.weights]

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            events.append(("begin", int(self.model.optimizer.iterations), weights(self.model)))

        def on_train_batch_end(self, batch, logs=None):  # before the lookahead's (earlier in the list)
            events.append(("trained", int(self.model.optimizer.iterations), weights(self.model)))

    class Validated(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):  # after the lookahead's
            events.append(("validated", int(self.model.optimizer.iterations), weights(self.model)))

    every, epochs, steps_per_epoch = 3, 3, 7
    lookahead = Lookahead(model.weights, every=every, total_steps=epochs * steps_per_epoch)
    model.fit(
        x,
        y,
        batch_size=10,
        epochs=epochs,
        validation_data=(x[:10], y[:10]),
        shuffle=False,
        verbose=0,
        callbacks=[Record(), lookahead, Validated()],
    )
    slow, next_start, syncs = events[0][2], None, 0
    for kind, step, values in events:
        if kind == "begin":
            for start, expected in zip(values, next_start or values):
                np.testing.assert_allclose(start, expected, atol=1e-6)
        elif kind == "trained":
            next_start = values
            if step % every == 0 or step % steps_per_epoch == 0:
                keep = lookahead_keep(step, epochs * steps_per_epoch, every)
                slow = [s + (1 - keep) * (t - s) for s, t in zip(slow, values)]
                next_start, syncs = slow, syncs + 1
        else:  # validation scores the slow weights, synced at the epoch's last step
            assert step % steps_per_epoch == 0
            for validated, expected in zip(values, slow):
                np.testing.assert_allclose(validated, expected, atol=1e-6)
    assert syncs == 9  # steps 3, 6, 7 | 9, 12, 14 | 15, 18, 21
    for final, expected in zip(weights(model), slow):
        np.testing.assert_allclose(final, expected, atol=1e-6)
    # Late syncs kept most of the slow weights, so the network really differs from its last trained weights.
    assert not np.allclose(weights(model)[0], events[-2][2][0], atol=1e-4)


def test_lookahead_averages_the_trainable_weights_and_batch_norm_statistics_only():
    config = RunConfig.from_preset("tuned", width=0.25, whitening_bias_epochs=1)
    network = build_model(config, stem_images=smooth_images(64))
    averaged = {id(v) for v in lookahead_variables(network)}
    statistics = [
        v for layer in batch_norm_layers(network) for v in (layer.moving_mean, layer.moving_variance)
    ]
    assert all(id(v) in averaged for v in statistics)
    assert {id(v) for v in network.trainable_variables} - averaged == {id(whitening_bias(network)[0])}
    assert id(network.get_layer("whiten").kernel) not in averaged
    assert len(averaged) == len(network.trainable_variables) - 1 + len(statistics)


def test_lookahead_weights_are_the_ones_validated_saved_and_resumed_from(
    small_archive, tmp_path, monkeypatch
):
    """A run with lookahead, stopped after its first epoch and resumed: every sync, before and after the resume,
    follows the rule from slow weights that carry on across it; the network at each epoch's end (what the
    checkpoint and the backup save) is the slow weights, not the last trained ones, and the resumed run starts
    from them."""
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))
    # 400 training images in batches of 50: 8 steps per epoch, so every epoch ends between two syncs of every 3.
    config = RunConfig.from_preset(
        "tuned", data=str(small_archive), epochs=3, lookahead_steps=3, precision="float32", **SMALL
    )
    syncs, sync = [], Lookahead.sync

    def recorded_sync(lookahead):
        trained, step, synced = kernel_of(lookahead.model), lookahead._step, lookahead._synced_at
        sync(lookahead)
        if step != synced:
            syncs.append((step, trained, kernel_of(lookahead.model)))

    monkeypatch.setattr(Lookahead, "sync", recorded_sync)

    first = KernelRecord(stop_after=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "ws", run_id="lookahead", verbose=0, callbacks=[first])
    assert len(first.trained) == 8
    # Step 8 is no multiple of 3: the network trained on after the sync at step 6, and was synced for validation.
    assert not np.allclose(first.at_epoch_end[0], first.trained[-1], atol=1e-5)
    second = KernelRecord()
    result = train(config, tmp_path / "ws", run_id="lookahead", verbose=0, callbacks=[second])
    np.testing.assert_allclose(second.first, first.at_epoch_end[0], atol=1e-6)
    assert [step for step, _, _ in syncs] == [3, 6, 8, 9, 12, 15, 16, 18, 21, 24]
    slow = first.first
    for step, trained, synced in syncs:
        slow = slow + (1 - lookahead_keep(step, 24, 3)) * (trained - slow)
        np.testing.assert_allclose(synced, slow, atol=1e-5)
    history = result.history["val_accuracy"].tolist()
    saved = keras.saving.load_model(tmp_path / "ws" / "runs" / "lookahead" / storage.BEST_MODEL_FILE)
    epoch_ends = first.at_epoch_end + second.at_epoch_end
    np.testing.assert_allclose(kernel_of(saved), epoch_ends[history.index(max(history))], atol=1e-6)
    assert json.loads((result.run_dir / "config.json").read_text())["lookahead_steps"] == 3


def test_all_options_on_train_end_to_end(small_archive, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))
    config = RunConfig.from_preset(
        "tuned", data=str(small_archive), epochs=2, head_pool="global_max", **AIRBENCH_OPTIONS, **SMALL
    )
    result = train(config, tmp_path / "ws", run_id="airbench", verbose=0)
    assert result.history["epoch"].tolist() == [1, 2]
    assert 0.0 <= result.summary["final_val_accuracy"] <= 1.0
    saved = load_network(result.run_dir / storage.BEST_MODEL_FILE)
    assert saved.get_layer("whiten").kernel.shape == (2, 2, 3, 24)
    # Its whitening kernel stays frozen when the saved network is loaded to train on; only its bias learns.
    assert [v.path for v in saved.trainable_variables if "whiten" in v.path] == ["whiten/bias"]


def test_recipes_name_their_changed_settings():
    assert parse_recipe("tuned") == ("tuned", {})
    assert parse_recipe("tuned+ema_momentum=0.99+flip=alternate+batch_norm_scale=false") == (
        "tuned",
        {"ema_momentum": 0.99, "flip": "alternate", "batch_norm_scale": False},
    )
    with pytest.raises(
        RunConfigError, match=r"recipe 'tuned\+ema=0.99': unknown run config fields \['ema'\]"
    ):
        parse_recipe("tuned+ema=0.99")
    with pytest.raises(RunConfigError, match="ema_momentum must be in"):
        parse_recipe("tuned+ema_momentum=2")
    with pytest.raises(ValueError, match="expected preset\\+name=value"):
        parse_recipe("tuned+ema_momentum")


def test_accuracy_table_gives_time_parameters_and_multiply_adds_per_recipe():
    """The table of a fake two-recipe, two-seed result: every figure traced to its input."""
    recipes = ("tuned", "tuned+ema_momentum=0.99")
    columns = {}
    for recipe, accuracy in zip(recipes, (0.80, 0.90)):
        for seed, delta in ((0, 0.0), (1, 0.02)):
            columns[f"{recipe} s{seed}"] = pd.Series([0.5, accuracy + delta], index=[1, 2])
            columns[f"{recipe} s{seed} s/epoch"] = pd.Series([60.0, 90.0 + 30 * seed], index=[1, 2])
    table = pd.DataFrame(columns)
    table.attrs["final_val_accuracy"] = {"tuned s0": 0.81, "tuned s1": 0.83}
    table.attrs["tta"] = {"tuned": "flip test-time augmentation"}
    table.attrs["network"] = {}
    for recipe in recipes:
        preset, changes = parse_recipe(recipe)
        table.attrs["network"][recipe] = network_size(RunConfig.from_preset(preset, width=0.25, **changes))
    text = format_accuracy_table(table)
    lines = text.splitlines()
    tuned = next(line for line in lines if line.startswith(" tuned:"))
    ema = next(line for line in lines if line.startswith("tuned+ema_momentum=0.99:"))
    size = table.attrs["network"]["tuned"]
    # Seconds per epoch: the mean of 60, 90, 60, 120; total time: the mean over seeds of 150 s and 180 s.
    assert "81.00% (seeds 80.00, 82.00; spread 2.00) validation accuracy after 2 epochs" in tuned
    assert "82 s/epoch, 2.8 min in all" in tuned
    assert (
        f"{size['params'] / 1e6:.2f} M parameters, {size['multiply_adds'] / 1e6:.0f} M multiply-adds" in tuned
    )
    assert "91.00% (seeds 90.00, 92.00; spread 2.00)" in ema
    assert "82.00% (seeds 81.00, 83.00; spread 2.00) with the recipe's evaluation (flip test-time" in text
    # The EMA changes no network: the same size as the tuned recipe's.
    assert table.attrs["network"]["tuned+ema_momentum=0.99"] == size
