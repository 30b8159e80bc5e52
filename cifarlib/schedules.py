"""Learning-rate schedules for a fixed epoch budget, as Keras ``LearningRateSchedule`` objects.

``WarmupCosine`` rises linearly from 0 to ``peak`` over ``warmup_steps``, then follows half a cosine down to
``peak * final_fraction`` at ``total_steps``::

    step < warmup:  lr = peak * (step + 1) / warmup
    otherwise:      lr = final + (peak - final) * 0.5 * (1 + cos(pi * (step - warmup) / (total - warmup)))

Being a schedule of the optimizer's step counter, it resumes exactly from a backup (the counter is saved
with the optimizer) and needs no callback state.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cifarlib")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, final_fraction: float = 0.0):
        if peak <= 0 or total_steps <= 0 or not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"need peak > 0 and 0 <= warmup_steps < total_steps, got {peak}, {warmup_steps}, {total_steps}"
            )
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        final = self.peak * self.final_fraction
        warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
        progress = ops.clip(
            (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0
        )
        cosine = final + (self.peak - final) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "final_fraction": self.final_fraction,
        }
