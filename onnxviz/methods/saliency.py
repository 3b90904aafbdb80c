"""Gradient attributions: saliency, SmoothGrad, integrated gradients, guided backprop, deconvnet.

Every gradient comes from one :meth:`Model.vjp` call: noisy copies (SmoothGrad) and
path points (integrated gradients) are stacked into one batch, which the runtime
splits into ``model.batch_size`` chunks. Per-pixel attributions are returned
channel-first (N, C, H, W) whatever the model's input layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxviz.errors import MethodError
from onnxviz.methods.activations import to_channel_first
from onnxviz.model import Model, Target


def input_gradients(model: Model, x: np.ndarray, targets: np.ndarray, mode: str = "plain",
                    progress: bool | str = False) -> np.ndarray:
    """d logit[targets[i]] / d x[i] for every sample, (N, C, H, W) float32.

    Args:
        model: the model.
        x: preprocessed batch in the model's input layout.
        targets: one class index per sample.
        mode: "plain", "guided" or "deconvnet" (how ReLUs pass gradients back).
        progress: progress bar on stderr.
    """
    seed = model.one_hot(x, np.asarray(targets))
    result = model.vjp(x, seed, mode=mode, progress=progress)
    return np.asarray(to_channel_first(model, result.gradients[model.gradient_input]), dtype=np.float32)


def noisy_copies(x: np.ndarray, n: int, noise: float, seed: int = 0) -> np.ndarray:
    """``n`` copies of each sample plus Gaussian noise, sample-major: (N * n, ...).

    The noise of sample i has sigma = ``noise`` * (max(x[i]) - min(x[i])) and comes from
    ``numpy.random.default_rng((seed, i))``, so a sample gets the same noise whatever
    batch it is in.
    """
    if not (np.isfinite(noise) and noise >= 0):
        raise MethodError(f"noise must be a finite number >= 0 (a fraction of the input range), got {noise!r}")
    x = np.asarray(x, dtype=np.float32)
    out = np.repeat(x, n, axis=0)
    for i, sample in enumerate(x):
        sigma = float(noise) * float(sample.max() - sample.min())
        if sigma > 0:
            rng = np.random.default_rng((seed, i))
            out[i * n:(i + 1) * n] += sigma * rng.standard_normal((n, *sample.shape), dtype=np.float32)
    return out


def smoothed_gradients(model: Model, x: np.ndarray, targets: np.ndarray, n: int, noise: float,
                       seed: int = 0, mode: str = "plain", progress: bool | str = False) -> np.ndarray:
    """Mean input gradient over ``n`` noisy copies of each sample (Smilkov et al. 2017), (N, C, H, W).

    All N * n copies go through one vjp call (batched by the runtime).
    """
    copies = noisy_copies(x, n, noise, seed)
    grads = input_gradients(model, copies, np.repeat(np.asarray(targets), n), mode, progress)
    return grads.reshape(len(x), n, *grads.shape[1:]).mean(axis=1, dtype=np.float64).astype(np.float32)


def saliency(
    model: Model,
    x: np.ndarray,
    target: Target = None,
    smooth: int = 0,
    noise: float = 0.15,
    times_input: bool = False,
    seed: int = 0,
    progress: bool | str = False,
) -> np.ndarray:
    """Gradient saliency (Simonyan et al. 2013): max over colour channels of |d logit / d x|.

    Args:
        model: the model.
        x: preprocessed float32 batch in the model's input layout.
        target: class index or label, one per sample, or None for each top-1 class.
        smooth: when > 0, SmoothGrad (Smilkov et al. 2017): the gradient is the mean
            of the gradients of ``smooth`` noisy copies of each sample.
        noise: SmoothGrad's noise level: sigma = noise * (max - min) of each sample.
        times_input: multiply the (smoothed) gradient by the input before the
            absolute value ("gradient x input").
        seed: SmoothGrad's noise seed.
        progress: progress bar on stderr.

    Returns:
        (N, H, W) float32, at the input's resolution.
    """
    x = np.asarray(x, dtype=np.float32)
    targets = model.targets(x, target)
    if smooth > 0:
        grads = smoothed_gradients(model, x, targets, int(smooth), noise, seed, progress=progress)
    else:
        grads = input_gradients(model, x, targets, progress=progress)
    if times_input:
        grads = grads * to_channel_first(model, x)
    return np.abs(grads).max(axis=1)


def smoothgrad(
    model: Model,
    x: np.ndarray,
    target: Target = None,
    n: int = 25,
    noise: float = 0.15,
    times_input: bool = False,
    seed: int = 0,
    progress: bool | str = False,
) -> np.ndarray:
    """SmoothGrad saliency: :func:`saliency` with ``smooth=n``; (N, H, W) float32."""
    return saliency(model, x, target, smooth=n, noise=noise, times_input=times_input, seed=seed,
                    progress=progress)


@dataclass(frozen=True)
class IntegratedGradients:
    """Integrated gradients of a batch.

    Attributes:
        attributions: (N, C, H, W) float32, (x - baseline) times the mean gradient on the path.
        completeness_error: (N,) sum of attributions - (logit(x) - logit(baseline)); the
            Riemann sum's error, which shrinks as ``steps`` grows.
        targets: the class explained per sample.
    """

    attributions: np.ndarray
    completeness_error: np.ndarray
    targets: np.ndarray

    @property
    def map(self) -> np.ndarray:
        """(N, H, W): sum over channels of |attributions|."""
        return np.abs(self.attributions).sum(axis=1)


def black_input(model: Model, x: np.ndarray) -> np.ndarray:
    """A black image as the model takes it, shaped like ``x``: each channel's
    ``(0 * scale - mean) / std`` per the model's preprocessing (0 for raw pixels)."""
    pixel = model.preprocess(np.zeros((1, 1, 3), np.uint8))  # constant: every position alike
    nchw = model.preprocessing.layout == "NCHW"
    channels = pixel[0, :, 0, 0] if nchw else pixel[0, 0, 0, :]
    shape = (1, -1, 1, 1) if nchw else (1, 1, 1, -1)
    return np.broadcast_to(channels.reshape(shape), np.shape(x))


def integrated_gradients(
    model: Model,
    x: np.ndarray,
    target: Target = None,
    baseline: float | str | np.ndarray = "black",
    steps: int = 32,
    progress: bool | str = False,
) -> IntegratedGradients:
    """Integrated gradients (Sundararajan et al. 2017), Riemann midpoint rule.

    attribution = (x - b) * (1/steps) * sum_k grad f(b + a_k (x - b)), a_k = (k + 1/2) / steps.
    All N * steps path points go through one vjp call (batched by the runtime); both
    ends' logits through one more forward run.

    Args:
        model: the model.
        x: preprocessed float32 batch in the model's input layout.
        target: class index or label, one per sample, or None for each top-1 class.
        baseline: "black" (the paper's: a black image through the model's preprocessing,
            see :func:`black_input`), a number in model-input space (0.0 is the mean
            colour for mean/std-normalised models) or an array broadcastable to ``x``.
        steps: points on the straight path from the baseline to x.
        progress: progress bar on stderr.
    """
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    if isinstance(baseline, str):
        if baseline.lower() != "black":
            raise MethodError(f"unknown baseline {baseline!r}; give 'black', a number or an array")
        baseline = black_input(model, x)
    base = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    if not np.isfinite(base).all():
        raise MethodError("the baseline has NaN or infinite values; give 'black', a finite number or array")
    ends = model.logits(np.concatenate([x, base]))
    targets = np.argmax(ends[:n], axis=1) if target is None else model.targets(x, target)
    alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32)
    delta = x - base
    path = base[:, None] + alphas.reshape(1, steps, *[1] * (x.ndim - 1)) * delta[:, None]
    grads = input_gradients(model, path.reshape(n * steps, *x.shape[1:]), np.repeat(targets, steps),
                            progress=progress)
    mean = grads.reshape(n, steps, *grads.shape[1:]).mean(axis=1, dtype=np.float64)
    attributions = (mean * to_channel_first(model, delta)).astype(np.float32)
    rows = np.arange(n)
    gap = ends[rows, targets].astype(np.float64) - ends[n + rows, targets]
    error = attributions.sum(axis=(1, 2, 3), dtype=np.float64) - gap
    return IntegratedGradients(attributions, error.astype(np.float32), targets)


def guided_backprop(model: Model, x: np.ndarray, target: Target = None,
                    progress: bool | str = False) -> np.ndarray:
    """Guided backpropagation (Springenberg et al. 2015): (N, C, H, W) float32.

    ReLUs pass back only positive gradients, and only where their input was positive.
    """
    x = np.asarray(x, dtype=np.float32)
    return input_gradients(model, x, model.targets(x, target), "guided", progress)


def deconvnet(model: Model, x: np.ndarray, target: Target = None,
              progress: bool | str = False) -> np.ndarray:
    """Deconvnet (Zeiler and Fergus 2014): (N, C, H, W) float32.

    ReLUs pass back the positive part of the gradient, whatever their input was.
    """
    x = np.asarray(x, dtype=np.float32)
    return input_gradients(model, x, model.targets(x, target), "deconvnet", progress)
