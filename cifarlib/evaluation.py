"""Test-set evaluation shared by ``train`` and ``python -m cifarlib evaluate``, so both give the same numbers.

Accuracy is categorical: the share of images whose most probable class is the true one. The loss is the
plain categorical cross-entropy of the predicted probabilities (no label smoothing), so runs trained with and
without smoothing compare on the same scale.

Test-time augmentation (TTA) averages the class probabilities of several views of each image. ``tta=True``
adds the mirror image; ``translate=N`` (with ``tta``) adds the image shifted by N pixels down-right and
up-left, each also mirrored: six views, the same kinds of shift and flip the network saw in training
(reflect-padded, like ``cifarlib.augment.RandomCropFlip``). What each kind of view adds is measured in
docs/accuracy.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

MAX_TTA_TRANSLATE = 8  # pixels; reflect padding of a 32-pixel image needs the shift well below its size


def translate_problem(translate) -> str | None:
    """Why ``translate`` is not a usable shift (RunConfig and ``tta_views`` both check it), or ``None``."""
    if (
        not isinstance(translate, int)
        or isinstance(translate, bool)
        or not 0 <= translate <= MAX_TTA_TRANSLATE
    ):
        return f"must be an integer from 0 to {MAX_TTA_TRANSLATE} pixels, got {translate!r}"
    return None


def tta_view_list(*, tta: bool = False, translate: int = 0) -> list[tuple[int, int, bool]]:
    """The views test-time augmentation averages over, as ``(dy, dx, mirrored)``, the original image first."""
    problem = translate_problem(translate)
    if problem:
        raise ValueError(f"translate {problem}")
    shifts = [(0, 0)]
    if tta and translate:
        shifts += [(translate, translate), (-translate, -translate)]
    return [(dy, dx, mirrored) for dy, dx in shifts for mirrored in ((False, True) if tta else (False,))]


def view_of(images: np.ndarray, dy: int, dx: int, mirrored: bool) -> np.ndarray:
    """``images`` (N, H, W, C) shifted by (dy, dx) pixels (see ``shift_images``), then mirrored if asked."""
    view = shift_images(images, dy, dx)
    return np.ascontiguousarray(view[:, :, ::-1, :]) if mirrored else view


def tta_views(images: np.ndarray, *, tta: bool = False, translate: int = 0) -> Iterator[np.ndarray]:
    """The views of ``images`` (N, H, W, C) that test-time augmentation averages over, the originals first."""
    for dy, dx, mirrored in tta_view_list(tta=tta, translate=translate):
        yield view_of(images, dy, dx, mirrored)


def tta_view_count(*, tta: bool = False, translate: int = 0) -> int:
    """How many predictions per image ``tta_views`` asks for (1, 2 or 6)."""
    return (1 + (2 if tta and translate else 0)) * (2 if tta else 1)


def describe_tta(tta: bool, translate: int = 0) -> str:
    """Words for a report: ``"flip test-time augmentation"``, ``"no test-time augmentation"``, ..."""
    if not tta:
        return "no test-time augmentation"
    if not translate:
        return "flip test-time augmentation"
    return f"flip and {translate}-pixel shift test-time augmentation, {tta_view_count(tta=True, translate=translate)} views"


def predict_probabilities(
    model, images: np.ndarray, *, batch_size: int = 256, tta: bool = False, tta_translate: int = 0
) -> np.ndarray:
    """Class probabilities ``(N, 10)``: the mean over the views of ``tta_views``."""
    total, count = 0.0, 0
    for view in tta_views(images, tta=tta, translate=tta_translate):
        total = total + np.asarray(model.predict(view, batch_size=batch_size, verbose=0), dtype=np.float64)
        count += 1
    return total / count


def score(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Categorical accuracy and cross-entropy of probabilities against integer labels."""
    labels = np.asarray(labels).astype(np.int64)
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    return {
        "accuracy": float(np.mean(np.argmax(probabilities, axis=1) == labels)),
        "loss": float(-np.mean(np.log(picked))),
    }


def evaluate_model(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 256,
    tta: bool = False,
    tta_translate: int = 0,
) -> dict:
    """``{"accuracy", "loss"}`` on a test set; ``None`` values where the set is empty."""
    if len(images) == 0:
        return {"accuracy": None, "loss": None}
    return score(
        predict_probabilities(model, images, batch_size=batch_size, tta=tta, tta_translate=tta_translate),
        labels,
    )


def shift_images(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``images`` moved by (dy, dx) pixels, the uncovered border filled by reflection; unchanged for (0, 0)."""
    if dy == 0 and dx == 0:
        return images
    pad = max(abs(dy), abs(dx))
    height, width = images.shape[1], images.shape[2]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    top, left = pad - dy, pad - dx
    return np.ascontiguousarray(padded[:, top : top + height, left : left + width, :])
