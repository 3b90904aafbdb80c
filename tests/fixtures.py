"""Tiny named models for tests, built with ``onnx.helper`` and ``graph.load.make_model``.

Every builder takes a ``seed`` (weights come from ``numpy.random.default_rng(seed)``),
an ``opset`` and, where it makes sense, sizes, so other test modules can reuse
them. Tensor names are stable and documented per builder; the image input is
always ``"x"`` with a symbolic batch dimension ``"N"``.

``stack`` and ``merged_stacks`` build conv/pool chains from a list of
``(op_type, attributes)`` layer specs; with ``positive=True`` every weight is
positive and every bias zero, so an input pixel influences an output exactly
when it is in the output's receptive field (no cancellation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxviz.graph.load import make_model

FLOAT = TensorProto.FLOAT
Layer = tuple[str, dict]


class GraphBuilder:
    """Collects nodes and initializers, naming weights after their node."""

    def __init__(self, seed: int = 0, positive: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.positive = positive
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, name: str, shape: Sequence[int]) -> str:
        """He-scaled random weights (positive in (0.1, 1) when ``positive``)."""
        if self.positive:
            value = self.rng.uniform(0.1, 1.0, shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
            value = self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        return self.const(name, value.astype(np.float32))

    def bias(self, name: str, size: int) -> str:
        value = np.zeros(size) if self.positive else self.rng.standard_normal(size) * 0.1
        return self.const(name, value.astype(np.float32))

    def node(self, op_type: str, inputs: Sequence[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=f"{output}_node", **attrs))
        return output

    def model(
        self,
        inputs: Sequence[onnx.ValueInfoProto],
        outputs: Sequence[str],
        opset: int = 17,
        name: str = "fixture",
    ) -> onnx.ModelProto:
        """A checked model; output types are filled in by shape inference."""
        graph = helper.make_graph(
            self.nodes,
            name,
            list(inputs),
            [helper.make_tensor_value_info(out, FLOAT, None) for out in outputs],
            self.initializers,
        )
        model = make_model(graph, opset=opset)
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model, full_check=True)
        return model


def image(
    name: str = "x", channels: int = 3, height: int = 16, width: int | None = None, layout: str = "NCHW"
) -> onnx.ValueInfoProto:
    """A float image input with a symbolic batch dimension."""
    width = height if width is None else width
    dims = ["N", channels, height, width] if layout == "NCHW" else ["N", height, width, channels]
    return helper.make_tensor_value_info(name, FLOAT, dims)


def add_layer(b: GraphBuilder, x: str, channels: int, spec: Layer, name: str, width: int) -> tuple[str, int]:
    """Append one layer spec to ``b``; return its output name and channel count.

    Specs: ``("Conv", attrs)`` and ``("ConvTranspose", attrs)`` with ``width``
    filters (``attrs["filters"]`` overrides); ``("Resize", {"scales": s, ...})``
    (s: one factor for H and W); ``("Pad", {"pads": [...4-D pads...], "mode": ...})``;
    anything else (Relu, MaxPool, AveragePool...) as a plain node with ``attrs``.
    """
    op, attrs = spec
    attrs = dict(attrs)
    if op in ("Conv", "ConvTranspose"):
        filters = attrs.pop("filters", width)
        group = attrs.get("group", 1)
        kernel = attrs["kernel_shape"]
        shape = [filters, channels // group, *kernel] if op == "Conv" else [channels, filters // group, *kernel]
        w = b.weight(f"{name}_w", shape)
        bias = b.bias(f"{name}_b", filters)
        return b.node(op, [x, w, bias], name, **attrs), filters
    if op == "Resize":
        scale = attrs.pop("scales")
        scales = b.const(f"{name}_scales", np.array([1, 1, scale, scale], np.float32))
        return b.node("Resize", [x, "", scales], name, **attrs), channels
    if op == "Pad":
        pads = b.const(f"{name}_pads", np.array(attrs.pop("pads"), np.int64))
        return b.node("Pad", [x, pads], name, **attrs), channels
    return b.node(op, [x], name, **attrs), channels


def stack(
    layers: Sequence[Layer],
    channels: int = 1,
    size: int = 32,
    width: int = 2,
    seed: int = 0,
    positive: bool = False,
    opset: int = 17,
    layout: str = "NCHW",
) -> onnx.ModelProto:
    """A chain of layers on an input ``x`` of ``channels`` x ``size`` x ``size``.

    Layer ``i``'s output is named ``l{i}``; the last is the model's output.
    With ``layout="NHWC"`` the input is NHWC and a Transpose ``nchw`` feeds the chain.
    """
    b = GraphBuilder(seed, positive)
    x = "x" if layout == "NCHW" else b.node("Transpose", ["x"], "nchw", perm=[0, 3, 1, 2])
    c = channels
    for i, spec in enumerate(layers):
        x, c = add_layer(b, x, c, spec, f"l{i}", width)
    return b.model([image("x", channels=channels, height=size, layout=layout)], [x], opset)


def merged_stacks(
    branches: Sequence[Sequence[Layer]],
    merge: str = "Concat",
    channels: int = 1,
    size: int = 32,
    width: int = 2,
    seed: int = 0,
    positive: bool = False,
    opset: int = 17,
) -> onnx.ModelProto:
    """Several chains from one input ``x``, merged by ``merge`` ("Concat" on channels, "Add", "Sum").

    Branch ``j``'s layer ``i`` is named ``b{j}_l{i}``; the merged output is ``merged``.
    Branches must end with equal spatial sizes (and, for Add/Sum, equal channels).
    """
    b = GraphBuilder(seed, positive)
    ends = []
    for j, layers in enumerate(branches):
        x, c = "x", channels
        for i, spec in enumerate(layers):
            x, c = add_layer(b, x, c, spec, f"b{j}_l{i}", width)
        ends.append(x)
    attrs = {"axis": 1} if merge == "Concat" else {}
    b.node(merge, ends, "merged", **attrs)
    return b.model([image("x", channels=channels, height=size)], ["merged"], opset)


def conv_relu_pool(
    channels: int = 3,
    size: int = 16,
    filters: int = 4,
    kernel: int = 3,
    stride: int = 1,
    pad: int = 1,
    pool: int = 2,
    seed: int = 0,
    opset: int = 17,
) -> onnx.ModelProto:
    """x -> Conv ``conv`` -> Relu ``relu`` -> MaxPool ``pool`` (the output)."""
    layers = [
        ("Conv", {"kernel_shape": [kernel, kernel], "strides": [stride, stride], "pads": [pad] * 4}),
        ("Relu", {}),
        ("MaxPool", {"kernel_shape": [pool, pool], "strides": [pool, pool]}),
    ]
    b = GraphBuilder(seed)
    x, c = "x", channels
    for spec, name in zip(layers, ("conv", "relu", "pool")):
        x, c = add_layer(b, x, c, spec, name, filters)
    return b.model([image("x", channels, size)], [x], opset, name="conv_relu_pool")


def _classifier_head(b: GraphBuilder, x: str, features: int, classes: int, gap: bool) -> str:
    """[GlobalAveragePool ``gap`` ->] Flatten ``flat`` -> Gemm ``logits``."""
    if gap:
        x = b.node("GlobalAveragePool", [x], "gap")
    x = b.node("Flatten", [x], "flat", axis=1)
    w = b.weight("logits_w", [classes, features])
    return b.node("Gemm", [x, w, b.bias("logits_b", classes)], "logits", transB=1)


def gap_gemm(
    channels: int = 3, size: int = 16, filters: int = 8, classes: int = 5, seed: int = 0, opset: int = 17
) -> onnx.ModelProto:
    """A CAM-ready net: Conv ``conv1`` -> Relu ``relu1`` -> Conv ``conv2`` -> Relu ``relu2``
    -> GlobalAveragePool ``gap`` -> Flatten ``flat`` -> Gemm ``logits`` (the output)."""
    b = GraphBuilder(seed)
    x, c = "x", channels
    for name in ("1", "2"):
        x, c = add_layer(b, x, c, ("Conv", {"kernel_shape": [3, 3], "pads": [1] * 4}), f"conv{name}", filters)
        x = b.node("Relu", [x], f"relu{name}")
    out = _classifier_head(b, x, filters, classes, gap=True)
    return b.model([image("x", channels, size)], [out], opset, name="gap_gemm")


def vgg_like(
    channels: int = 3,
    size: int = 16,
    filters: int = 4,
    hidden: int = 16,
    classes: int = 5,
    seed: int = 0,
    opset: int = 17,
) -> onnx.ModelProto:
    """Two Conv/Relu/MaxPool blocks (``conv1 relu1 pool1 conv2 relu2 pool2``), Flatten ``flat``,
    Gemm ``fc1``, Relu ``fc1_relu``, Gemm ``logits``, Softmax ``prob`` (the output)."""
    b = GraphBuilder(seed)
    x, c = "x", channels
    for name in ("1", "2"):
        x, c = add_layer(b, x, c, ("Conv", {"kernel_shape": [3, 3], "pads": [1] * 4}), f"conv{name}", filters)
        x = b.node("Relu", [x], f"relu{name}")
        x = b.node("MaxPool", [x], f"pool{name}", kernel_shape=[2, 2], strides=[2, 2])
    x = b.node("Flatten", [x], "flat", axis=1)
    features = filters * (size // 4) ** 2
    x = b.node("Gemm", [x, b.weight("fc1_w", [hidden, features]), b.bias("fc1_b", hidden)], "fc1", transB=1)
    x = b.node("Relu", [x], "fc1_relu")
    x = b.node("Gemm", [x, b.weight("logits_w", [classes, hidden]), b.bias("logits_b", classes)], "logits", transB=1)
    x = b.node("Softmax", [x], "prob", axis=1)
    return b.model([image("x", channels, size)], [x], opset, name="vgg_like")


def two_branch_concat(
    channels: int = 3, size: int = 16, filters: int = 4, classes: int = 5, seed: int = 0, opset: int = 17
) -> onnx.ModelProto:
    """Branch ``a`` (1x1 Conv) and branch ``b1`` (3x3 Conv) -> Relu ``b1_relu`` -> ``b2`` (3x3 Conv, dilation 2),
    Concat ``cat`` on channels, Relu ``cat_relu``, GAP/Flatten/Gemm head ending in ``logits``."""
    b = GraphBuilder(seed)
    a, _ = add_layer(b, "x", channels, ("Conv", {"kernel_shape": [1, 1]}), "a", filters)
    x, c = add_layer(b, "x", channels, ("Conv", {"kernel_shape": [3, 3], "pads": [1] * 4}), "b1", filters)
    x = b.node("Relu", [x], "b1_relu")
    x, c = add_layer(b, x, c, ("Conv", {"kernel_shape": [3, 3], "pads": [2] * 4, "dilations": [2, 2]}), "b2", filters)
    x = b.node("Concat", [a, x], "cat", axis=1)
    x = b.node("Relu", [x], "cat_relu")
    out = _classifier_head(b, x, 2 * filters, classes, gap=True)
    return b.model([image("x", channels, size)], [out], opset, name="two_branch_concat")


def nhwc_model(
    channels: int = 3, size: int = 16, filters: int = 4, classes: int = 5, seed: int = 0, opset: int = 17
) -> onnx.ModelProto:
    """A TF-style export: NHWC input ``x`` -> Transpose ``nchw`` (perm 0,3,1,2) -> Conv ``conv``
    (3x3, stride 2, SAME_UPPER) -> Relu ``relu`` -> GAP/Flatten/Gemm head ending in ``logits``."""
    b = GraphBuilder(seed)
    x = b.node("Transpose", ["x"], "nchw", perm=[0, 3, 1, 2])
    spec = ("Conv", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"})
    x, c = add_layer(b, x, channels, spec, "conv", filters)
    x = b.node("Relu", [x], "relu")
    out = _classifier_head(b, x, filters, classes, gap=True)
    return b.model([image("x", channels, size, layout="NHWC")], [out], opset, name="nhwc_model")


def dense_model(features: int = 10, classes: int = 3, seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """Not an image model: a rank-2 input ``x`` [N, features] -> Gemm ``logits``."""
    b = GraphBuilder(seed)
    w = b.weight("logits_w", [classes, features])
    out = b.node("Gemm", ["x", w, b.bias("logits_b", classes)], "logits", transB=1)
    return b.model([helper.make_tensor_value_info("x", FLOAT, ["N", features])], [out], opset, name="dense_model")


def random_image(model: onnx.ModelProto, batch: int = 2, seed: int = 0) -> np.ndarray:
    """A float32 N(0, 1) batch for the model's first input (symbolic dims -> ``batch``)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else batch for d in dims]
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ort_session(model: onnx.ModelProto):
    """An onnxruntime CPU session (quiet logging)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def ort_run(model: onnx.ModelProto, x: np.ndarray | dict, names: Sequence[str] | None = None) -> list[np.ndarray]:
    """Run a model on CPU; ``x`` feeds its first input unless it is a feed dict."""
    feeds = x if isinstance(x, dict) else {model.graph.input[0].name: x}
    return ort_session(model).run(None if names is None else list(names), feeds)
