"""activation_maps / channel_map: values against onnx's reference evaluator, layouts, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from fixtures import GraphBuilder, conv_relu_pool, image, nhwc_model
from onnxviz.errors import ChannelError
from onnxviz.methods import activation_maps, channel_map, tensor_layout
from tests.methods.nets import as_model


def _reference(proto, x, name, **other_inputs):
    """A tensor's value from onnx.reference (an independent interpreter)."""
    return ReferenceEvaluator(proto).run([name], {"x": x, **other_inputs})[0]


def test_activation_maps_match_reference():
    proto = conv_relu_pool(channels=3, size=12, filters=5)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    maps = activation_maps(as_model(proto), x, "relu")
    assert maps.dtype == np.float32 and maps.shape == (2, 5, 12, 12)
    np.testing.assert_allclose(maps, _reference(proto, x, "relu"), rtol=1e-5, atol=1e-5)
    one = channel_map(as_model(proto), x, "pool", 3)
    np.testing.assert_allclose(one, _reference(proto, x, "pool")[:, 3], rtol=1e-5, atol=1e-5)


def _nhwc_inside(size: int = 12, filters: int = 5, classes: int = 3, seed: int = 0):
    """NHWC input -> Transpose ``nchw`` -> Conv ``conv`` (stride 2) -> Transpose ``conv_nhwc``
    -> Relu ``relu_nhwc`` -> ReduceMean ``mean`` (axes 1, 2) -> Gemm ``logits``."""
    b = GraphBuilder(seed)
    x = b.node("Transpose", ["x"], "nchw", perm=[0, 3, 1, 2])
    x = b.node("Conv", [x, b.weight("conv_w", [filters, 3, 3, 3]), b.bias("conv_b", filters)], "conv",
               kernel_shape=[3, 3], pads=[1] * 4, strides=[2, 2])
    x = b.node("Transpose", [x], "conv_nhwc", perm=[0, 2, 3, 1])
    x = b.node("Relu", [x], "relu_nhwc")
    x = b.node("ReduceMean", [x, b.const("axes", np.array([1, 2], np.int64))], "mean", keepdims=0)
    x = b.node("Gemm", [x, b.weight("logits_w", [classes, filters]), b.bias("logits_b", classes)], "logits", transB=1)
    return b.model([image("x", 3, size, layout="NHWC")], [x], opset=18)


def test_nhwc_tensors_become_channel_first():
    proto = _nhwc_inside()
    model = as_model(proto)
    x = np.random.default_rng(1).standard_normal((2, 12, 12, 3)).astype(np.float32)
    conv = activation_maps(model, x, "conv")  # NCHW inside the NHWC model: kept
    relu = activation_maps(model, x, "relu_nhwc")  # NHWC: transposed
    expected = np.maximum(_reference(proto, x, "conv"), 0)
    assert relu.shape == (2, 5, 6, 6)
    np.testing.assert_allclose(relu, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.maximum(conv, 0), expected, rtol=1e-5, atol=1e-5)
    # the input itself, in the input's NHWC layout
    np.testing.assert_array_equal(activation_maps(model, x, "x"), np.moveaxis(x, 3, 1))
    # the pooled vector: rank 2 -> (N, C, 1, 1)
    mean = activation_maps(model, x, "mean")
    np.testing.assert_allclose(mean[:, :, 0, 0], expected.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)


def test_nhwc_inside_nchw_model():
    """A ConvNeXt-style permute to NHWC inside an NCHW model is detected too."""
    b = GraphBuilder(0)
    x = b.node("Conv", ["x", b.weight("w", [7, 3, 3, 3]), b.bias("b", 7)], "conv", kernel_shape=[3, 3], pads=[1] * 4)
    b.node("Transpose", [x], "hwc", perm=[0, 2, 3, 1])
    model = as_model(b.model([image("x", 3, 10)], ["hwc"]))
    x = np.random.default_rng(2).standard_normal((1, 3, 10, 10)).astype(np.float32)
    assert tensor_layout(model, "hwc", (1, 10, 10, 7), (10, 10)) == "NHWC"
    assert tensor_layout(model, "conv", (1, 7, 10, 10), (10, 10)) == "NCHW"
    np.testing.assert_array_equal(activation_maps(model, x, "hwc"), activation_maps(model, x, "conv"))


def test_ambiguous_shape_follows_the_graph():
    """7 channels of 7x7 cannot tell from the shape: the producing op (Conv: NCHW) decides."""
    model = as_model(nhwc_model(size=14, filters=7))
    assert model.input.layout == "NHWC"
    assert tensor_layout(model, "relu", (1, 7, 7, 7), (14, 14)) == "NCHW"  # made by Conv
    assert tensor_layout(model, "relu", (1, 7, 7, 9), (14, 14)) == "NHWC"
    assert tensor_layout(model, "relu", (1, 9, 7, 7), (14, 14)) == "NCHW"
    assert tensor_layout(model, "nchw", (1, 3, 3, 3), (3, 3)) == "NCHW"  # Transpose of the NHWC input


def test_channel_error_message():
    model = as_model(conv_relu_pool(filters=4))
    x = np.zeros((1, 3, 16, 16), np.float32)
    for bad in (4, -1):
        with pytest.raises(ChannelError, match=rf"layer relu has 4 channels; channel {bad} is out of range 0\.\.3"):
            channel_map(model, x, "relu", bad)


def test_every_tensor_of_the_shipped_model():
    """Model.activations of all 111 tensors at once (Pads recomputed by unit convs, ReLU6
    outputs read off their padded copies) against onnxruntime with every graph
    optimisation off, on the original graph: plain NCHW kernels, no rewrite, no fusion."""
    import onnxruntime as ort

    import onnxviz
    from onnxviz.graph.rewrite import expose

    path = Path(__file__).resolve().parents[2] / "models" / "efficientnet_lite0.onnx"
    model = onnxviz.Model(path, provider="cpu")
    names = [layer.name for layer in model.layers]
    x = model.preprocess(Path(__file__).resolve().parents[2] / "examples" / "images" / "cat.jpg")
    x = np.concatenate([x, x[:, :, ::-1]])
    got = model.activations(x, names)
    assert list(got) == names and len(names) == 111
    assert sum(not v.flags["C_CONTIGUOUS"] for v in got.values()) == 16  # the ReLU6 outputs under a Pad
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(expose(model.proto, names).SerializeToString(), options,
                                 providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in plain.get_outputs()], plain.run(None, {"input": x})))
    for name in names:
        scale = max(float(np.abs(want[name]).max()), 1.0)
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_activations_need_only_the_inputs_they_depend_on():
    """A model with a second, non-image input (a temperature scaling the logits): tensors
    before it need only the image; one after it names the missing input."""
    import onnxviz
    from onnxviz.errors import ImageError

    b = GraphBuilder(4)
    x = b.node("Conv", ["x", b.weight("w", [6, 3, 3, 3]), b.bias("b", 6)], "conv", kernel_shape=[3, 3], pads=[1] * 4)
    x = b.node("Relu", [x], "relu")
    x = b.node("ReduceMean", [x, b.const("axes", np.array([2, 3], np.int64))], "mean", keepdims=0)
    b.node("Div", [x, "temperature"], "scaled")
    temperature = helper.make_tensor_value_info("temperature", TensorProto.FLOAT, [1])
    proto = b.model([image("x", 3, 10), temperature], ["scaled"], opset=18)
    model = onnxviz.Model(proto, provider="cpu")
    x = np.random.default_rng(3).standard_normal((2, 3, 10, 10)).astype(np.float32)
    got = model.activations(x, ["relu", "conv"])
    np.testing.assert_allclose(got["relu"], _reference(proto, x, "relu", temperature=np.ones(1, np.float32)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["conv"], _reference(proto, x, "conv", temperature=np.ones(1, np.float32)),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ImageError, match="needs model input.s. besides the image 'x': 'temperature'"):
        model.activations(x, ["scaled"])
