"""What training prints: one line per epoch with accuracy in percent, seconds and learning rate said apart."""

import keras
import numpy as np
import pytest

from cifarlib.callbacks import EpochProgress, EpochTimer
from cifarlib.formatting import describe_epoch


def test_epoch_line_orders_metrics_and_says_time_and_rate_apart():
    logs = {
        "accuracy": 0.9822,
        "loss": 0.63541,
        "val_accuracy": 0.1,
        "val_loss": 5.03,
        "seconds": 1.37,
        "learning_rate": 0.05,
    }
    assert describe_epoch(3, 10, logs) == (
        "epoch 3/10: loss 0.6354, accuracy 98.22%, validation loss 5.0300, validation accuracy 10.00%; "
        "1.4 s, learning rate 0.05"
    )


@pytest.mark.parametrize("verbose", [1, 2])
def test_fit_prints_one_plain_line_per_epoch(verbose, capsys):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).normal(size=(32, 4)), np.arange(32) % 3
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        validation_data=(x, y),
        callbacks=[EpochTimer(), EpochProgress()],
        verbose=verbose,
    )
    out = capsys.readouterr().out
    lines = [line for line in out.replace("\r", "\n").splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("%" in line and " s, learning rate " in line for line in lines)
    # Keras's own line would have shown them as metrics ("seconds: 0.0123 - learning_rate: 0.0100").
    assert "seconds:" not in out and "learning_rate:" not in out
    # What stays on screen (each line as its last "\r" left it): the epoch lines alone, no Keras header, and at
    # verbose=1 no final state of the bar before them.
    shown = [line.rsplit("\r", 1)[-1].strip() for line in out.split("\n")]
    assert [line for line in shown if line] == lines
    assert "Epoch 1/2" not in out
    if verbose == 2:
        assert "step" not in out
    else:
        # The bar, while it runs, shows accuracy beside the loss.
        bar = [part for part in out.split("\r") if "step" in part]
        assert bar and all("accuracy: " in part and "loss: " in part for part in bar)


def test_train_names_what_it_trains_before_the_first_epoch(tiny_archive, tmp_path, monkeypatch, capsys):
    from cifarlib.config import RunConfig
    from cifarlib.train import train

    monkeypatch.setenv("CIFARLIB_STAGING", str(tmp_path / "staging"))
    config = RunConfig.from_preset("reference", data=str(tiny_archive), epochs=1, width=0.25, batch_size=50)
    result = train(config, tmp_path / "ws", run_id="first-line", verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run first-line: new run of 1 epochs in {result.run_dir}"
    assert lines[1].startswith(
        "reference recipe, width 0.25, batch 50, 1 epochs: 80 training / 20 validation / "
    )
    assert "test images; CPU" in lines[1]
    assert lines[2].startswith("epoch 1/1: loss ")
