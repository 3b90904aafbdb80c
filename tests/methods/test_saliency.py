"""Gradient attributions against float64 finite differences and hand-computed backward passes."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import nhwc_model
from onnxviz.errors import OnnxvizError
from onnxviz.methods import (
    deconvnet,
    guided_backprop,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from onnxviz.methods.saliency import noisy_copies
from tests.methods.nets import (
    as_model,
    fd_gradient,
    relu_net,
    relu_net_backward,
    smooth_forward,
    smooth_net,
)

TARGETS = np.array([1, 4, 0])


@pytest.fixture(scope="module")
def smooth():
    proto = smooth_net()
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    return proto, as_model(proto), x


def test_numpy_forward_matches_model(smooth):
    proto, model, x = smooth
    np.testing.assert_allclose(model.logits(x), smooth_forward(proto, x), rtol=1e-5, atol=1e-5)


def test_saliency_against_finite_differences(smooth):
    proto, model, x = smooth
    grad = fd_gradient(lambda v: smooth_forward(proto, v), x, TARGETS)
    np.testing.assert_allclose(saliency(model, x, TARGETS), np.abs(grad).max(axis=1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(saliency(model, x, TARGETS, times_input=True), np.abs(grad * x).max(axis=1),
                               rtol=1e-4, atol=1e-6)
    # target None: each sample's top-1 class
    top = smooth_forward(proto, x).argmax(axis=1)
    grad = fd_gradient(lambda v: smooth_forward(proto, v), x, top)
    np.testing.assert_allclose(saliency(model, x), np.abs(grad).max(axis=1), rtol=1e-4, atol=1e-6)


def test_smoothgrad(smooth, monkeypatch):
    proto, model, x = smooth
    np.testing.assert_array_equal(smoothgrad(model, x, TARGETS, n=4, noise=0.0), saliency(model, x, TARGETS))
    calls = []
    vjp = model.vjp
    monkeypatch.setattr(model, "vjp", lambda *a, **k: calls.append(len(a[0])) or vjp(*a, **k))
    got = smoothgrad(model, x, TARGETS, n=6, noise=0.2, seed=3)
    assert calls == [18]  # all noisy copies in one vjp call
    copies = noisy_copies(x, 6, 0.2, seed=3).reshape(3, 6, 3, 8, 8)
    # the noise level: sigma = 0.2 * (max - min) per sample
    spread = 0.2 * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    np.testing.assert_allclose((copies - x[:, None]).std(axis=(1, 2, 3, 4)), spread, rtol=0.15)
    grads = np.stack([fd_gradient(lambda v: smooth_forward(proto, v), c, np.full(6, t))
                      for c, t in zip(copies, TARGETS)])
    np.testing.assert_allclose(got, np.abs(grads.mean(axis=1)).max(axis=1), rtol=1e-4, atol=1e-6)


def test_batch_invariance(smooth):
    """N=1 and N=3 give the same per-sample maps (SmoothGrad: sample i's noise is seeded by i)."""
    _, model, x = smooth
    methods = {
        "saliency": (lambda v, t: saliency(model, v, t), range(3)),
        "ig": (lambda v, t: integrated_gradients(model, v, t, steps=4).attributions, range(3)),
        "smoothgrad": (lambda v, t: smoothgrad(model, v, t, n=3), range(1)),
    }
    for name, (fn, samples) in methods.items():
        full = fn(x, TARGETS)
        for i in samples:
            np.testing.assert_allclose(fn(x[i:i + 1], TARGETS[i:i + 1])[0], full[i], rtol=1e-5, atol=1e-6, err_msg=name)


def test_integrated_gradients_against_finite_differences(smooth):
    proto, model, x = smooth
    baseline = 0.25
    steps = 4
    result = integrated_gradients(model, x, TARGETS, baseline=baseline, steps=steps)
    alphas = (np.arange(steps) + 0.5) / steps
    grads = [fd_gradient(lambda v: smooth_forward(proto, v), baseline + a * (x - baseline), TARGETS) for a in alphas]
    expected = np.mean(grads, axis=0) * (x - baseline)
    np.testing.assert_allclose(result.attributions, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.map, np.abs(expected).sum(axis=1), rtol=1e-4, atol=1e-6)
    logits = smooth_forward(proto, np.concatenate([x, np.full_like(x, baseline)]))
    gap = logits[np.arange(3), TARGETS] - logits[3 + np.arange(3), TARGETS]
    np.testing.assert_allclose(result.completeness_error, expected.sum(axis=(1, 2, 3)) - gap, rtol=1e-3, atol=1e-5)


def test_integrated_gradients_completeness(smooth):
    """Midpoint rule, 64 steps, smooth model: |error| <= 1e-2 |f(x) - f(b)|, b the default
    baseline: a black image, (0 - mean) / std per channel of torchvision's preprocessing."""
    proto, model, x = smooth
    x = 2 * x  # a longer path, so the gradient varies along it
    result = integrated_gradients(model, x, TARGETS, steps=64)
    black = -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225])
    logits = smooth_forward(proto, np.concatenate([x, np.broadcast_to(black[:, None, None], x.shape)]))
    gap = logits[np.arange(3), TARGETS] - logits[3 + np.arange(3), TARGETS]
    assert np.all(np.abs(result.completeness_error) <= 1e-2 * np.abs(gap)), (result.completeness_error, gap)
    # with 2 steps the same measure is visibly worse: the check has teeth
    coarse = integrated_gradients(model, x, TARGETS, steps=2)
    assert np.max(np.abs(coarse.completeness_error)) > np.max(np.abs(result.completeness_error))


@pytest.mark.parametrize("preset, black", [
    ("torchvision", -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225])),
    ("caffe", -np.array([103.939, 116.779, 123.68])),  # BGR means, in the model's order
    ("tf", np.array([-1.0, -1.0, -1.0])),
    ("raw", np.zeros(3)),
])
def test_the_black_baseline_is_a_black_image_as_the_model_takes_it(smooth, preset, black):
    from onnxviz.methods.saliency import black_input

    proto, _, x = smooth
    model = as_model(proto, preprocessing=preset)
    np.testing.assert_allclose(black_input(model, x), np.broadcast_to(black[:, None, None], x.shape), rtol=1e-6)
    default = integrated_gradients(model, x, TARGETS, steps=3)
    given = integrated_gradients(model, x, TARGETS, baseline=black_input(model, x), steps=3)
    np.testing.assert_array_equal(default.attributions, given.attributions)
    with pytest.raises(OnnxvizError, match="unknown baseline 'white'"):
        integrated_gradients(model, x, TARGETS, baseline="white")


def test_the_black_baseline_of_a_channels_last_model():
    from onnxviz.methods.saliency import black_input

    model = as_model(nhwc_model(), preprocessing="torchvision")
    x = np.zeros((2, *model.input.shape[1:]), np.float32)
    expected = -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(black_input(model, x), np.broadcast_to(expected, x.shape), rtol=1e-6)


@pytest.mark.parametrize("mode", ["guided", "deconvnet"])
def test_guided_and_deconvnet_by_hand(mode):
    proto = relu_net(filters=6)
    model = as_model(proto)
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(np.float32)
    targets = np.array([2, 3])
    fn = guided_backprop if mode == "guided" else deconvnet
    got = fn(model, x, targets)
    expected = relu_net_backward(proto, x, targets, mode)
    assert got.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # the modes differ from the plain gradient on this model
    plain = relu_net_backward(proto, x, targets, "plain")
    assert not np.allclose(expected, plain)
    np.testing.assert_allclose(np.abs(plain).max(axis=1), saliency(model, x, targets), rtol=1e-4, atol=1e-6)


def test_nhwc_gradients_are_channel_first():
    model = as_model(nhwc_model(size=8))
    x = np.random.default_rng(6).standard_normal((2, 8, 8, 3)).astype(np.float32)
    grad = guided_backprop(model, x, 1)
    assert grad.shape == (2, 3, 8, 8)
    plain = np.moveaxis(model.gradient(x, 1), 3, 1)
    np.testing.assert_allclose(saliency(model, x, 1), np.abs(plain).max(axis=1), rtol=1e-6)
    ig = integrated_gradients(model, x, 1, steps=2)
    assert ig.attributions.shape == (2, 3, 8, 8)


def test_gradients_across_fixed_batch_calls(smooth):
    """A batch split into fixed-size calls (7 samples at batch size 3: calls of 3, 3 and 1
    padded to 3) gives each sample the gradient it gets alone."""
    proto, _, x = smooth
    model = as_model(proto, batch_size=3)
    xs = np.concatenate([x, x[::-1], x[:1]])
    targets = np.array([1, 4, 0, 2, 3, 1, 4])
    assert model.call_size(len(xs)) == 3 and model.call_size(4) == 2 and model.call_size(2) == 2
    got = model.gradient(xs, targets)
    for i in range(len(xs)):
        np.testing.assert_allclose(got[i], model.gradient(xs[i:i + 1], targets[i:i + 1])[0], rtol=1e-5, atol=1e-6)
    assert got.shape == xs.shape


def test_bad_batch_size_is_a_clear_error(smooth):
    proto, _, x = smooth
    with pytest.raises(OnnxvizError, match="batch size must be a positive integer"):
        as_model(proto, batch_size=0).gradient(x, 1)


def test_rewritten_models_are_bounded(smooth, monkeypatch):
    """Exposing layer after layer keeps at most REWRITTEN_MODELS rewrites (each a copy of the
    weights), drops the evicted ones' fixed-batch copies and sessions, and rebuilds on demand."""
    import onnxviz.model

    monkeypatch.setattr(onnxviz.model, "REWRITTEN_MODELS", 3)
    proto, _, x = smooth
    model = as_model(proto)
    names = [layer.name for layer in model.layers]
    assert len(names) > 3
    first = {name: model.activations(x, [name])[name] for name in names}
    model.gradient(x, 1)
    assert len(model._rewritten) == 3
    assert model._fixed_batch and {key[:-1] for key in model._fixed_batch} <= set(model._rewritten)
    assert set(model._sessions) <= {id(model.proto)}  # fixed-batch copies live in their sessions only
    for name in names[:2]:  # evicted: built again, same values
        np.testing.assert_array_equal(model.activations(x, [name])[name], first[name])


def _free_size_net(height, width):
    """Conv stride 2 -> Relu -> MaxPool stride 2 -> GlobalAveragePool -> Gemm, image dims as given."""
    from fixtures import GraphBuilder, image

    b = GraphBuilder(3)
    x = b.node("Conv", ["x", b.weight("w", [6, 3, 3, 3]), b.bias("b", 6)], "conv", strides=[2, 2], pads=[1] * 4)
    x = b.node("Relu", [x], "relu")
    x = b.node("MaxPool", [x], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    x = b.node("GlobalAveragePool", [x], "gap")
    x = b.node("Flatten", [x], "flat")
    x = b.node("Gemm", [x, b.weight("fc", [4, 6]), b.bias("fc_b", 4)], "logits", transB=1)
    return b.model([image("x", 3, height, width)], [x], 17)


def test_free_image_size_models_get_gradients():
    """A model exported with a free image size (symbolic H and W) gets gradients through
    strided layers, at any size: the same values as the same net fixed at that size."""
    free = as_model(_free_size_net("H", "W"))
    rng = np.random.default_rng(7)
    for size in ((2, 3, 21, 30), (1, 3, 16, 16)):
        x = rng.standard_normal(size).astype(np.float32)
        fixed = as_model(_free_size_net(*size[2:]))
        np.testing.assert_allclose(free.gradient(x, [2] * len(x)), fixed.gradient(x, [2] * len(x)), rtol=1e-6, atol=1e-7)
        acts = free.activations(x, ["conv", "pool"])
        want = fixed.activations(x, ["conv", "pool"])
        for name in ("conv", "pool"):
            np.testing.assert_array_equal(acts[name], want[name])
    assert {key for key in free._rewritten if key[0] == "sized"} == {("sized", (3, 21, 30)), ("sized", (3, 16, 16))}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_noise_must_be_finite_and_not_negative(smooth, bad):
    _, model, x = smooth
    with pytest.raises(OnnxvizError, match="noise must be a finite number >= 0"):
        smoothgrad(model, x, TARGETS, n=2, noise=bad)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_baseline_must_be_finite(smooth, bad):
    _, model, x = smooth
    with pytest.raises(OnnxvizError, match="baseline has NaN or infinite values"):
        integrated_gradients(model, x, TARGETS, baseline=bad, steps=2)
