"""What a model is: its image input, opset, size and onnxviz metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from onnxviz.errors import ModelLoadError, NotAnImageModelError
from onnxviz.graph._nodes import constant_node_value
from onnxviz.graph.load import Shape

LABELS_KEY = "onnxviz.labels"
PREPROCESSING_KEY = "onnxviz.preprocessing"

# Channel counts of images (grey, RGB, RGBA); a dim of this size is the channel axis.
_CHANNEL_COUNTS = (1, 3, 4)

# Ops that can sit between an NHWC input and the Transpose that makes it NCHW
# (casts and per-channel normalisation) without changing its layout.
_LAYOUT_KEEPING = {"Cast", "Sub", "Div", "Mul", "Add", "Identity"}

FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
}


@dataclass(frozen=True)
class InputSpec:
    """The model's image input.

    Attributes:
        name: graph input name.
        shape: 4 dims, each an int, a symbolic name or None.
        layout: "NCHW" or "NHWC".
        dtype: ``onnx.TensorProto`` element type.
    """

    name: str
    shape: tuple
    layout: str
    dtype: int

    def _dim(self, nchw_axis: int, nhwc_axis: int) -> int | None:
        dim = self.shape[nchw_axis if self.layout == "NCHW" else nhwc_axis]
        return dim if isinstance(dim, int) else None

    @property
    def channels(self) -> int | None:
        """Number of channels, None if dynamic."""
        return self._dim(1, 3)

    @property
    def height(self) -> int | None:
        """Image height, None if dynamic."""
        return self._dim(2, 1)

    @property
    def width(self) -> int | None:
        """Image width, None if dynamic."""
        return self._dim(3, 2)


def _input_shape(info: onnx.ValueInfoProto) -> Shape | None:
    """Shape of a graph input (None when it is not a tensor of known rank)."""
    if info.type.WhichOneof("value") != "tensor_type" or not info.type.tensor_type.HasField("shape"):
        return None
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
        for d in info.type.tensor_type.shape.dim
    )


def image_input(model: onnx.ModelProto) -> InputSpec:
    """The model's image input: the first non-initializer graph input of rank 4.

    Layout is NCHW when dim 1 is a channel count (1, 3, 4) and the last dim is
    not, NHWC in the mirror case; otherwise (ambiguous or dynamic) NHWC when
    the input feeds a Transpose with perm [0, 3, 1, 2] (what tf2onnx emits),
    else NCHW.

    Args:
        model: not modified.

    Raises:
        NotAnImageModelError: no rank-4 input.
    """
    initializers = {init.name for init in model.graph.initializer}
    found = []
    for info in model.graph.input:
        if info.name in initializers:
            continue
        shape = _input_shape(info)
        found.append(f"{info.name} {list(shape) if shape is not None else '(unknown shape)'}")
        if shape is not None and len(shape) == 4:
            layout = _layout(model, info.name, shape)
            return InputSpec(info.name, shape, layout, info.type.tensor_type.elem_type)
    raise NotAnImageModelError(
        f"the model has no 4-D image input (inputs: {', '.join(found) or 'none'}); "
        f"onnxviz needs a CNN taking an NCHW or NHWC image batch"
    )


def _layout(model: onnx.ModelProto, name: str, shape: Shape) -> str:
    """NCHW or NHWC for a rank-4 input, from its dims or else from its consumers."""
    first_is_channel = shape[1] in _CHANNEL_COUNTS
    last_is_channel = shape[3] in _CHANNEL_COUNTS
    if first_is_channel and not last_is_channel:
        return "NCHW"
    if last_is_channel and not first_is_channel:
        return "NHWC"
    return "NHWC" if _feeds_nhwc_transpose(model, name) else "NCHW"


def _feeds_nhwc_transpose(model: onnx.ModelProto, name: str) -> bool:
    """Whether the first consumer of ``name`` (past casts and normalisation) is Transpose [0,3,1,2]."""
    for _ in range(8):  # a short preprocessing chain at most
        node = next((n for n in model.graph.node if name in n.input), None)
        if node is None:
            return False
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            return perm == [0, 3, 1, 2]
        if node.op_type not in _LAYOUT_KEEPING:
            return False
        name = node.output[0]
    return False


def opset_version(model: onnx.ModelProto) -> int:
    """The default-domain ("" / "ai.onnx") opset version.

    Raises:
        ModelLoadError: the model imports no default-domain opset.
    """
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return opset.version
    raise ModelLoadError(
        "the model imports no default ONNX opset; re-export it with standard ONNX ops"
    )


def parameter_count(model: onnx.ModelProto) -> int:
    """Number of learned parameters: elements of floating-point constants.

    Counts float initializers, the integer ones that a DequantizeLinear turns into
    weights (int8 models), float Constant-node tensors and ConstantOfShape weight
    placeholders (by their shape, when their shape input is a constant: exporters that
    strip weights leave these).

    Args:
        model: not modified.
    """
    quantized = {node.input[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    total = sum(int(np.prod(init.dims)) for init in model.graph.initializer
                if init.data_type in FLOAT_TYPES or init.name in quantized)
    wanted = {node.input[0] for node in model.graph.node if node.op_type == "ConstantOfShape"}
    constants = constant_arrays(model, wanted)
    for node in model.graph.node:
        if node.op_type == "Constant":
            total += _constant_node_size(node)
        elif node.op_type == "ConstantOfShape" and node.input[0] in constants:
            if _constant_of_shape_dtype(node) in FLOAT_TYPES:
                total += int(np.prod(constants[node.input[0]]))
    return total


def constant_arrays(model: onnx.ModelProto, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """Values of initializers and Constant nodes holding a plain tensor.

    Args:
        model: not modified.
        names: only these tensors (all when None); converting every weight
            of a large model to numpy is slow.
    """
    arrays = {
        init.name: numpy_helper.to_array(init)
        for init in model.graph.initializer
        if names is None or init.name in names
    }
    for node in model.graph.node:
        if node.op_type != "Constant" or (names is not None and node.output[0] not in names):
            continue
        value = constant_node_value(node)
        if value is not None:
            arrays[node.output[0]] = value
    return arrays


def _constant_node_size(node: onnx.NodeProto) -> int:
    """Elements of a float Constant node's value (0 for integer constants)."""
    for attr in node.attribute:
        if attr.name == "value" and attr.t.data_type in FLOAT_TYPES:
            return int(np.prod(attr.t.dims))
        if attr.name == "value_float":
            return 1
        if attr.name == "value_floats":
            return len(attr.floats)
    return 0


def _constant_of_shape_dtype(node: onnx.NodeProto) -> int:
    """Element type a ConstantOfShape produces (float32 when it has no value)."""
    for attr in node.attribute:
        if attr.name == "value":
            return attr.t.data_type
    return onnx.TensorProto.FLOAT


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict (a repeated key: last one wins)."""
    return {prop.key: prop.value for prop in model.metadata_props}


def _json_metadata(model: onnx.ModelProto, key: str, kind: type, what: str) -> object | None:
    """Parse a JSON metadata value of the given kind, None when the key is absent."""
    raw = metadata(model).get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(
            f"metadata key {key!r} is not valid JSON ({exc.msg}); it must be {what}: "
            f"fix it or remove it from the model"
        ) from exc
    if not isinstance(value, kind):
        raise ModelLoadError(
            f"metadata key {key!r} holds a JSON {type(value).__name__}, not {what}; "
            f"fix it or remove it from the model"
        )
    return value


def dim_text(d: Any) -> str:
    """A size, a named free dim (``N``), or ``?``: unknown, a name onnx made up (``unk__3``),
    or an expression from symbolic inference (``floor(H/2 - 1/2) + 1``; ``--json`` keeps it)."""
    if d is None or (isinstance(d, str) and (not d.isidentifier() or d.startswith("unk__"))):
        return "?"
    return str(d)


def labels(model: onnx.ModelProto) -> list[str] | None:
    """Class names stored under ``onnxviz.labels`` (a JSON list of strings), or None.

    Raises:
        ModelLoadError: the value is not a JSON list of strings.
    """
    what = "a JSON list of class-name strings"
    value = _json_metadata(model, LABELS_KEY, list, what)
    if value is not None and not all(isinstance(item, str) for item in value):
        raise ModelLoadError(
            f"metadata key {LABELS_KEY!r} must be {what}, but some items are not "
            f"strings; fix it or remove it from the model"
        )
    return value


def preprocessing_dict(model: onnx.ModelProto) -> dict | None:
    """The preprocessing stored under ``onnxviz.preprocessing`` (a JSON object), or None.

    Raises:
        ModelLoadError: the value is not a JSON object.
    """
    return _json_metadata(model, PREPROCESSING_KEY, dict, "a JSON object")


def set_metadata(model: onnx.ModelProto, key: str, value: str) -> onnx.ModelProto:
    """Set a ``metadata_props`` entry in place, replacing any existing one with that key.

    Returns:
        The same model, for chaining.
    """
    if not isinstance(value, str):
        raise TypeError(f"metadata values are strings; got {type(value).__name__} for {key!r}")
    kept = [prop for prop in model.metadata_props if prop.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=key, value=value)
    return model


__all__ = [
    "InputSpec",
    "constant_arrays",
    "image_input",
    "labels",
    "metadata",
    "opset_version",
    "parameter_count",
    "preprocessing_dict",
    "set_metadata",
]
