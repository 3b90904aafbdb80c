"""Occlusion against a naive one-window-at-a-time loop, and its batching."""

from __future__ import annotations

import math

import cv2
import numpy as np
import onnxruntime
import pytest

from fixtures import gap_gemm, nhwc_model, ort_run
from onnxviz.errors import MethodError
from onnxviz.methods import occlusion, window_starts
from tests.methods.nets import as_model


def test_window_starts():
    assert window_starts(224, 32, 16) == list(range(0, 193, 16))  # 13: fits evenly
    assert window_starts(12, 4, 3) == [0, 3, 6, 8]  # the last one flush with the border
    assert window_starts(10, 4, 4) == [0, 4, 6]
    assert window_starts(5, 8, 2) == [0]  # window larger than the image: clipped


def _naive(proto, x, targets, window, stride, baseline, score, layout="NCHW"):
    """One occluded copy per onnxruntime call, written from the definition."""
    images = x if layout == "NCHW" else np.moveaxis(x, 3, 1)
    _, _, h, w = images.shape
    ys = list(range(0, h - window + 1, stride))
    xs = list(range(0, w - window + 1, stride))
    ys += [h - window] if ys[-1] != h - window else []
    xs += [w - window] if xs[-1] != w - window else []

    def value(image, t):
        feed = image[None] if layout == "NCHW" else np.moveaxis(image, 0, 2)[None]
        z = ort_run(proto, feed.astype(np.float32))[0][0].astype(np.float64)
        if score == "prob":
            z = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        return z[t]

    out = np.zeros((len(x), len(ys), len(xs)))
    for n, image in enumerate(images):
        if baseline == "mean":
            fill = np.broadcast_to(image.mean(axis=(1, 2), keepdims=True), image.shape)
        elif baseline == "blur":
            fill = np.stack([cv2.GaussianBlur(c, (0, 0), sigmaX=window / 4, sigmaY=window / 4) for c in image])
        else:
            fill = np.full_like(image, baseline)
        reference = value(image, targets[n])
        for i, y in enumerate(ys):
            for j, x0 in enumerate(xs):
                copy = image.copy()
                copy[:, y:y + window, x0:x0 + window] = fill[:, y:y + window, x0:x0 + window]
                out[n, i, j] = reference - value(copy, targets[n])
    return out


@pytest.fixture(scope="module")
def small():
    proto = gap_gemm(size=12, filters=4, classes=5)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    return proto, x


@pytest.mark.parametrize("baseline,score", [(0.0, "logit"), ("mean", "prob"), ("blur", "logit"), (1.5, "prob")])
def test_occlusion_matches_naive_loop(small, baseline, score):
    proto, x = small
    targets = np.array([1, 3])
    got = occlusion(as_model(proto, batch_size=7), x, targets, window=4, stride=3, baseline=baseline, score=score)
    expected = _naive(proto, x, targets, 4, 3, baseline, score)
    assert got.shape == (2, 4, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_occlusion_top1_and_nhwc():
    proto = nhwc_model(size=12, filters=4)
    x = np.random.default_rng(1).standard_normal((2, 12, 12, 3)).astype(np.float32)
    targets = ort_run(proto, x)[0].argmax(axis=1)
    got = occlusion(as_model(proto), x, None, window=5, stride=4, baseline="blur")
    np.testing.assert_allclose(got, _naive(proto, x, targets, 5, 4, "blur", "logit", "NHWC"), rtol=1e-5, atol=1e-6)


def test_occlusion_batches_its_runs(small, monkeypatch):
    """N samples x P windows take ceil(N (P + 1) / batch_size) <= ceil(N P / batch_size) + 1 runs
    (for N <= batch_size), not one per window."""
    proto, x = small
    calls = []
    run = onnxruntime.InferenceSession.run
    monkeypatch.setattr(onnxruntime.InferenceSession, "run",
                        lambda self, *a, **k: calls.append(1) or run(self, *a, **k))
    model = as_model(proto, batch_size=5)
    model.logits(x[:1])  # build and warm the session outside the count
    calls.clear()
    result = occlusion(model, x, 2, window=4, stride=3)  # 2 x 16 windows
    assert result.shape == (2, 4, 4)
    assert len(calls) == math.ceil(34 / 5) <= math.ceil(32 / 5) + 1, len(calls)


def test_occlusion_rejects_bad_options(small):
    proto, x = small
    model = as_model(proto)
    with pytest.raises(MethodError, match="baseline"):
        occlusion(model, x, 0, window=4, baseline="noise")
    with pytest.raises(MethodError, match="score"):
        occlusion(model, x, 0, window=4, score="rank")
    with pytest.raises(MethodError, match="window"):
        occlusion(model, x, 0, window=0)
    with pytest.raises(MethodError, match="out of range: the model has 5 classes"):
        occlusion(model, x, 7, window=4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_fill_value_must_be_finite(bad):
    from onnxviz.methods.occlusion import fill_images

    with pytest.raises(MethodError, match="is not a finite number"):
        fill_images(np.zeros((1, 3, 4, 4), np.float32), bad, (2, 2))
