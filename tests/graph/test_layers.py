"""graph.layers.list_layers: which tensors are layers, in what order, with what shapes and fields."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from fixtures import GraphBuilder, image, nhwc_model, ort_run, random_image, vgg_like
from onnxviz.graph.layers import Layer, list_layers
from onnxviz.graph.receptive import ReceptiveField


def test_vgg_like_layers():
    layers = list_layers(vgg_like(size=16, filters=4, hidden=16, classes=5))
    assert [(l.name, l.op_type) for l in layers] == [
        ("conv1", "Conv"),
        ("relu1", "Relu"),
        ("pool1", "MaxPool"),
        ("conv2", "Conv"),
        ("relu2", "Relu"),
        ("pool2", "MaxPool"),
        ("flat", "Flatten"),
        ("fc1", "Gemm"),
        ("fc1_relu", "Relu"),
        ("logits", "Gemm"),
        ("prob", "Softmax"),
    ]
    by_name = {l.name: l for l in layers}
    field = ReceptiveField((3, 3), (1, 1), (0.0, 0.0))
    assert by_name["conv1"] == Layer("conv1", "Conv", "conv1_node", ("N", 4, 16, 16), field)
    assert by_name["pool2"].shape == ("N", 4, 4, 4)
    assert by_name["pool2"].receptive_field == ReceptiveField((10, 10), (4, 4), (1.5, 1.5))
    assert all(by_name[n].receptive_field is None for n in ("flat", "fc1", "logits", "prob"))


def test_nhwc_layers_start_at_the_transpose():
    layers = list_layers(nhwc_model())
    assert [l.op_type for l in layers] == ["Transpose", "Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]
    assert layers[0].receptive_field == ReceptiveField((1, 1), (1, 1), (0.0, 0.0))


def plumbing_model() -> tuple:
    """Conv with a ConstantOfShape weight, a dynamic Flatten (Shape/Gather/Unsqueeze/Concat/Reshape),
    a Constant scale, Dropout with its mask, and a weight computed from constants."""
    b = GraphBuilder()
    b.const("w_shape", np.array([2, 3, 3, 3], np.int64))
    b.const("zero", np.array(0, np.int64))
    b.const("minus_one", np.array([-1], np.int64))
    b.const("axes", np.array([0], np.int64))
    b.nodes += [
        helper.make_node("ConstantOfShape", ["w_shape"], ["w"], value=numpy_helper.from_array(np.ones(1, np.float32))),
        helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
        helper.make_node("Mul", ["w", "two"], ["w2"]),  # computed weight: not a layer
        helper.make_node("Conv", ["x", "w2"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Dropout", ["conv"], ["drop", "mask"]),
        helper.make_node("Shape", ["drop"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"]),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus_one"], ["target"], axis=0),
        helper.make_node("Cast", ["target"], ["target64"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["drop", "target64"], ["flat"]),
    ]
    return b.model([image("x", 3, 8)], ["flat"])


def test_shape_and_constant_plumbing_is_skipped():
    model = plumbing_model()
    layers = list_layers(model)
    assert [(l.name, l.op_type) for l in layers] == [("conv", "Conv"), ("drop", "Dropout"), ("flat", "Reshape")]
    assert layers[0].shape == ("N", 2, 8, 8)
    assert len(layers[2].shape) == 2  # onnx data propagation loses the symbolic batch here
    assert layers[2].receptive_field is None
    out = ort_run(model, random_image(model))[0]
    assert out.shape == (2, 128)


def test_layers_of_a_model_without_value_info():
    model = vgg_like()
    del model.graph.value_info[:]
    assert list_layers(model) == list_layers(vgg_like())
