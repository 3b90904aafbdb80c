"""Occlusion (Zeiler and Fergus 2014): how much the score drops when a window is hidden."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxviz.errors import MethodError
from onnxviz.methods.activations import input_hw, to_channel_first
from onnxviz.model import Model, Target
from onnxviz.runtime.progress import progress as progress_bar


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window positions along one axis: ``range(0, size - window + 1, stride)``, plus one
    flush with the far border when the stride does not land there (so every pixel is
    covered). A window larger than the image is clipped to it (one position)."""
    window = min(window, size)
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) < 1 for v in pair):
        raise MethodError(f"occlusion {what} must be a positive integer or (height, width); got {value!r}")
    return int(pair[0]), int(pair[1])


def fill_images(images: np.ndarray, baseline: float | str, window: tuple[int, int]) -> np.ndarray:
    """What a window is filled with, per sample: (N, C, H, W) from channel-first images.

    ``baseline`` is a number (in model-input space), "mean" (each channel's mean over
    the sample) or "blur" (the sample blurred by a Gaussian, sigma = window / 4 per axis,
    OpenCV's default reflected border).
    """
    images = np.asarray(images, dtype=np.float32)
    if isinstance(baseline, str):
        kind = baseline.lower()
        if kind == "mean":
            means = images.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
            return np.broadcast_to(means, images.shape)
        if kind == "blur":
            import cv2

            sigma_y, sigma_x = window[0] / 4.0, window[1] / 4.0
            return np.stack([
                np.stack([cv2.GaussianBlur(channel, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y) for channel in image])
                for image in images
            ])
        raise MethodError(f"unknown occlusion baseline {baseline!r}; give a number, 'mean' or 'blur'")
    if not np.isfinite(baseline):
        raise MethodError(f"occlusion baseline {baseline!r} is not a finite number; give one, 'mean' or 'blur'")
    return np.full_like(images, float(baseline))


def _scores(logits: np.ndarray, targets: np.ndarray, score: str) -> np.ndarray:
    """Target logit, or target softmax probability, per row (float64)."""
    logits = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    rows = np.arange(len(logits))
    if score == "logit":
        return logits[rows, targets]
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    return probs[rows, targets] / probs.sum(axis=1)


def occlusion(
    model: Model,
    x: np.ndarray,
    target: Target = None,
    window: int | Sequence[int] = 32,
    stride: int | Sequence[int] = 16,
    baseline: float | str = 0.0,
    score: str = "logit",
    progress: bool | str = False,
) -> np.ndarray:
    """Score drop when each window of the image is replaced by a baseline.

    value[n, i, j] = score(x[n]) - score(x[n] with window (i, j) filled), windows at
    :func:`window_starts` positions along each axis. All occluded copies go through the
    model in runs of ``model.batch_size`` (never one window per run), the N unoccluded
    samples first: ceil(N * (P + 1) / batch_size) runs for N samples and P positions.

    Args:
        model: the model.
        x: preprocessed float32 batch in the model's input layout (NCHW or NHWC).
        target: class index or label, one per sample, or None for each top-1 class.
        window: window side, or (height, width), in input pixels.
        stride: step between windows, or (height, width).
        baseline: fill value in model-input space, "mean" or "blur" (see :func:`fill_images`).
        score: "logit" (pre-softmax) or "prob" (softmax probability) of the target.
        progress: progress bar on stderr.

    Returns:
        (N, ny, nx) float32, one value per window position (positive: hiding it hurts).
    """
    if score not in ("logit", "prob"):
        raise MethodError(f"unknown occlusion score {score!r}; choose 'logit' or 'prob'")
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    if target is not None:
        model.targets(x, target)  # a bad label or count fails before the long run
    height, width = input_hw(model, x)
    wh, ww = _pair(window, "window")
    sh, sw = _pair(stride, "stride")
    wh, ww = min(wh, height), min(ww, width)
    positions = [(y, x0) for y in window_starts(height, wh, sh) for x0 in window_starts(width, ww, sw)]
    ny, nx = len(window_starts(height, wh, sh)), len(window_starts(width, ww, sw))

    images = to_channel_first(model, x)
    fills = fill_images(images, baseline, (wh, ww))
    # Jobs 0..N-1 are the unoccluded samples, then sample n's window p is job N + n P + p:
    # the reference scores ride in the first run instead of costing one of their own.
    jobs = n * (1 + len(positions))
    # Equal runs of model.call_size(jobs) copies (the last padded with repeats of its first
    # row), built one run at a time: one fixed-batch session, little memory, one progress bar.
    size = model.call_size(jobs)
    runs = -(-jobs // size)
    copies = np.empty((size, *x.shape[1:]), dtype=np.float32)
    view = to_channel_first(model, copies)  # writes through to copies
    logits = None
    for start in progress_bar(range(0, jobs, size), runs, progress if isinstance(progress, str) else "",
                              enabled=bool(progress)):
        stop = min(start + size, jobs)
        for j, job in enumerate(range(start, stop)):
            if job < n:
                copies[j] = x[job]
                continue
            sample, position = divmod(job - n, len(positions))
            y, x0 = positions[position]
            copies[j] = x[sample]
            view[j, :, y:y + wh, x0:x0 + ww] = fills[sample, :, y:y + wh, x0:x0 + ww]
        copies[stop - start:] = copies[0]
        out = model.logits(copies)[: stop - start]
        logits = np.empty((jobs, out.shape[1]), np.float32) if logits is None else logits
        logits[start:stop] = out
    targets = np.argmax(logits[:n], axis=1) if target is None else model.targets(x, target)
    if np.any((targets < 0) | (targets >= logits.shape[1])):
        raise MethodError(
            f"class index out of range: the model has {logits.shape[1]} classes, got {targets.tolist()}"
        )
    reference = _scores(logits[:n], targets, score)
    occluded = _scores(logits[n:], np.repeat(targets, len(positions)), score)
    drop = reference[:, None] - occluded.reshape(n, len(positions))
    return drop.reshape(n, ny, nx).astype(np.float32)
