"""first_conv: the stored kernels of the first convolution, through wrappers and layouts."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from fixtures import GraphBuilder, conv_relu_pool, image, nhwc_model
from onnxviz.errors import MethodError
from onnxviz.methods import first_conv
from tests.methods.nets import as_model


def _initializer(proto, name):
    return next(numpy_helper.to_array(i) for i in proto.graph.initializer if i.name == name)


def test_first_conv_reads_the_initializer():
    proto = conv_relu_pool(channels=3, filters=6, kernel=5, pad=2)
    name, w = first_conv(as_model(proto))
    assert name == "conv_node"
    assert w.dtype == np.float32 and w.shape == (6, 3, 5, 5)
    np.testing.assert_array_equal(w, _initializer(proto, "conv_w"))


def test_first_conv_of_nhwc_export():
    proto = nhwc_model(filters=4)
    name, w = first_conv(as_model(proto))
    assert name == "conv_node"
    np.testing.assert_array_equal(w, _initializer(proto, "conv_w"))


def test_first_conv_through_dequantize_and_identity():
    """A quantised export: int8 weights, per-output-channel scale and zero point."""
    rng = np.random.default_rng(0)
    q = rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8)
    scale = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
    zero = np.array([0, 1, -2, 3], np.int8)
    b = GraphBuilder(0)
    b.node("DequantizeLinear", [b.const("q", q), b.const("s", scale), b.const("z", zero)], "w_deq", axis=0)
    b.node("Identity", ["w_deq"], "w_id")
    b.node("Relu", ["x"], "pre")  # the first conv need not read the input directly
    b.node("Conv", ["pre", "w_id"], "conv", kernel_shape=[3, 3])
    name, w = first_conv(as_model(b.model([image("x", 3, 8)], ["conv"])))
    expected = (q.astype(np.float32) - zero[:, None, None, None]) * scale[:, None, None, None]
    assert name == "conv_node"
    np.testing.assert_allclose(w, expected, rtol=1e-6)


def test_model_without_conv():
    b = GraphBuilder(0)
    x = b.node("GlobalAveragePool", ["x"], "gap")
    x = b.node("Flatten", [x], "flat", axis=1)
    b.node("Gemm", [x, b.weight("w", [2, 3])], "logits", transB=1)
    with pytest.raises(MethodError, match="no Conv node"):
        first_conv(as_model(b.model([image("x", 3, 8)], ["logits"])))
