"""ATTRIBUTIONS: the registry the CLI and the report call, checked against the functions it wraps."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import gap_gemm
from onnxviz import methods
from onnxviz.methods import ATTRIBUTIONS
from tests.methods.nets import as_model

NAMES = ["saliency", "smoothgrad", "ig", "guided", "deconvnet", "cam", "gradcam", "gradcam++", "scorecam", "occlusion"]


@pytest.fixture(scope="module")
def setup():
    model = as_model(gap_gemm(size=8, filters=4, classes=3))
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    return model, x, np.array([2, 0])


def test_registry_names_and_kinds():
    assert list(ATTRIBUTIONS) == NAMES
    for name, spec in ATTRIBUTIONS.items():
        assert spec.name == name and spec.title and callable(spec.fn)
        assert spec.kind == ("gradient" if name in ("guided", "deconvnet") else "heatmap")


@pytest.mark.parametrize(
    "name,options,direct",
    [
        ("saliency", {}, lambda m, x, t: methods.saliency(m, x, t)),
        ("smoothgrad", {"samples": 3, "noise": 0.1}, lambda m, x, t: methods.smoothgrad(m, x, t, n=3, noise=0.1)),
        ("ig", {"steps": 4}, lambda m, x, t: methods.integrated_gradients(m, x, t, steps=4).map),
        ("guided", {}, lambda m, x, t: methods.guided_backprop(m, x, t)),
        ("deconvnet", {}, lambda m, x, t: methods.deconvnet(m, x, t)),
        ("cam", {}, lambda m, x, t: methods.cam(m, x, t)),
        ("gradcam", {"layer": "relu1"}, lambda m, x, t: methods.grad_cam(m, x, t, layer="relu1")),
        ("gradcam++", {}, lambda m, x, t: methods.grad_cam_pp(m, x, t)),
        ("scorecam", {"max_channels": 2}, lambda m, x, t: methods.score_cam(m, x, t, max_channels=2)),
        ("occlusion", {"window": 4, "stride": 2, "baseline": "mean", "score": "prob"},
         lambda m, x, t: methods.occlusion(m, x, t, window=4, stride=2, baseline="mean", score="prob")),
    ],
)
def test_registry_calls_the_method(setup, name, options, direct):
    model, x, targets = setup
    spec = ATTRIBUTIONS[name]
    got = spec.fn(model, x, targets, **options)
    assert got.ndim == (4 if spec.kind == "gradient" else 3) and len(got) == 2
    np.testing.assert_array_equal(got, direct(model, x, targets))
    caption = spec.caption(options)
    assert isinstance(caption, str) and caption
    for value in options.values():
        assert str(value) in caption, (caption, options)
