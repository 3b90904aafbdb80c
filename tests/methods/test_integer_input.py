"""Models that take integer pixels (uint8 NHWC images, normalisation inside the graph).

References: onnxruntime on the pixels rounded by hand, and central differences of the same
net written in float64 numpy, independent of onnxviz's autodiff.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fixtures import ort_run
from onnxviz.errors import GradientError
from onnxviz.graph.load import make_model
from onnxviz.methods import occlusion, saliency
from onnxviz.model import Model

SIZE, CLASSES = 12, 4


def uint8_net(cast: bool = True, dtype: int = TensorProto.UINT8) -> onnx.ModelProto:
    """pixels (N, H, W, 3) -> Cast float -> Transpose -> (x - mean) / std -> Conv -> Tanh ->
    GlobalAveragePool -> Gemm. With ``cast=False`` the pixels are first shifted in integer
    arithmetic (a Sub on uint8), so no Cast to float reads the input itself."""
    rng = np.random.default_rng(0)
    first = "pixels"
    nodes = []
    if not cast:
        nodes.append(helper.make_node("Sub", ["pixels", "offset"], ["shifted"], name="int_sub"))
        first = "shifted"
    nodes += [
        helper.make_node("Cast", [first], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Sub", ["t", "mean"], ["s"]),
        helper.make_node("Div", ["s", "std"], ["x"]),
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Tanh", ["c"], ["a"]),
        helper.make_node("GlobalAveragePool", ["a"], ["g"]),
        helper.make_node("Flatten", ["g"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc"], ["logits"], transB=1),
    ]
    values = {
        "mean": np.array([120.0, 110.0, 100.0], np.float32).reshape(1, 3, 1, 1),
        "std": np.array([60.0, 55.0, 50.0], np.float32).reshape(1, 3, 1, 1),
        "w": rng.standard_normal((6, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(6).astype(np.float32),
        "fc": rng.standard_normal((CLASSES, 6)).astype(np.float32),
        "offset": np.array(1, helper.tensor_dtype_to_np_dtype(dtype)),
    }
    inits = [numpy_helper.from_array(v, k) for k, v in values.items() if cast is False or k != "offset"]
    graph = helper.make_graph(nodes, "uint8_net", [helper.make_tensor_value_info("pixels", dtype, ["N", SIZE, SIZE, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
                              initializer=inits)
    return make_model(graph, opset=17)


def numpy_logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """uint8_net's logits in float64 numpy, from float pixels (the Cast left out)."""
    v = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    t = (x.astype(np.float64).transpose(0, 3, 1, 2) - v["mean"]) / v["std"]
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(t, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    conv = np.einsum("nchwij,kcij->nkhw", windows, v["w"]) + v["b"][None, :, None, None]
    return np.tanh(conv).mean(axis=(2, 3)) @ v["fc"].T


def pixels(n: int = 2, seed: int = 1) -> np.ndarray:
    """Float pixel values, some fractional and some out of 0..255 (rounded and saturated)."""
    return np.random.default_rng(seed).uniform(-20, 275, (n, SIZE, SIZE, 3)).astype(np.float32)


def test_preprocessing_defaults_to_raw_pixels(tmp_path) -> None:
    model = Model(uint8_net(), provider="cpu")
    assert model.input.layout == "NHWC"
    pre = model.preprocessing
    assert (pre.mean, pre.std, pre.scale) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1.0)
    # a flat colour survives the resize and crop exactly: the values come back unnormalised
    image = np.empty((20, 30, 3), np.uint8)
    image[:] = (10, 200, 255)
    x = model.preprocess(image)
    assert x.shape == (1, SIZE, SIZE, 3)
    np.testing.assert_array_equal(x[0], np.broadcast_to(np.float32([10, 200, 255]), (SIZE, SIZE, 3)))


def test_forward_rounds_and_saturates_the_pixels() -> None:
    proto = uint8_net()
    model = Model(proto, provider="cpu")
    x = pixels()
    rounded = np.clip(np.rint(x), 0, 255)
    expected = ort_run(proto, rounded.astype(np.uint8))[0]
    np.testing.assert_array_equal(model.run(x), expected)
    # the numpy twin the gradient test differentiates is this net
    np.testing.assert_allclose(numpy_logits(proto, rounded), expected, rtol=1e-5, atol=1e-6)


def test_gradient_is_taken_at_the_float_copy_and_matches_central_differences() -> None:
    proto = uint8_net()
    model = Model(proto, provider="cpu")
    assert model.gradient_input == "f" and model.gradient_blockers() == []
    x = np.rint(np.clip(pixels(), 0, 255))  # where the float twin sees what the model sees
    targets = np.array([1, 3])
    grad = model.gradient(x, targets)
    assert grad.shape == x.shape  # NHWC, like the input

    u = np.random.default_rng(3).standard_normal(x.shape)
    eps = 1e-3
    plus, minus = numpy_logits(proto, x + eps * u), numpy_logits(proto, x - eps * u)
    for i, t in enumerate(targets):
        fd = (plus[i, t] - minus[i, t]) / (2 * eps)
        np.testing.assert_allclose(np.sum(grad[i] * u[i]), fd, rtol=1e-4)
    # saliency: max |gradient| over colour channels, channel-first maps of the image
    np.testing.assert_allclose(saliency(model, x, targets), np.abs(grad).max(axis=3), rtol=1e-6)


def test_integer_arithmetic_on_the_pixels_blocks_gradients_not_occlusion() -> None:
    model = Model(uint8_net(cast=False), provider="cpu")
    with pytest.raises(GradientError, match="no Cast to float reads it"):
        model.gradient(pixels(1), 0)
    assert model.gradient_blockers() == [("Sub", "int_sub")]
    heat = occlusion(model, pixels(1), 0, window=4, stride=4)
    assert heat.shape == (1, SIZE // 4, SIZE // 4) and np.isfinite(heat).all() and np.abs(heat).max() > 0
