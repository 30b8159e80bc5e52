"""Issue 6: the pieces of the tuned recipe on synthetic data, and the accuracy benchmark's plumbing."""

import importlib.util
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import keras
import numpy as np
import pytest

from cifarlib import storage
from cifarlib.augment import RandomCropFlip
from cifarlib.bench_accuracy import accuracy_benchmark, format_accuracy_table, planned_runs
from cifarlib.config import PRESETS, RunConfig
from cifarlib.errors import RunConfigError
from cifarlib.evaluation import describe_tta, evaluate_model, predict_probabilities, score, tta_views
from cifarlib.testing import write_image_folder


def test_augmentation_keeps_shapes_and_label_alignment():
    # Each image is one flat colour that encodes its label; reflect padding keeps it flat, so after the crop
    # and flip every image must still carry its own label's colour.
    labels = np.arange(16) % 10
    images = np.repeat((labels * 20.0)[:, None, None, None], 32 * 32 * 3, axis=1).reshape(16, 32, 32, 3)
    augmented = np.asarray(RandomCropFlip(4, seed=3)(images.astype("float32"), training=True))
    assert augmented.shape == images.shape
    np.testing.assert_array_equal(augmented[:, 0, 0, 0], labels * 20.0)
    assert (augmented == images).all()


def test_each_output_is_a_window_of_the_padded_image_maybe_mirrored():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(12, 32, 32, 3)).astype("float32")
    augmented = np.asarray(RandomCropFlip(4, seed=1)(images, training=True))
    padded = np.pad(images, [(0, 0), (4, 4), (4, 4), (0, 0)], mode="reflect")
    moved = 0
    for index in range(len(images)):
        windows = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if np.array_equal(
                augmented[index],
                (lambda w: w[:, ::-1] if flip else w)(padded[index, dy : dy + 32, dx : dx + 32]),
            )
        ]
        assert windows, f"image {index} is not a crop of its own padded image"
        moved += (4, 4, False) not in windows
    assert moved >= 6  # the crops and flips really vary across the batch
    # At inference the layer changes nothing.
    np.testing.assert_array_equal(np.asarray(RandomCropFlip(4)(images, training=False)), images)


def test_cosine_schedule_follows_keras_documented_formula():
    # CosineDecay's documented formula with warm-up: linear from 0 to the peak over the warm-up steps, then
    # peak * 0.5 * (1 + cos(pi * min(step - warmup, decay) / decay)), with decay = total - warmup.
    from cifarlib.device import plan_device
    from cifarlib.train import learning_rate_schedule

    config = RunConfig(
        learning_rate=0.1, epochs=10, warmup_epochs=1.0, precision="float32", jit_compile=False
    )
    schedule = learning_rate_schedule(config, plan_device(config), steps_per_epoch=10)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    for step in (0, 4, 9, 10, 35, 60, 99, 100, 150):
        if step < 10:
            expected = 0.1 * step / 10
        else:
            expected = 0.5 * 0.1 * (1 + math.cos(math.pi * min(step - 10, 90) / 90))
        assert float(schedule(step)) == pytest.approx(expected, abs=1e-7), step
    # A stock class: it round-trips through its config without cifarlib.
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(restored(42)) == pytest.approx(float(schedule(42)))


@pytest.mark.parametrize("epochs", [1, 2, 40])
def test_tuned_warm_up_fits_any_budget(epochs):
    # The tuned preset's one-epoch warm-up is capped at half the budget, so even a 1-epoch run trains.
    from cifarlib.device import plan_device
    from cifarlib.train import learning_rate_schedule

    config = RunConfig.from_preset("tuned", epochs=epochs, precision="float32", jit_compile=False)
    assert config.effective_warmup_epochs == min(1.0, epochs / 2)
    schedule = learning_rate_schedule(config, plan_device(config), steps_per_epoch=8)
    warmup_steps = round(config.effective_warmup_epochs * 8)
    assert float(schedule(warmup_steps)) == pytest.approx(config.learning_rate)
    assert float(schedule(epochs * 8)) == pytest.approx(0.0, abs=1e-9)


def test_tta_averages_the_prediction_of_the_image_and_its_mirror():
    # A model whose output depends on where the bright pixel is, so the mirror predicts something else.
    inputs = keras.Input((32, 32, 3))
    flat = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(10, activation="softmax", kernel_initializer="random_normal")(flat)
    model = keras.Model(inputs, outputs)
    images = np.zeros((4, 32, 32, 3), np.float32)
    images[:, 5, 2, :] = 1.0
    plain = model.predict(images, verbose=0)
    mirrored = model.predict(images[:, :, ::-1, :], verbose=0)
    assert not np.allclose(plain, mirrored)
    np.testing.assert_allclose(
        predict_probabilities(model, images, tta=True), 0.5 * (plain + mirrored), rtol=1e-5
    )
    np.testing.assert_allclose(predict_probabilities(model, images, tta=False), plain, rtol=1e-6)


def test_shift_tta_adds_the_image_and_its_mirror_moved_both_ways():
    rng = np.random.default_rng(1)
    images = rng.random((3, 32, 32, 3)).astype(np.float32)
    views = list(tta_views(images, tta=True, translate=2))
    assert len(views) == 6 and all(v.shape == images.shape for v in views)
    np.testing.assert_array_equal(views[0], images)
    np.testing.assert_array_equal(views[1], images[:, :, ::-1])
    # Moved 2 pixels down-right, then 2 up-left; the uncovered border is the reflection of the image.
    np.testing.assert_array_equal(views[2][:, 2:, 2:], images[:, :-2, :-2])
    np.testing.assert_array_equal(views[2][:, 0, 2:], images[:, 2, :-2])
    np.testing.assert_array_equal(views[4][:, :-2, :-2], images[:, 2:, 2:])
    np.testing.assert_array_equal(views[3], views[2][:, :, ::-1])
    np.testing.assert_array_equal(views[5], views[4][:, :, ::-1])
    # Shifts ride on the flip: without tta there is one view whatever translate says.
    assert len(list(tta_views(images, tta=False, translate=2))) == 1
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax", kernel_initializer="random_normal"),
        ]
    )
    expected = np.mean([model.predict(v, verbose=0) for v in views], axis=0)
    np.testing.assert_allclose(
        predict_probabilities(model, images, tta=True, tta_translate=2), expected, rtol=1e-5
    )
    assert describe_tta(True, 2) == "flip and 2-pixel shift test-time augmentation, 6 views"
    with pytest.raises(ValueError, match="translate must be an integer from 0 to 8"):
        next(tta_views(images, tta=True, translate=9))
    with pytest.raises(RunConfigError, match="tta_translate must be an integer"):
        RunConfig(tta_translate=-1)


def test_score_is_categorical_accuracy_and_cross_entropy():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    result = score(probabilities, np.array([0, 1, 0]))
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["loss"] == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.5)) / 3)
    assert evaluate_model(None, np.zeros((0, 32, 32, 3)), np.zeros(0)) == {"accuracy": None, "loss": None}


def test_presets_and_validation():
    seed = RunConfig.from_preset("reference")
    assert (seed.optimizer, seed.learning_rate, seed.batch_size, seed.epochs, seed.schedule) == (
        "adam",
        1e-3,
        256,
        100,
        "plateau",
    )
    assert (seed.early_stopping_patience, seed.reduce_lr_factor, seed.reduce_lr_patience) == (10, 0.3, 4)
    tuned = RunConfig.from_preset("tuned", epochs=10)
    assert tuned.epochs == 10 and tuned.optimizer == "sgd" and tuned.label_smoothing == 0.1 and tuned.tta
    assert tuned.decay_kernels_only and not seed.decay_kernels_only and seed.weight_decay == 0
    assert set(PRESETS) == {"reference", "tuned"}
    with pytest.raises(RunConfigError, match="unknown preset"):
        RunConfig.from_preset("resnet")
    with pytest.raises(RunConfigError, match="unknown run config fields"):
        RunConfig.from_preset("reference", colour=True)
    with pytest.raises(RunConfigError) as error:
        RunConfig(batch_size=0, width=-1, optimizer="rmsprop")
    for part in (
        "batch_size must be a positive integer",
        "width must be a positive",
        "optimizer must be one of",
    ):
        assert part in str(error.value)
    assert RunConfig.from_dict({**seed.to_dict(), "tensorflow_version": "2.21"}) == seed
    with pytest.raises(RunConfigError, match=r"flip='alternate' needs crop_padding > 0") as error:
        RunConfig.from_preset("reference", flip="alternate")
    assert "\n" not in str(error.value)
    assert RunConfig.from_preset("reference", flip="alternate", crop_padding=2).flip == "alternate"


def test_every_setting_is_a_documented_flag():
    import dataclasses

    done = subprocess.run(
        [sys.executable, "-m", "cifarlib", "train", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for field in dataclasses.fields(RunConfig):
        assert "--" + field.name.replace("_", "-") in done.stdout
        assert field.metadata["help"].split(" ")[0] in done.stdout


def test_accuracy_benchmark_needs_its_images(tmp_path):
    command = [sys.executable, "-m", "cifarlib", "bench-accuracy", "--workspace", str(tmp_path / "ws")]
    environment = {k: v for k, v in os.environ.items() if k != "CIFARLIB_ACCURACY_DATA"}
    # An explicit path that does not exist, given as a flag or by the environment, is an error.
    absent = str(tmp_path / "absent.tar.gz")
    for extra, env in (
        (["--data", absent], environment),
        ([], {**environment, "CIFARLIB_ACCURACY_DATA": absent}),
    ):
        done = subprocess.run(command + extra, capture_output=True, text=True, env=env)
        assert done.returncode == 1 and done.stderr.startswith("cifarlib bench-accuracy: error: "), (
            done.stderr
        )
        assert f"{absent}: no such file" in done.stderr and len(done.stderr.splitlines()) == 1
    # None named: a one-line error naming --data and the variable.
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert "--data is required" in done.stderr and "CIFARLIB_ACCURACY_DATA" in done.stderr
    assert not (tmp_path / "ws").exists()


def test_accuracy_benchmark_refuses_bad_seeds_and_batch_sizes_before_training(tmp_path):
    images = tmp_path / "images.tar.gz"
    images.write_bytes(b"")  # never read: every run is checked before the images are opened
    command = [sys.executable, "-m", "cifarlib", "bench-accuracy", "--data", str(images)]
    command += ["--workspace", str(tmp_path / "ws")]
    for extra, expected in (
        (["--seeds", "0,x"], "--seeds must be comma-separated integers >= 0, got '0,x'"),
        (["--seeds", "-1"], "--seeds must be comma-separated integers >= 0"),
        (["--seeds", "0,4294967296"], "seed must be an integer from 0 to 2**32 - 1, got 4294967296"),
        (["--batch-size", "0"], "batch_size must be a positive integer, got 0"),
        (["--recipes", "tuned+no_such_setting=1"], "no_such_setting"),
    ):
        done = subprocess.run(command + extra, capture_output=True, text=True)
        assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("cifarlib bench-accuracy: error: ") and expected in done.stderr
    assert not (tmp_path / "ws").exists()


def test_accuracy_benchmark_gives_a_long_recipe_a_short_stable_run_id(tmp_path):
    long = "tuned+" + "+".join(
        f"{name}={value}"
        for name, value in [
            ("ema_momentum", 0.99),
            ("flip", "alternate"),
            ("batch_norm_momentum", 0.6),
            ("batch_norm_scale", "false"),
            ("activation", "gelu"),
            ("head_pool", "global_max"),
        ]
    )
    other = long.replace("global_max", "global")
    plan = planned_runs(
        tmp_path, (long, other, "tuned"), (0, 1), epochs=10, width=0.5, train_size=None, batch_size=None
    )
    ids = [run_id for *_, run_id in plan]
    assert len(set(ids)) == 6 and all(len(i) <= storage.RUN_ID_MAX_LENGTH for i in ids)
    assert all(storage.check_run_id(i) for i in ids)
    assert ids[0].startswith("bench-accuracy-tuned-ema_momentum-0.99-flip-alternate") and ids[0].endswith(
        "-w0.5-e10-s0"
    )
    assert ids[4] == "bench-accuracy-tuned-w0.5-e10-s0"  # short ones stay as they were
    rerun = planned_runs(tmp_path, (long,), (0,), epochs=10, width=0.5, train_size=None, batch_size=None)
    assert rerun[0][3] == ids[0]  # the same id each time, so the run resumes


def test_accuracy_benchmark_compares_recipes_on_an_image_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))
    folder = write_image_folder(tmp_path / "images", images_per_class=10, suffix=".jpg")
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "train", arcname="cifar10-jpeg/train")
    table = accuracy_benchmark(archive, epochs=2, width=0.25, workspace=tmp_path / "ws", batch_size=30)
    assert list(table.index) == [1, 2]
    assert {"reference s0", "tuned s0"} <= set(table.columns)
    text = format_accuracy_table(table)
    assert "reference: " in text and "tuned: " in text and "after 2 epochs" in text
    # Seconds per epoch are steady-state: with two epochs, the second's (the first compiles).
    steady = table.attrs["steady_seconds_per_epoch"]["tuned s0"]
    assert steady == pytest.approx(table["tuned s0 s/epoch"].loc[2])
    (tuned_line,) = [line for line in text.splitlines() if line.strip().startswith("tuned: ")]
    assert f"after 2 epochs, {steady:.0f} s/epoch" in tuned_line
    # The last epoch's weights are scored again with each recipe's own evaluation: flip TTA for tuned only.
    final = table.attrs["final_val_accuracy"]
    assert set(final) == {"reference s0", "tuned s0"} and all(0.0 <= v <= 1.0 for v in final.values())
    assert (
        "(no test-time augmentation)" in text
        and "(flip and 1-pixel shift test-time augmentation, 6 views)" in text
    )


@pytest.mark.parametrize("kernels_only", [True, False])
def test_kernel_only_weight_decay_leaves_batch_norm_and_biases_alone(kernels_only):
    from cifarlib.device import plan_device
    from cifarlib.train import compile_model

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(keras.layers.Dense(2)(inputs)))
    dense, norm = model.layers[1], model.layers[2]
    dense.bias.assign(np.ones(2, "float32"))
    config = RunConfig(
        optimizer="sgd",
        learning_rate=0.1,
        schedule="constant",
        weight_decay=0.5,
        decay_kernels_only=kernels_only,
        precision="float32",
        jit_compile=False,
    )
    compile_model(model, config, plan_device(config), steps_per_epoch=1)
    kernel = np.array(dense.kernel)
    # A zero gradient leaves only the decoupled decay: each decayed weight shrinks by learning rate x decay.
    model.optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in model.trainable_variables])
    np.testing.assert_allclose(np.array(dense.kernel), kernel * 0.95, rtol=1e-6)
    vector_factor = 1.0 if kernels_only else 0.95
    np.testing.assert_allclose(np.array(dense.bias), vector_factor, rtol=1e-6)
    np.testing.assert_allclose(np.array(norm.gamma), vector_factor, rtol=1e-6)


def _tta_views_script():
    """scripts/tta_views.py, loaded as a module (scripts/ is not a package)."""
    path = Path(__file__).resolve().parent.parent / "scripts" / "tta_views.py"
    spec = importlib.util.spec_from_file_location("tta_views_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_view_set_script_scores_the_recipes_row_as_the_library_does():
    """The comparison in docs/accuracy.md is only fair if its 'recipe' row is the recipe's own evaluation."""
    script = _tta_views_script()
    rng = np.random.default_rng(2)
    images = rng.random((64, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    model = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    predictions = script.predict_views(model, images, script.needed_views())
    recipe = RunConfig.from_preset("tuned")
    library = score(
        predict_probabilities(model, images, tta=recipe.tta, tta_translate=recipe.tta_translate), labels
    )
    recipe_row = script.VIEW_SETS[script.RECIPE_ROW]
    assert script.view_set_accuracy(predictions, labels, recipe_row) == pytest.approx(
        100 * library["accuracy"]
    )
    # A view set's weights decide its answer: all the weight on one view is that view's accuracy.
    mirrored_only = {(0, 0, True): 1.0, (0, 0, False): 0.0}
    expected = 100 * np.mean(np.argmax(predictions[(0, 0, True)], axis=1) == labels)
    assert script.view_set_accuracy(predictions, labels, mirrored_only) == pytest.approx(expected)
    assert script.view_set_accuracy(predictions, labels, mirrored_only, log=True) == pytest.approx(expected)
