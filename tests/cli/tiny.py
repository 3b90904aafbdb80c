"""Tiny models for the CLI tests, built with onnx.helper."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxviz.graph.load import make_model

LABELS = ["ant", "bee", "cat", "dog", "flamingo"]
SIZE = 32


def tiny_cnn(blocker: str | None = None) -> onnx.ModelProto:
    """input (N,3,32,32) -> conv 3x3 -> relu -> conv 3x3 /2 -> relu ("features", N,6,16,16)
    -> GlobalAveragePool -> Flatten -> Gemm (5 classes, "logits"); class labels in metadata.

    ``blocker``: an op type inserted after the first ReLU (an op without a gradient rule).
    """
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5
    w2 = rng.standard_normal((6, 4, 3, 3)).astype(np.float32) * 0.5
    fc = rng.standard_normal((5, 6)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32) * 0.1
    r1 = "r1"
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
    ]
    if blocker is not None:
        nodes.append(helper.make_node(blocker, ["r1"], ["blocked"], name="the_blocker"))
        r1 = "blocked"
    nodes += [
        helper.make_node("Conv", [r1, "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["features"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["features"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc", "b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        initializer=[numpy_helper.from_array(a, n) for n, a in [("w1", w1), ("w2", w2), ("fc", fc), ("b", b)]],
    )
    model = make_model(graph, opset=17)
    model.metadata_props.add(key="onnxviz.labels", value=json.dumps(LABELS))
    onnx.checker.check_model(model)
    return model


def not_an_image_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "vector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
    )
    return make_model(graph, opset=17)


