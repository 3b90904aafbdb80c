"""Graph look-ups the methods share: producers, constants through simple wrappers."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxviz.graph._nodes import Constants, attrs

#: Ops a tensor's value passes through unchanged (for the question "where does it come from").
PASS_THROUGH = ("Identity", "Flatten", "Reshape", "Squeeze", "Dropout")


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Output name -> the node producing it."""
    return {out: node for node in graph.node for out in node.output if out}


def constant_value(graph: onnx.GraphProto, name: str, constants: Constants | None = None,
                   depth: int = 4) -> np.ndarray | None:
    """The value of ``name`` if it is a constant, possibly through a few wrapper ops.

    Follows Identity, Cast, Transpose, Reshape to a constant shape and DequantizeLinear
    (what exporters put between a stored weight and the op using it) up to ``depth`` ops
    deep, and evaluates ConstantOfShape of a constant shape (weights stripped to a fill,
    as in onnx's test-zoo models).

    Returns:
        The array, or None when ``name`` is computed from non-constant tensors.
    """
    constants = constants or Constants(graph)
    if name in constants:
        return constants.get(name)
    if depth == 0:
        return None
    node = producers(graph).get(name)
    if node is None:
        return None
    first = constant_value(graph, node.input[0], constants, depth - 1) if node.input else None
    if first is None:
        return None
    a = attrs(node)
    if node.op_type == "Identity":
        return first
    if node.op_type == "Cast":
        return first.astype(onnx.helper.tensor_dtype_to_np_dtype(int(a["to"])))
    if node.op_type == "Transpose":
        return np.transpose(first, a.get("perm"))
    if node.op_type == "Reshape" and len(node.input) > 1:
        shape = constant_value(graph, node.input[1], constants, depth - 1)
        if shape is None:
            return None
        keep_zero = int(a.get("allowzero", 0))  # else a 0 copies the input's dim
        target = [first.shape[i] if d == 0 and not keep_zero and i < first.ndim else int(d)
                  for i, d in enumerate(shape.reshape(-1))]
        try:
            return first.reshape(target)
        except ValueError:  # not a valid reshape: leave it to onnxruntime to say so
            return None
    if node.op_type == "ConstantOfShape":
        fill = a.get("value")
        value = numpy_helper.to_array(fill).reshape(-1)[0] if fill is not None else np.float32(0)
        return np.full([int(d) for d in first.reshape(-1)], value, dtype=np.asarray(value).dtype)
    if node.op_type == "DequantizeLinear":
        return _dequantize(graph, node, first, int(a.get("axis", 1)), constants, depth)
    return None


def _dequantize(graph: onnx.GraphProto, node: onnx.NodeProto, q: np.ndarray, axis: int,
                constants: Constants, depth: int) -> np.ndarray | None:
    """(q - zero_point) * scale, per tensor or per ``axis``."""
    scale = constant_value(graph, node.input[1], constants, depth - 1)
    if scale is None:
        return None
    zero = constant_value(graph, node.input[2], constants, depth - 1) if len(node.input) > 2 and node.input[2] else None
    zero = np.zeros_like(scale) if zero is None else zero
    shape = [1] * q.ndim
    if scale.ndim == 1 and q.ndim > 0:
        shape[axis % q.ndim] = -1
    scale = scale.astype(np.float32).reshape(shape if scale.size > 1 else ())
    zero = zero.astype(np.float32).reshape(shape if zero.size > 1 else ())
    return (q.astype(np.float32) - zero) * scale
