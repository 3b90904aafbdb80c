"""Graph rewrites: expose intermediate tensors as outputs, cut a model, prune dead code,
fold zero padding into convolutions, fix the batch size.

Each function returns a new model (the argument is never modified) whose IR
version went through :func:`fix_ir_version`; results pass ``onnx.checker``
whenever shape inference knows the type of every output.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from onnxviz.errors import UnknownTensorError
from onnxviz.graph._nodes import Constants, attrs, tensor_names, used_names
from onnxviz.graph.info import FLOAT_TYPES
from onnxviz.graph.load import copy_model, fix_ir_version, infer_shapes, tensor_dtypes, tensor_shapes


def expose(model: onnx.ModelProto, names: Sequence[str], only: bool = False,
           inputs: Sequence[str] | None = None) -> onnx.ModelProto:
    """Add tensors to a model's outputs.

    Args:
        model: not modified.
        names: tensors to expose: node outputs, graph inputs or initializers.
        only: make ``names`` the only outputs (the original ones go unless named) and
            prune the graph to the nodes they need.
        inputs: with ``only``, the graph inputs to keep even when nothing reads them
            any more; other unread inputs are dropped (see :func:`prune`).

    Returns:
        A new model, inputs untouched (unless ``only``), whose outputs are the
        original ones followed by ``names`` (each output once, in order), or
        ``names`` alone with ``only``, typed from shape inference where known.

    Raises:
        UnknownTensorError: a name is not a tensor of the model.
    """
    result = _inferred_copy(model)
    graph = result.graph
    require_known(graph, names)
    names = list(dict.fromkeys(names))
    types = _Types(result)
    if only:
        kept = {out.name: out for out in graph.output}
        del graph.output[:]
        graph.output.extend(kept[name] if name in kept else types.value_info(name) for name in names)
        _drop_value_info(graph, set(names))
        return prune(result, inputs=inputs)
    outputs = {out.name for out in graph.output}
    wanted = [name for name in names if name not in outputs]
    graph.output.extend(types.value_info(name) for name in wanted)
    _drop_value_info(graph, set(wanted))
    return fix_ir_version(result)


def cut(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """Truncate a model so that ``name`` is its only output.

    Args:
        model: not modified.
        name: the tensor to end at.

    Returns:
        A new model computing only ``name``, pruned to the nodes it needs.

    Raises:
        UnknownTensorError: ``name`` is not a tensor of the model.
    """
    return expose(model, [name], only=True)


def prune(model: onnx.ModelProto, inputs: Sequence[str] | None = None) -> onnx.ModelProto:
    """Drop nodes and initializers no output needs.

    Graph inputs stay (the model's interface does not change), except the
    input entries that only shadowed a dropped initializer (IR < 4 models list
    every initializer as an input), and, when ``inputs`` is given, the inputs
    no kept node reads that are not in ``inputs``.

    Args:
        model: not modified.
        inputs: graph inputs to keep even when nothing reads them (None: all).

    Returns:
        A new, pruned model.
    """
    result = copy_model(model)
    graph = result.graph
    needed = {out.name for out in graph.output}
    keep = [False] * len(graph.node)
    for index in reversed(range(len(graph.node))):
        node = graph.node[index]
        if any(name in needed for name in node.output):
            keep[index] = True
            needed |= used_names(node)
    dropped_inits = {init.name for init in graph.initializer if init.name not in needed}
    _keep(graph.node, lambda index, node: keep[index])
    _keep(graph.initializer, lambda _, init: init.name not in dropped_inits)
    _keep(graph.input, lambda _, info: info.name not in dropped_inits
          and (inputs is None or info.name in needed or info.name in inputs))
    produced = {name for node in graph.node for name in node.output}
    _keep(graph.value_info, lambda _, info: info.name in produced)
    return fix_ir_version(result)


def fold_pads(model: onnx.ModelProto, keep: Sequence[str] = (), materialize: bool = False) -> onnx.ModelProto:
    """Fold zero ``Pad`` nodes into the ``Conv`` nodes they feed (TF-style "same" padding).

    A constant-mode Pad with constant, non-negative pads on the spatial axes only and a
    zero (or absent) fill value, whose output is read by Conv nodes only (as their data
    input, without ``auto_pad``) and is not a graph output or in ``keep``, is removed and
    its pads are added to each Conv's ``pads``. The outputs are unchanged. onnxruntime
    does the same for a plain forward run, but not when the padded tensor has other
    readers, as it has in a gradient graph; there the explicit Pad and its backward
    crop cost about as much as all the depthwise convolutions they pad.

    With ``materialize``, a Pad whose output must stay is folded too, and its output is
    then computed off the main path by a 1x1 depthwise Conv with unit weights and the
    same pads, which gives the same values exactly (x * 1 + 0, zeros in the border). In
    onnxruntime that runs in the blocked NCHWc layout, several times faster than Pad,
    and the main-path Conv reads the unpadded tensor in its own layout: exposing every
    layer of a TF-padded model costs about a third less.

    Args:
        model: not modified.
        keep: tensors that must stay in the graph (exposed or differentiated tensors).
        materialize: fold kept Pads too, recomputing their outputs as above (float
            tensors with a known channel count only).

    Returns:
        A new model, or ``model`` itself when nothing folds.
    """
    if not any(node.op_type == "Pad" for node in model.graph.node):
        return model  # no copy (half a second for a VGG) when there is nothing to fold
    result = copy_model(model)
    graph = result.graph
    constants = Constants(graph)
    readers = _readers(graph)
    fixed = set(keep) | {out.name for out in graph.output}
    shapes = dtypes = None
    folded, recomputed = [], []
    for node in graph.node:
        pads = _zero_spatial_pads(node, constants)
        users = readers.get(node.output[0] if node.output else "", [])
        if pads is None or not users or not all(
            user.op_type == "Conv" and list(user.input).count(node.output[0]) == 1
            and user.input[0] == node.output[0] and attrs(user).get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            for user in users
        ):
            continue
        if node.output[0] in fixed:
            if not materialize:
                continue
            if shapes is None:
                inferred = infer_shapes(model)
                shapes, dtypes = tensor_shapes(inferred), tensor_dtypes(inferred)
            channels = _float_channels(shapes, dtypes, node.input[0])
            if channels is None:
                continue
            recomputed.append((node, channels, dtypes[node.input[0]], pads))
        spatial = len(pads) // 2
        for user in users:
            old = list(attrs(user).get("pads", [0] * (2 * spatial)))
            _keep(user.attribute, lambda _, a: a.name != "pads")
            user.attribute.append(onnx.helper.make_attribute("pads", [a + b for a, b in zip(old, pads)]))
            user.input[0] = node.input[0]
        folded.append(node)
    if not folded:
        return model
    taken = set(tensor_names(graph))
    for node, channels, dtype, pads in recomputed:
        node.CopyFrom(_unit_conv(graph, taken, node.input[0], node.output[0], node.name, channels, dtype, pads))
    gone = {id(node) for node in folded} - {id(node) for node, *_ in recomputed}
    _keep(graph.node, lambda _, node: id(node) not in gone)
    # Drop the pads/value constants nothing reads any more (not prune: the recomputed
    # Pad outputs are read by no output yet, only by the caller's expose).
    _drop_unread_initializers(graph)
    return fix_ir_version(result)


def share_padded(model: onnx.ModelProto, keep: Sequence[str]) -> tuple[onnx.ModelProto, dict[str, tuple[str, list[int]]]]:
    """Let a kept tensor be read off its kept zero-padded copy.

    When a tensor ``x`` and ``p = Pad(x)`` (zero fill, spatial axes) are both in ``keep``
    and the Pad is the only reader of ``x``, computing ``p`` is enough: ``x`` is its
    interior. If ``x = act(c)`` for an activation with ``act(0) == 0`` (Relu, LeakyRelu,
    Tanh, a Clip whose range holds 0), ``act`` and the Pad are also replaced by ``act``
    after a padding 1x1 depthwise Conv with unit weights, which gives ``p`` exactly
    (``c * 1 + 0`` inside, ``act(0) = 0`` in the border). onnxruntime fuses that Conv and
    ``act`` into one pass in its blocked NCHWc layout, where an unfused ``act`` (its input
    ``c`` is kept too, so its Conv cannot fuse it) ran in NCHW between two reorder copies,
    and ``x`` is never written: exposing every layer of a TF-padded network costs about a
    tenth less.

    Args:
        model: not modified.
        keep: tensors that must stay readable (exposed tensors).

    Returns:
        ``(new model, views)``: ``views[x] = (p, pads)``, pads in Conv order (spatial
        begins then ends), so that ``x == p[:, :, b0:H - e0, b1:W - e1, ...]``. The new
        model still computes every kept tensor except the keys of ``views``; it is
        ``model`` itself when there is nothing to share.
    """
    kept = set(keep)
    graph = model.graph
    constants = Constants(graph)
    readers = _readers(graph)
    producers = {out: node for node in graph.node for out in node.output}
    outputs = {out.name for out in graph.output}
    views: dict[str, tuple[str, list[int]]] = {}
    moved: list[tuple[onnx.NodeProto, onnx.NodeProto, list[int]]] = []  # (act, pad, pads)
    for node in graph.node:
        pads = _zero_spatial_pads(node, constants)
        if pads is None or node.output[0] not in kept:
            continue
        x = node.input[0]
        if x not in kept or x in outputs or [id(n) for n in readers.get(x, [])] != [id(node)]:
            continue
        views[x] = (node.output[0], pads)
        act = producers.get(x)
        if act is not None and len(act.output) == 1 and _keeps_zero(act, constants):
            moved.append((act, node, pads))
    if not moved:
        return model, views
    inferred = infer_shapes(model)
    shapes, dtypes = tensor_shapes(inferred), tensor_dtypes(inferred)
    result = copy_model(model)
    graph = result.graph
    taken = set(tensor_names(graph))
    index = {id(node): i for i, node in enumerate(model.graph.node)}
    for act, pad, pads in moved:
        source = act.input[0]
        channels = _float_channels(shapes, dtypes, source)
        if channels is None:
            continue  # the Pad stays; fold_pads(materialize=True) recomputes its output
        inside = _fresh(f"{pad.output[0]}/before_{act.op_type}", taken)
        conv = _unit_conv(graph, taken, source, inside, pad.name, channels, dtypes[source], pads)
        after = onnx.NodeProto()
        after.CopyFrom(act)
        after.input[0] = inside
        after.output[0] = pad.output[0]
        # the Conv takes the activation's place (its input is ready there), the
        # activation the Pad's
        graph.node[index[id(act)]].CopyFrom(conv)
        graph.node[index[id(pad)]].CopyFrom(after)
    _drop_unread_initializers(graph)  # the replaced Pads' pads/value constants
    return fix_ir_version(result), views


# act(0) == 0 for these whatever their attributes (Clip: when its range holds 0)
_ZERO_KEEPING = ("Relu", "LeakyRelu", "Tanh")


def _keeps_zero(node: onnx.NodeProto, constants: Constants) -> bool:
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type in _ZERO_KEEPING:
        return True
    if node.op_type != "Clip":
        return False
    if len(node.input) > 1:  # opset >= 11: min, max as optional inputs ("" or absent: none)
        low, high = (_bound(node.input[i] if len(node.input) > i else "", constants) for i in (1, 2))
        if low is _COMPUTED or high is _COMPUTED:
            return False
    else:
        a = attrs(node)
        low, high = a.get("min"), a.get("max")
    return (low is None or low <= 0) and (high is None or high >= 0)


_COMPUTED = object()


def _bound(name: str, constants: Constants):
    """A Clip bound input's value: None when absent, _COMPUTED when not a constant."""
    if not name:
        return None
    value = constants.floats(name)
    return _COMPUTED if not value else value[0]


def _readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it (subgraph reads included), in graph order."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in used_names(node):
            readers.setdefault(name, []).append(node)
    return readers


def _drop_unread_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in used_names(node)} | {o.name for o in graph.output}
    unused = {init.name for init in graph.initializer if init.name not in used}
    _keep(graph.initializer, lambda _, init: init.name not in unused)
    _keep(graph.input, lambda _, info: info.name not in unused)


def _float_channels(shapes: dict, dtypes: dict[str, int], name: str) -> int | None:
    """The channel count (axis 1) of a float tensor, None when unknown or not float."""
    shape = shapes.get(name)
    if not shape or len(shape) < 2 or not isinstance(shape[1], int) or dtypes.get(name) not in FLOAT_TYPES:
        return None
    return shape[1]


def _unit_conv(graph: onnx.GraphProto, taken: set[str], source: str, output: str, name: str,
               channels: int, dtype: int, pads: list[int]) -> onnx.NodeProto:
    """A 1x1 depthwise Conv with unit weights (added to ``graph``) and ``pads``: ``source``
    zero-padded, exactly (``x * 1 + 0`` inside, zeros in the border)."""
    weight = _fresh(f"{output}/unit_kernel", taken)
    ones = np.ones((channels, 1, *([1] * (len(pads) // 2))), dtype=onnx.helper.tensor_dtype_to_np_dtype(dtype))
    graph.initializer.append(numpy_helper.from_array(ones, weight))
    return onnx.helper.make_node("Conv", [source, weight], [output], name=name, group=channels, pads=pads)


def _fresh(base: str, taken: set[str]) -> str:
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def _zero_spatial_pads(node: onnx.NodeProto, constants: Constants) -> list[int] | None:
    """A zero Pad's spatial pads in Conv order (begins then ends), else None."""
    if node.op_type != "Pad" or node.domain not in ("", "ai.onnx"):
        return None
    a = attrs(node)
    if a.get("mode", b"constant") not in (b"constant", "constant"):
        return None
    if len(node.input) > 1:  # opset >= 11: pads, constant_value, axes as inputs
        pads = constants.ints(node.input[1])
        fill = constants.floats(node.input[2]) if len(node.input) > 2 and node.input[2] else [0.0]
        if len(node.input) > 3 and node.input[3]:
            return None  # explicit axes: rare, leave alone
    else:
        pads = [int(v) for v in a.get("pads", [])]
        fill = [float(a.get("value", 0.0))]
    if not pads or fill is None or any(v != 0 for v in fill) or any(p < 0 for p in pads):
        return None
    rank = len(pads) // 2
    begins, ends = pads[:rank], pads[rank:]
    if rank < 3 or begins[0] or begins[1] or ends[0] or ends[1]:
        return None
    return begins[2:] + ends[2:]


def fix_batch(model: onnx.ModelProto, size: int, inputs: Sequence[str] | None = None) -> onnx.ModelProto:
    """Fix the batch dimension (axis 0) of graph inputs to ``size``.

    onnxruntime plans memory and layouts better for static shapes: a gradient graph whose
    seed input has its own batch dimension cannot be proven to match the image batch, so
    every mask multiply falls out of the NCHWc layout into reorder copies. Symbolic
    dimensions named like a fixed input's batch dimension are fixed everywhere.

    Args:
        model: not modified.
        size: the batch size.
        inputs: the inputs to fix (default: every input whose axis 0 is not a number).

    Returns:
        A new model, or ``model`` itself when those inputs have no free batch dimension.
    """
    initializers = {init.name for init in model.graph.initializer}
    names = set(inputs) if inputs is not None else {i.name for i in model.graph.input if i.name not in initializers}
    return fix_input_dims(model, {name: [size] for name in names})


def fix_input_dims(model: onnx.ModelProto, dims: dict[str, Sequence[int | None]]) -> onnx.ModelProto:
    """Give free (symbolic or unknown) dimensions of graph inputs fixed sizes.

    ``dims[name][i]`` is the size of axis ``i`` of input ``name`` (None, or an axis past
    the list's end: left as it is); dimensions that already have a size keep it. A
    symbolic dimension fixed this way is fixed under its name everywhere (other inputs
    and outputs, value_info), as shape inference would propagate it.

    Args:
        model: not modified.
        dims: input name -> sizes per axis.

    Returns:
        A new model, or ``model`` itself when none of those dimensions is free (a copy
        of a VGG's weights costs a second and half a gigabyte).
    """
    if next(_free_input_dims(model.graph, dims), None) is None:
        return model
    result = copy_model(model)
    graph = result.graph
    symbols: dict[str, int] = {}
    for dim, size in _free_input_dims(graph, dims):
        if dim.dim_param:
            symbols[dim.dim_param] = size
        dim.dim_value = size
    if symbols:
        for info in [*graph.input, *graph.output, *graph.value_info]:
            for dim in info.type.tensor_type.shape.dim:
                if dim.dim_param in symbols:
                    dim.dim_value = symbols[dim.dim_param]
    return fix_ir_version(result)


def _free_input_dims(graph: onnx.GraphProto, dims: dict[str, Sequence[int | None]]):
    """(dimension, size) for each free dimension of ``graph``'s inputs that ``dims`` sizes."""
    for info in graph.input:
        if not info.type.tensor_type.HasField("shape"):
            continue
        for dim, size in zip(info.type.tensor_type.shape.dim, dims.get(info.name, ())):
            if size is not None and not (dim.HasField("dim_value") and dim.dim_value > 0):
                yield dim, size


def _inferred_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with inferred shapes (infer_shapes copies, except when inference fails)."""
    result = infer_shapes(model)
    return copy_model(model) if result is model else result


def _keep(field: object, predicate: Callable[[int, object], bool]) -> None:
    """Delete, in place, the items of a repeated protobuf field that fail ``predicate(index, item)``.

    Deleting by index avoids copying the kept items (initializers can be large).
    """
    drop = [index for index, item in enumerate(field) if not predicate(index, item)]
    for index in reversed(drop):
        del field[index]


def require_known(graph: onnx.GraphProto, names: Sequence[str]) -> None:
    """Raise UnknownTensorError, with close matches, for the first name the graph lacks."""
    known = tensor_names(graph)
    known_set = set(known)
    for name in names:
        if name not in known_set:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            raise UnknownTensorError(
                f"the model has no tensor named {name!r}; {hint}`onnxviz inspect` lists the layer names"
            )


# Outputs that shape inference of old opsets leaves unknown but that have an input's shape:
# (op type, output index) -> input index.
_SHAPE_OF_INPUT = {("Dropout", 1): 0}


class _Types:
    """Types and shapes of a graph's tensors, for declaring them as outputs."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.declared = {info.name: info for info in [*graph.value_info, *graph.input, *graph.output]}
        self.initializers = {init.name: init for init in graph.initializer}
        self.producers = {out: (node, i) for node in graph.node for i, out in enumerate(node.output)}
        self.opsets = {o.domain: o.version for o in model.opset_import}
        self.opsets.setdefault("", self.opsets.get("ai.onnx", 1))

    def value_info(self, name: str) -> onnx.ValueInfoProto:
        """A new ValueInfoProto for ``name``: inferred or declared, from its initializer, or from its op's schema.

        Without any type information it is left untyped: onnxruntime infers it,
        though onnx.checker then rejects the model.
        """
        info = onnx.ValueInfoProto()
        if name in self.declared:
            info.CopyFrom(self.declared[name])
        elif name in self.initializers:
            init = self.initializers[name]
            info.CopyFrom(onnx.helper.make_tensor_value_info(name, init.data_type, list(init.dims)))
        elif (elem_type := self._schema_elem_type(name)) is not None:
            info.CopyFrom(onnx.helper.make_tensor_value_info(name, elem_type, self._input_shape(name)))
        else:
            info.name = name
        return info

    def _elem_type(self, name: str) -> int:
        if name in self.initializers:
            return self.initializers[name].data_type
        info = self.declared.get(name)
        return info.type.tensor_type.elem_type if info is not None else 0

    def _schema_elem_type(self, name: str) -> int | None:
        """Element type of a node output that shape inference left untyped, from the op's schema.

        Some old schemas (Dropout-7's mask) have no type inference; the output
        is either of a fixed type ("tensor(bool)") or shares a type variable
        with an input whose type is known.
        """
        if name not in self.producers:
            return None
        node, index = self.producers[name]
        try:
            schema = onnx.defs.get_schema(node.op_type, self.opsets.get(node.domain, 1), node.domain)
        except onnx.defs.SchemaError:
            return None
        formal = schema.outputs[min(index, len(schema.outputs) - 1)]
        if formal.type_str.startswith("tensor("):
            return onnx.TensorProto.DataType.Value(formal.type_str[len("tensor(") : -1].upper())
        for i, actual in enumerate(node.input):
            formal_in = schema.inputs[min(i, len(schema.inputs) - 1)]
            if formal_in.type_str == formal.type_str and self._elem_type(actual):
                return self._elem_type(actual)
        return None

    def _input_shape(self, name: str) -> list | None:
        """The shape of the input an output shares its shape with (Dropout's mask), if known."""
        node, index = self.producers[name]
        source = _SHAPE_OF_INPUT.get((node.op_type, index))
        info = self.declared.get(node.input[source]) if source is not None else None
        if info is None or not info.type.tensor_type.HasField("shape"):
            return None
        dims = info.type.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]


def _drop_value_info(graph: onnx.GraphProto, names: set[str]) -> None:
    """Remove value_info entries that became outputs (an output declares its own type)."""
    if names:
        _keep(graph.value_info, lambda _, info: info.name not in names)
