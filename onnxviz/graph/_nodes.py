"""Small helpers shared by the graph modules: attributes, constants, names."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import numpy_helper


def attrs(node: onnx.NodeProto) -> dict[str, object]:
    """A node's attributes as python values (tensors stay TensorProto)."""
    return {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """Graphs held by a node's attributes (If branches, Loop/Scan bodies)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def used_names(node: onnx.NodeProto) -> set[str]:
    """Every tensor a node reads, including outer-scope names its subgraphs capture."""
    names = {name for name in node.input if name}
    for graph in subgraphs(node):
        local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
        for inner in graph.node:
            local.update(inner.output)
        for inner in graph.node:
            names.update(name for name in used_names(inner) if name not in local)
        names.update(o.name for o in graph.output if o.name not in local)
    return names


def constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    """The value of a Constant node (None for a sparse or string value)."""
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if attr.name == "value":
            return numpy_helper.to_array(value)
        if attr.name in ("value_float", "value_floats"):
            return np.asarray(value, dtype=np.float32)
        if attr.name in ("value_int", "value_ints"):
            return np.asarray(value, dtype=np.int64)
    return None


class Constants:
    """Lazy lookup of constant tensor values (initializers and Constant nodes).

    Initializers that are also graph inputs can be overridden at run time;
    for shape parameters (pads, scales, axes) their stored value is what
    every exporter means, so they count as constants here.
    """

    def __init__(self, graph: onnx.GraphProto) -> None:
        self._initializers = {init.name: init for init in graph.initializer}
        self._nodes = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
        self._cache: dict[str, np.ndarray | None] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._initializers or name in self._nodes

    def get(self, name: str) -> np.ndarray | None:
        """The value of ``name``, or None when it is not a constant."""
        if name not in self._cache:
            if name in self._initializers:
                self._cache[name] = numpy_helper.to_array(self._initializers[name])
            elif name in self._nodes:
                self._cache[name] = constant_node_value(self._nodes[name])
            else:
                self._cache[name] = None
        return self._cache[name]

    def ints(self, name: str) -> list[int] | None:
        """A constant's values as a flat list of ints, None when not constant."""
        if not name:
            return None
        value = self.get(name)
        return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]

    def floats(self, name: str) -> list[float] | None:
        """A constant's values as a flat list of floats, None when not constant."""
        if not name:
            return None
        value = self.get(name)
        return None if value is None else [float(v) for v in np.asarray(value).reshape(-1)]


def tensor_names(graph: onnx.GraphProto) -> list[str]:
    """Every tensor name of a graph, in order: inputs, initializers, node outputs."""
    names: dict[str, None] = {}
    for info in graph.input:
        names[info.name] = None
    for init in graph.initializer:
        names[init.name] = None
    for node in graph.node:
        for name in node.output:
            if name:
                names[name] = None
    return list(names)


def image_dependent(graph: onnx.GraphProto, source: str) -> set[str]:
    """Tensors whose values depend on ``source`` (shape plumbing excluded).

    Shape and Size read only the shape of their input, so their outputs (and
    everything computed from shapes alone) do not depend on the image's values.
    """
    dependent = {source}
    for node in graph.node:
        if node.op_type in ("Shape", "Size"):
            continue
        if used_names(node) & dependent:
            dependent.update(name for name in node.output if name)
    return dependent


def ancestors(graph: onnx.GraphProto, name: str) -> set[str]:
    """``name`` and every tensor it is computed from (graph nodes in topological order)."""
    needed = {name}
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            needed.update(n for n in node.input if n)
    return needed
