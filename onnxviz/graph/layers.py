"""The layers a user can look at: every tensor computed from the image."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnxviz.graph._nodes import image_dependent
from onnxviz.graph.info import image_input
from onnxviz.graph.load import infer_shapes, tensor_shapes
from onnxviz.graph.receptive import ReceptiveField, receptive_fields


# Op types whose trailing outputs are not activations: how many leading outputs are.
_ACTIVATION_OUTPUTS = {"Dropout": 1, "BatchNormalization": 1}


@dataclass(frozen=True)
class Layer:
    """One output tensor of a compute node.

    Attributes:
        name: the output tensor's name (what ``expose``/``cut`` take).
        op_type: the node's op type.
        node_name: the node's name ("" when the exporter left it unnamed).
        shape: inferred shape (ints, symbolic names, None for unknown dims);
            ``()`` when the rank is unknown.
        receptive_field: None for tensors without a spatial layout.
    """

    name: str
    op_type: str
    node_name: str
    shape: tuple
    receptive_field: ReceptiveField | None


def list_layers(model: onnx.ModelProto) -> list[Layer]:
    """Every output of every node whose values depend on the image input, in graph order.

    Shape and constant plumbing (Constant, ConstantOfShape, Shape and the
    Gather/Unsqueeze/Concat/Cast chains computed from shapes or constants)
    is skipped: its values do not depend on the image. So are the auxiliary
    outputs that are not activations (Dropout's mask, BatchNormalization's
    training statistics).

    Args:
        model: not modified; shapes are inferred when it has no value_info.

    Raises:
        NotAnImageModelError: the model has no rank-4 input.
    """
    source = image_input(model).name
    if not model.graph.value_info and model.graph.node:
        model = infer_shapes(model)
    shapes = tensor_shapes(model)
    fields = receptive_fields(model)
    dependent = image_dependent(model.graph, source)
    return [
        Layer(name, node.op_type, node.name, shapes.get(name, ()), fields.get(name))
        for node in model.graph.node
        for index, name in enumerate(node.output)
        if name and name in dependent and index < _ACTIVATION_OUTPUTS.get(node.op_type, len(node.output))
    ]
