"""The first convolution's kernels, read from the graph."""

from __future__ import annotations

import numpy as np

from onnxviz.errors import MethodError
from onnxviz.graph._nodes import Constants, image_dependent
from onnxviz.methods._graph import constant_value
from onnxviz.model import Model


def first_conv(model: Model) -> tuple[str, np.ndarray]:
    """The first Conv reachable from the image input whose weight is a constant.

    "First" is in graph order, which ONNX requires to be topological. The weight may be
    an initializer or a Constant node, possibly behind Identity, Cast, Transpose or
    DequantizeLinear (quantised exports). ONNX Conv weights are (O, I/group, kh, kw)
    whatever the model's input layout, so NHWC exports need no conversion.

    Args:
        model: the model.

    Returns:
        (node name, or its output tensor's name when the node is unnamed;
        float32 weights (O, I, kh, kw)).

    Raises:
        MethodError: no 2-D convolution with constant weights follows the input.
    """
    graph = model.proto.graph
    dependent = image_dependent(graph, model.input.name)
    constants = Constants(graph)
    found: list[str] = []
    for node in graph.node:
        if node.op_type != "Conv" or not node.input or node.input[0] not in dependent:
            continue
        weights = constant_value(graph, node.input[1], constants)
        if weights is not None and weights.ndim == 4:
            return node.name or node.output[0], np.asarray(weights, dtype=np.float32)
        found.append(node.name or node.output[0])
    if found:
        raise MethodError(
            f"the convolutions after the input ({', '.join(found[:3])}) are not 2-D or take "
            f"their weights from computed tensors; onnxviz can only show stored 2-D kernels"
        )
    raise MethodError(
        "the model has no Conv node after its image input, so there are no filters to show; "
        "use `onnxviz activations` to look at its layers instead"
    )
