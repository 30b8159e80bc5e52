"""Nesterov SGD in which chosen variables learn at a multiple of the learning rate (airbench's ``bias_scaler``), and
chosen ones learn only until they are frozen (airbench's whitening bias, frozen after its first epochs).

Keras optimizers take one learning rate for every variable. airbench trains its BatchNorm offsets 64 times faster
than its other weights, so that the thresholds of the activations keep up with the quickly changing convolutions.
For SGD with momentum, a learning rate ``k`` times larger on one variable is exactly a gradient ``k`` times larger
on it: the momentum buffer and the step are linear in the gradient, and Keras's decoupled weight decay
(``w -= lr * decay * w``) does not read the gradient, so it stays at the common rate, as in airbench. This class
scales those gradients in Keras's own SGD update, so everything else (the schedule, momentum, weight decay,
the weight average, loss scaling, the saved optimizer variables) is Keras's. (Gradient clipping, which cifarlib
does not use, would clip before the scaling.)

Freezing a variable part-way through training (PyTorch's ``requires_grad = False``) cannot be done by Keras's
``trainable`` flag without retracing the training step, and a zero gradient is not enough: the momentum built up
would carry the variable on. So a frozen variable's update (step, weight decay and momentum alike) is undone in
the same step, and it stays exactly as it was; ``FreezeAfter`` freezes at an epoch.

``Lookahead`` is airbench's weight averaging (Zhang et al.'s lookahead with a schedule): slow weights that follow
the trained ones, from which training continues. Keras has no lookahead, and its optimizers' ``use_ema`` average
never feeds back into training, so it is a callback here; with the weights synced at each epoch's end, Keras's
backup of the model holds all of its state.
"""

from __future__ import annotations

import keras
from keras import ops

from cifarlib.model import nested_layers, whitening_stem_with_bias


@keras.saving.register_keras_serializable(package="cifarlib")
class ScaledRateSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` in which the variables given to ``scale_rate_of`` learn at ``rate_scale`` times its
    learning rate, and those given to ``freezable`` stop learning once ``freeze(True)`` is called.

    Args:
        rate_scale: the multiple (1: plain SGD).
        *args, **kwargs: as for ``keras.optimizers.SGD``.

    Call ``scale_rate_of(variables)`` and ``freezable(variables)`` before the optimizer is built, as for
    ``exclude_from_weight_decay``.
    """

    def __init__(self, *args, rate_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.rate_scale = float(rate_scale)
        self._scaled_keys: frozenset = frozenset()
        self._freezable_keys: frozenset = frozenset()

    def scale_rate_of(self, variables) -> None:
        self._scaled_keys = self._keys_before_build(variables, "scale_rate_of")

    def freezable(self, variables) -> None:
        self._freezable_keys = self._keys_before_build(variables, "freezable")

    def _keys_before_build(self, variables, method: str) -> frozenset:
        if self.built:
            raise ValueError(f"{method}() must be called before the optimizer is built")
        return frozenset(self._var_key(variable) for variable in variables)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        if self._freezable_keys:
            # 1.0 while the freezable variables are frozen; an optimizer variable, so compiled steps read its value.
            # Only optimizers with freezable variables have it, so backups of earlier runs keep their layout.
            self.frozen = self.add_variable((), initializer="zeros", dtype="float32", name="frozen")
            # Each freezable variable's value after its last step: where a frozen one is put back to, undoing the
            # weight decay Keras applies before the update step as well as the step itself.
            self._held = {}
            for variable in variables:
                if self._var_key(variable) in self._freezable_keys:
                    held = self.add_variable_from_reference(variable, "held")
                    held.assign(ops.convert_to_numpy(variable))  # a copy: JAX must not see one buffer twice
                    self._held[self._var_key(variable)] = held

    def freeze(self, frozen: bool) -> None:
        """Freeze (``True``) or free the ``freezable`` variables from the next step on."""
        if not hasattr(self, "frozen"):
            raise ValueError("freeze() needs the optimizer built, after freezable() was given variables")
        self.frozen.assign(1.0 if frozen else 0.0)

    def update_step(self, gradient, variable, learning_rate):
        key = self._var_key(variable)
        if self.rate_scale != 1.0 and key in self._scaled_keys:
            gradient = gradient * self.rate_scale
        if key not in self._freezable_keys:
            return super().update_step(gradient, variable, learning_rate)
        # A variable's value as a tensor under every backend; under TensorFlow that can be the variable itself,
        # which later assigns change, so the snapshot is taken with ops.copy.
        value = ops.convert_to_tensor
        momentum = self.momentums[self._get_variable_index(variable)] if self.momentums else None
        momentum_before = None if momentum is None else ops.copy(value(momentum))
        super().update_step(gradient, variable, learning_rate)
        frozen = value(self.frozen) > 0
        kept = ops.where(frozen, value(self._held[key]), value(variable))
        self.assign(variable, kept)
        self.assign(self._held[key], kept)
        if momentum is not None:  # as PyTorch keeps a frozen variable's momentum buffer as it was
            self.assign(momentum, ops.where(frozen, momentum_before, value(momentum)))

    def get_config(self):
        return {**super().get_config(), "rate_scale": self.rate_scale}


class FreezeAfter(keras.callbacks.Callback):
    """Freezes the ``ScaledRateSGD.freezable`` variables from epoch ``epochs`` on (counting from 0), so they learn in
    the first ``epochs`` epochs only; set as each epoch begins, so a resumed run freezes them again."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        # Under mixed float16, Keras wraps the optimizer in a LossScaleOptimizer.
        getattr(optimizer, "inner_optimizer", optimizer).freeze(epoch >= self.epochs)


# airbench's lookahead keeps 0.95 of the slow weights per optimizer step between syncs, at the end of the run.
LOOKAHEAD_KEEP_PER_STEP = 0.95


def lookahead_keep(step: int, total_steps: int, every: int) -> float:
    """The share of the slow weights a lookahead sync after optimizer step ``step`` of ``total_steps`` keeps
    (airbench's schedule): ``0.95 ** every`` times the cube of the share of the run done. Early on the slow weights
    follow the trained ones closely; as the learning rate falls they average over more and more steps."""
    done = min(max(step / total_steps, 0.0), 1.0)
    return LOOKAHEAD_KEEP_PER_STEP**every * done**3


class Lookahead(keras.callbacks.Callback):
    """Every ``every`` optimizer steps, slow weights move a share ``1 - lookahead_keep(...)`` of the way to the
    network's weights, and the network goes on training from the slow weights (airbench's lookahead).

    Args:
        variables: the weights to average (airbench averages BatchNorm's moving statistics too).
        every: optimizer steps between syncs.
        total_steps: the optimizer steps of the whole run, which the schedule is a fraction of.

    cifarlib's addition to airbench's rule: the weights are also synced before each validation and at each epoch's
    end, with the schedule's share at that step (airbench syncs every ``every`` steps only, and at the very end puts
    the slow weights back without a last pull). So the network that is validated, saved in ``best.keras`` and
    backed up is the slow one; a resumed run starts with slow and fast weights equal, and the model's weights and
    the optimizer's step counter (in Keras's backup) are all the state there is. Put it before the callbacks that
    save the model at an epoch's end.
    """

    def __init__(self, variables, *, every: int, total_steps: int):
        super().__init__()
        if every < 1 or total_steps < 1:
            raise ValueError(f"every and total_steps must be >= 1, got {every} and {total_steps}")
        self.variables = list(variables)
        self.every = every
        self.total_steps = total_steps
        self._slow = None
        # Optimizer steps taken, read once and then counted here: reading the optimizer's counter at every step
        # would wait for the device each time. (A step that mixed float16's loss scaling skips counts here too.)
        self._step = None
        self._synced_at = None

    def on_train_batch_begin(self, batch, logs=None):
        # Taken at the first step rather than in on_train_begin, so after BackupAndRestore has loaded a backup,
        # wherever it stands in the list. Reaching the model first brings its variables up to date under JAX.
        if self._slow is None:
            self._step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
            self._synced_at = self._step
            self._slow = [ops.copy(ops.convert_to_tensor(variable)) for variable in self.variables]

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every == 0:
            self.sync()

    def on_test_begin(self, logs=None):
        if self._slow is not None:  # a validation within fit: the slow weights are scored
            self.sync()

    def on_epoch_end(self, epoch, logs=None):
        if self._slow is not None:
            self.sync()

    def on_train_end(self, logs=None):
        self._slow = None

    def sync(self) -> None:
        """Move the slow weights towards the network's by the share the schedule gives at this step, then put
        them in the network (once per step)."""
        if self._step == self._synced_at:
            return
        # Under JAX, fit keeps the trained weights outside the variables between steps: put them back first.
        getattr(self.model, "jax_state_sync", lambda: None)()
        pull = 1.0 - lookahead_keep(self._step, self.total_steps, self.every)
        for index, variable in enumerate(self.variables):
            slow = self._slow[index]
            slow = slow + pull * (ops.convert_to_tensor(variable) - slow)
            # A copy in the network: JAX's training step donates the variables' buffers, which would delete ours.
            variable.assign(ops.copy(slow))
            self._slow[index] = slow
        self._synced_at = self._step


def lookahead_variables(network: keras.Model) -> list:
    """What lookahead averages, as airbench does: every trainable float weight and BatchNorm's moving statistics
    (the frozen whitening kernel never moves, so it is left out; so is a freezable whitening bias, which
    ``ScaledRateSGD`` holds in place once frozen)."""
    freezable = {id(variable) for variable in whitening_bias(network)}
    statistics = [
        variable
        for layer in nested_layers(network)
        if isinstance(layer, keras.layers.BatchNormalization)
        for variable in (layer.moving_mean, layer.moving_variance)
    ]
    trainable = [
        variable
        for variable in network.trainable_variables
        if "float" in str(variable.dtype) and id(variable) not in freezable
    ]
    return trainable + statistics


def batch_norm_offsets(model: keras.Model) -> list:
    """The trainable offsets (``beta``) of every BatchNormalization in ``model``, nested models included."""
    return [
        layer.beta
        for layer in nested_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.center and layer.trainable
    ]


def whitening_bias(model: keras.Model) -> list:
    """The bias of the whitening stem, when it has one (``whitening_bias_epochs``), nested models included."""
    stem = whitening_stem_with_bias(model)
    return [stem.bias] if stem else []
