"""graph.info: image input and layout, opset, parameter count, metadata."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fixtures import GraphBuilder, conv_relu_pool, dense_model, gap_gemm, image, nhwc_model, vgg_like
from onnxviz.errors import ModelLoadError, NotAnImageModelError
from onnxviz.graph.info import (
    InputSpec,
    image_input,
    labels,
    metadata,
    opset_version,
    parameter_count,
    preprocessing_dict,
    set_metadata,
)
from onnxviz.graph.load import make_model


def one_input_model(dims, first_op: str = "Relu", **attrs) -> onnx.ModelProto:
    """A model whose only input has ``dims`` and feeds ``first_op``."""
    graph = helper.make_graph(
        [helper.make_node(first_op, ["x"], ["y"], **attrs)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return make_model(graph)


def test_image_input_nchw():
    spec = image_input(conv_relu_pool(channels=3, size=20))
    assert spec == InputSpec("x", ("N", 3, 20, 20), "NCHW", TensorProto.FLOAT)
    assert (spec.channels, spec.height, spec.width) == (3, 20, 20)


def test_image_input_nhwc():
    spec = image_input(nhwc_model(channels=3, size=24))
    assert spec.layout == "NHWC"
    assert spec.shape == ("N", 24, 24, 3)
    assert (spec.channels, spec.height, spec.width) == (3, 24, 24)


@pytest.mark.parametrize(
    "dims,first_op,attrs,layout",
    [
        ([1, 1, 28, 28], "Relu", {}, "NCHW"),
        ([1, 28, 28, 1], "Relu", {}, "NHWC"),
        ([1, 4, 64, 64], "Relu", {}, "NCHW"),
        ([1, 3, 4, 3], "Relu", {}, "NCHW"),  # ambiguous: NCHW unless an NHWC Transpose follows
        ([1, 3, 4, 3], "Transpose", {"perm": [0, 3, 1, 2]}, "NHWC"),
        (["N", "C", "H", "W"], "Relu", {}, "NCHW"),  # dynamic
        (["N", "H", "W", "C"], "Transpose", {"perm": [0, 3, 1, 2]}, "NHWC"),
        (["N", "H", "W", "C"], "Transpose", {"perm": [0, 2, 1, 3]}, "NCHW"),
        (["N", 3, "H", "W"], "Relu", {}, "NCHW"),
        (["N", "H", "W", 3], "Relu", {}, "NHWC"),
        ([1, 3, 3, 3], "Relu", {}, "NCHW"),
    ],
)
def test_layout_rules(dims, first_op, attrs, layout):
    spec = image_input(one_input_model(dims, first_op, **attrs))
    assert spec.layout == layout


def test_layout_sees_through_preprocessing_ops():
    # uint8 NHWC image, cast and normalised before the Transpose (a common TF export)
    mean = numpy_helper.from_array(np.array([0.5], np.float32), "mean")
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["xf", "mean"], ["xs"]),
            helper.make_node("Transpose", ["xs"], ["y"], perm=[0, 3, 1, 2]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", "H", "W", "C"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [mean],
    )
    spec = image_input(make_model(graph))
    assert (spec.layout, spec.dtype) == ("NHWC", TensorProto.UINT8)
    assert (spec.channels, spec.height, spec.width) == (None, None, None)


def test_image_input_skips_initializers_and_other_inputs():
    b = GraphBuilder()
    w = b.weight("w", [2, 3, 1, 1])
    b.node("Conv", ["x", w], "y")
    b.node("Mul", ["y", "scale"], "z")
    scale = helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1])
    w_input = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3, 1, 1])  # IR < 4 style
    model = b.model([scale, w_input, image("x", 3, 8)], ["z"])
    assert image_input(model).name == "x"


def test_no_image_input_names_what_it_found():
    with pytest.raises(NotAnImageModelError, match=r"no 4-D image input \(inputs: x \['N', 10\]\)") as info:
        image_input(dense_model(features=10))
    assert "\n" not in str(info.value)


def test_opset_version():
    assert opset_version(conv_relu_pool(opset=13)) == 13
    model = conv_relu_pool()
    model.opset_import[0].domain = "ai.onnx"
    assert opset_version(model) == 17
    del model.opset_import[:]
    with pytest.raises(ModelLoadError, match="no default ONNX opset"):
        opset_version(model)


def test_parameter_count_initializers():
    # conv1 3->8 3x3 + bias, conv2 8->8 3x3 + bias, gemm 8->5 + bias
    expected = (8 * 3 * 9 + 8) + (8 * 8 * 9 + 8) + (5 * 8 + 5)
    assert parameter_count(gap_gemm(channels=3, filters=8, classes=5)) == expected


def test_parameter_count_constants_and_placeholders():
    shape = numpy_helper.from_array(np.array([4, 3, 3, 3], np.int64), "w_shape")
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(np.zeros(4, np.float32))),
            helper.make_node("Constant", [], ["axes"], value_ints=[0, 1]),  # integers: not parameters
            helper.make_node("Constant", [], ["s"], value_floats=[1.0, 2.0]),
            helper.make_node("ConstantOfShape", ["w_shape"], ["w"], value=numpy_helper.from_array(np.ones(1, "f4"))),
            helper.make_node("Conv", ["x", "w", "b"], ["y"]),
        ],
        "g",
        [image("x", 3, 8)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [shape],
    )
    assert parameter_count(make_model(graph)) == 4 + 2 + 4 * 3 * 3 * 3


def test_parameter_count_int8_weights():
    """A QDQ model's weights are int8 initializers read by DequantizeLinear; its per-channel
    scales are float parameters too; zero points and other integers are not counted."""
    inits = [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.int8), "wq"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
             numpy_helper.from_array(np.array([1, 1], np.int64), "strides_unused")]
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
         helper.make_node("Conv", ["x", "w"], ["y"])],
        "g", [image("x", 3, 8)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    assert parameter_count(make_model(graph)) == 4 * 3 * 3 * 3 + 4


def test_parameter_count_vgg_like():
    model = vgg_like(channels=3, size=16, filters=4, hidden=16, classes=5)
    expected = sum(int(np.prod(i.dims)) for i in model.graph.initializer)
    assert parameter_count(model) == expected == (4 * 27 + 4) + (4 * 36 + 4) + (16 * 64 + 16) + (5 * 16 + 5)


def test_metadata_round_trip():
    model = conv_relu_pool()
    assert metadata(model) == {}
    assert labels(model) is None and preprocessing_dict(model) is None
    set_metadata(model, "onnxviz.labels", json.dumps(["cat", "dog"]))
    set_metadata(model, "onnxviz.preprocessing", json.dumps({"mean": [0.5], "scale": 255}))
    set_metadata(model, "author", "me")
    assert set_metadata(model, "onnxviz.labels", json.dumps(["cat", "dog", "émeu"])) is model  # replaces
    assert [p.key for p in model.metadata_props].count("onnxviz.labels") == 1
    assert labels(model) == ["cat", "dog", "émeu"]
    assert preprocessing_dict(model) == {"mean": [0.5], "scale": 255}
    assert metadata(model)["author"] == "me"
    loaded = onnx.load_from_string(model.SerializeToString())
    assert labels(loaded) == ["cat", "dog", "émeu"]


@pytest.mark.parametrize(
    "key,value,reader",
    [
        ("onnxviz.labels", "[cat, dog]", labels),
        ("onnxviz.labels", '{"0": "cat"}', labels),
        ("onnxviz.labels", "[1, 2]", labels),
        ("onnxviz.preprocessing", "[1, 2]", preprocessing_dict),
        ("onnxviz.preprocessing", "{mean: 1}", preprocessing_dict),
    ],
)
def test_malformed_metadata_names_the_key(key, value, reader):
    model = set_metadata(conv_relu_pool(), key, value)
    with pytest.raises(ModelLoadError, match=f"metadata key '{key}'") as info:
        reader(model)
    assert "\n" not in str(info.value)


def test_set_metadata_wants_strings():
    with pytest.raises(TypeError, match="strings"):
        set_metadata(conv_relu_pool(), "k", 3)
