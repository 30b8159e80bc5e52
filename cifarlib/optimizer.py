"""Nesterov SGD in which chosen variables learn at a multiple of the learning rate (airbench's ``bias_scaler``).

Keras optimizers take one learning rate for every variable. airbench trains its BatchNorm offsets 64 times faster
than its other weights, so that the thresholds of the activations keep up with the quickly changing convolutions.
For SGD with momentum, a learning rate ``k`` times larger on one variable is exactly a gradient ``k`` times larger
on it: the momentum buffer and the step are linear in the gradient, and Keras's decoupled weight decay
(``w -= lr * decay * w``) does not read the gradient, so it stays at the common rate, as in airbench. This class
scales those gradients before Keras's own SGD update, so everything else (the schedule, momentum, weight decay,
the weight average, loss scaling, the saved optimizer variables) is Keras's.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="cifarlib")
class ScaledRateSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` in which the variables given to ``scale_rate_of`` learn at ``rate_scale`` times its
    learning rate.

    Args:
        rate_scale: the multiple (1: plain SGD).
        *args, **kwargs: as for ``keras.optimizers.SGD``.

    Call ``scale_rate_of(variables)`` before the optimizer is built, as for ``exclude_from_weight_decay``.
    """

    def __init__(self, *args, rate_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.rate_scale = float(rate_scale)
        self._scaled_keys: frozenset = frozenset()

    def scale_rate_of(self, variables) -> None:
        if self.built:
            raise ValueError("scale_rate_of() must be called before the optimizer is built")
        self._scaled_keys = frozenset(self._var_key(variable) for variable in variables)

    def apply(self, grads, trainable_variables=None):
        if self.rate_scale != 1.0 and self._scaled_keys:
            # Without variables, the gradients are in the order the optimizer was built with (as Keras's apply reads them).
            variables = (
                self._trainable_variables if trainable_variables is None else list(trainable_variables)
            )
            grads = [
                grad * self.rate_scale
                if grad is not None and self._var_key(variable) in self._scaled_keys
                else grad
                for grad, variable in zip(grads, variables)
            ]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "rate_scale": self.rate_scale}


def batch_norm_offsets(model: keras.Model) -> list:
    """The trainable offsets (``beta``) of every BatchNormalization in ``model``, nested models included."""
    return [
        layer.beta
        for layer in _nested_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.center and layer.trainable
    ]


def _nested_layers(model):
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _nested_layers(layer)
