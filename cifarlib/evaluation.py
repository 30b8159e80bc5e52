"""Test-set evaluation shared by ``train`` and ``python -m cifarlib evaluate``, so both give the same numbers.

Accuracy is categorical: the share of images whose most probable class is the true one. The loss is the
plain categorical cross-entropy of the predicted probabilities (no label smoothing), so runs trained with and
without smoothing compare on the same scale. With ``tta=True`` each image is also predicted mirrored
left-right and the two probability vectors are averaged (test-time augmentation).
"""

from __future__ import annotations

import numpy as np


def predict_probabilities(model, images: np.ndarray, *, batch_size: int = 256, tta: bool = False) -> np.ndarray:
    """Class probabilities ``(N, 10)``; with ``tta`` the mean over the image and its mirror."""
    probabilities = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float64)
    if tta:
        mirrored = np.ascontiguousarray(images[:, :, ::-1, :])
        probabilities = 0.5 * (probabilities + np.asarray(model.predict(mirrored, batch_size=batch_size, verbose=0)))
    return probabilities


def score(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Categorical accuracy and cross-entropy of probabilities against integer labels."""
    labels = np.asarray(labels).astype(np.int64)
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    return {
        "accuracy": float(np.mean(np.argmax(probabilities, axis=1) == labels)),
        "loss": float(-np.mean(np.log(picked))),
    }


def evaluate_model(model, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 256, tta: bool = False) -> dict:
    """``{"accuracy", "loss"}`` on a test set; ``None`` values where the set is empty."""
    if len(images) == 0:
        return {"accuracy": None, "loss": None}
    return score(predict_probabilities(model, images, batch_size=batch_size, tta=tta), labels)
