"""A tiny run that stops after a chosen epoch, as a disconnect or kill would: shared by the tests of resuming."""

import keras

# The smallest run that still trains and saves real epochs.
TINY = dict(data="synthetic", train_size=200, width=0.25, batch_size=64, seed=0)


class Interrupted(Exception):
    """Stands for a kill or disconnect after an epoch was saved."""


class StopAfter(keras.callbacks.Callback):
    """Raises ``Interrupted`` at the end of epoch ``epochs`` (after cifarlib's own callbacks saved it)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise Interrupted
