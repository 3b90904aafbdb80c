"""Whole-model gradient checks: the nine onnx zoo CNNs and the shipped EfficientNet-Lite0.

Directional derivatives: for a random direction u on the input and a random seed v on
the logits, <u, J^T v> from the appended backward graph against the central difference
(<v, f(x + eps u)> - <v, f(x - eps u)>) / (2 eps) of the forward model. All in float32
(onnxruntime has no double Conv kernel), so the tolerance allows for rounding in the
difference quotient and for the few ReLU/max-pool decisions that flip inside +-eps:
relative error <= 2e-2 of the derivative's magnitude, median over three (u, v) pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxviz.model import Model
from zoo import ZOO_NAMES, load_zoo

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "efficientnet_lite0.onnx"


def directional_errors(model: Model, x: np.ndarray, eps: float, pairs: int = 3,
                       mode: str = "plain") -> list[float]:
    """Relative errors |analytic - numeric| / |numeric| for ``pairs`` random (u, v)."""
    rng = np.random.default_rng(0)
    logits_shape = model.activations(x, [model.logit_name])[model.logit_name].shape
    errors = []
    for _ in range(pairs):
        u = rng.standard_normal(x.shape).astype(np.float32)
        v = rng.standard_normal(logits_shape).astype(np.float32)
        grad = model.vjp(x, v).gradients[model.input.name]
        analytic = float(np.sum(u.astype(np.float64) * grad))
        f = lambda z: model.activations(z, [model.logit_name])[model.logit_name].astype(np.float64)
        numeric = float(np.sum(v * (f(x + eps * u) - f(x - eps * u))) / (2 * eps))
        errors.append(abs(analytic - numeric) / max(abs(numeric), 1e-6))
    return errors


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_directional_derivative(name: str) -> None:
    model = Model(load_zoo(name, seed=0), provider="cpu")
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    errors = directional_errors(model, x, eps=1e-2)
    assert np.median(errors) < 2e-2, f"{name}: relative errors {errors}"


@pytest.mark.skipif(not SHIPPED.exists(), reason="shipped model missing")
def test_shipped_model_directional_derivative() -> None:
    model = Model(SHIPPED, provider="cpu")
    x = model.preprocess(ROOT / "examples" / "images" / "cat.jpg")
    errors = directional_errors(model, x, eps=1e-2)
    assert np.median(errors) < 2e-2, errors


@pytest.mark.skipif(not SHIPPED.exists(), reason="shipped model missing")
def test_shipped_model_gradient_is_per_sample() -> None:
    """Dynamic batch: a batch of 3 gives each sample's own gradient."""
    model = Model(SHIPPED, provider="cpu")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 3, 224, 224)).astype(np.float32)
    targets = [1, 285, 999]
    batched = model.gradient(x, targets)
    for i, t in enumerate(targets):
        single = model.gradient(x[i : i + 1], t)
        np.testing.assert_allclose(batched[i : i + 1], single, rtol=1e-4, atol=1e-6 * np.abs(single).max())
