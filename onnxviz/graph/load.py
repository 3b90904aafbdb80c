"""Load, check and shape-infer ONNX models; read tensor shapes and types.

Every model onnxviz builds or loads goes through :func:`fix_ir_version`:
onnx 1.23 writes IR version 14 by default, but the onnxruntime releases we
support read only up to about IR 10.
"""

from __future__ import annotations

import os
from collections.abc import MutableSequence

import onnx
from google.protobuf.message import DecodeError

from onnxviz.errors import ModelLoadError

MAX_IR_VERSION = 10

Shape = tuple[int | str | None, ...]

# protobuf refuses to serialise a message over 2 GiB, so the in-memory checker
# and shape inference cannot see such models; the checker can read them by path.
_PROTOBUF_LIMIT = 2**31 - 1


def load_model(source: str | os.PathLike | bytes | onnx.ModelProto) -> onnx.ModelProto:
    """Load a model, check it, fix its IR version and infer its shapes.

    Args:
        source: a path to an ``.onnx`` file (external data files next to it are
            loaded too), the raw bytes of one, or a ModelProto (copied, never
            mutated).

    Returns:
        A new ModelProto that passed ``onnx.checker``, with
        :func:`fix_ir_version` applied and shapes inferred where onnx can.

    Raises:
        ModelLoadError: the file is missing, is not ONNX, is corrupt or fails
            the checker.
    """
    if isinstance(source, onnx.ModelProto):
        label = f"model {source.graph.name or '<unnamed>'!r}"
        model = copy_model(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        label = "model bytes"
        model = _parse(bytes(source), label)
    else:
        path = os.fspath(source)
        label = repr(path)
        model = _read(path)
    _require_graph(model, label)
    by_path = isinstance(source, (str, os.PathLike)) and model.ir_version <= onnx.IR_VERSION
    fix_ir_version(model)
    _check(model, label, source, by_path)
    inferred = _inferred(model)
    if inferred is not None:  # the model is our own copy: no need for infer_shapes' copy
        _apply_inferred(model, inferred)
    return model


def _read(path: str) -> onnx.ModelProto:
    """Read an .onnx file and its external data, turning failures into ModelLoadError."""
    if os.path.isdir(path):
        raise ModelLoadError(f"model path {path!r} is a folder; give the .onnx file in it")
    if not os.path.isfile(path):
        raise ModelLoadError(f"model file {path!r} does not exist; check the path")
    try:
        return onnx.load(path, load_external_data=True)
    except DecodeError as exc:
        raise ModelLoadError(
            f"{path!r} is not an ONNX model or is corrupt ({_first_line(exc)}); "
            f"re-export or re-download it"
        ) from exc
    except (FileNotFoundError, onnx.checker.ValidationError) as exc:
        # onnx.load raises these when an external data file is missing or lies
        # outside the model's folder.
        raise ModelLoadError(
            f"{path!r}: cannot read its external data ({_first_line(exc)}); keep the "
            f"data files next to the .onnx file"
        ) from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"cannot read {path!r} ({_first_line(exc)}); check it is a complete .onnx file"
        ) from exc


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    """Parse serialized ModelProto bytes."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError as exc:
        raise ModelLoadError(
            f"{label} are not an ONNX model or are corrupt ({_first_line(exc)}); "
            f"pass the bytes of a complete .onnx file"
        ) from exc
    return model


def _require_graph(model: onnx.ModelProto, label: str) -> None:
    """Reject data that parsed as protobuf but is not a model.

    Protobuf parsing is lenient: many byte strings decode to a ModelProto made
    of unknown fields. Without a graph or an IR version it is not ONNX.
    """
    if model.ir_version == 0 or not model.HasField("graph"):
        raise ModelLoadError(
            f"{label} is not an ONNX model (no IR version or no graph); "
            f"check that it is a complete .onnx file"
        )


def _check(model: onnx.ModelProto, label: str, source: object, by_path: bool) -> None:
    """Run onnx.checker: by path when ``by_path`` (the file's IR version is one this onnx
    knows: reading the file is faster than serialising the model, seconds for a VGG) or
    when the model is too large for one protobuf message."""
    target: onnx.ModelProto | str = model
    # half the limit: a margin for the graph itself and for the size estimate
    if by_path or (_weight_bytes(model) > _PROTOBUF_LIMIT // 2 and isinstance(source, (str, os.PathLike))):
        target = os.fspath(source)
    try:
        onnx.checker.check_model(target)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise ModelLoadError(
            f"{label} fails the ONNX checker: {_first_line(exc)}; re-export the model "
            f"with a recent exporter"
        ) from exc


def _weight_bytes(model: onnx.ModelProto) -> int:
    """Approximate size of the initializers (ModelProto.ByteSize takes seconds on a VGG)."""
    total = 0
    for init in model.graph.initializer:
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        except KeyError:  # undefined or newer types: assume the widest
            itemsize = 8
        total += _numel(init.dims) * itemsize
    return total


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def fix_ir_version(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lower the IR version to what onnxruntime reads, without going below the opsets' needs.

    Args:
        model: modified in place.

    Returns:
        The same model, with ``ir_version = max(min(ir, MAX_IR_VERSION), needed)``
        where ``needed`` is the lowest IR version its opset imports allow.
    """
    needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    model.ir_version = max(min(model.ir_version, MAX_IR_VERSION), needed)
    return model


def make_model(graph: onnx.GraphProto, opset: int = 17, **kw: object) -> onnx.ModelProto:
    """``onnx.helper.make_model`` with a default-domain opset import and a fixed IR version.

    Args:
        graph: the graph.
        opset: default-domain opset version, used unless ``opset_imports`` is in ``kw``.
        **kw: passed to ``onnx.helper.make_model`` (``producer_name``, ``opset_imports``...).

    Returns:
        The model, IR version fixed with :func:`fix_ir_version`.
    """
    kw.setdefault("opset_imports", [onnx.helper.make_opsetid("", opset)])
    return fix_ir_version(onnx.helper.make_model(graph, **kw))


def infer_shapes(model: onnx.ModelProto, copy: bool = True) -> onnx.ModelProto:
    """Run ONNX shape inference (with data propagation), tolerating failures.

    Args:
        model: not modified, unless ``copy`` is False.
        copy: False to write the shapes into ``model`` itself (a caller's own copy:
            copying a VGG's weights once more costs most of a second).

    Returns:
        A new model with inferred ``value_info`` (``model`` itself without ``copy``),
        or ``model`` itself unchanged when inference raises (unknown custom ops, models
        over 2 GiB...): shapes are a convenience, never a reason to refuse a model.
    """
    inferred = _inferred(model)
    if inferred is None:
        return model
    if copy:
        model = copy_model(model)
    _apply_inferred(model, inferred)
    return model


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """Shape inference on the model's skeleton, None when it raises.

    onnx's inference first. Its data propagation does not follow every shape-computing
    subgraph that exporters write (torch's ``chunk``: Slice ends from Shape/Div; ``F.pad``:
    pads from a ConstantOfShape/Reshape/Slice/Transpose/Cast chain; a channel shuffle's
    Reshape at opset 13), and the dims after them come back unknown, which strided
    gradient rules and receptive fields cannot work with. Then onnxruntime's symbolic
    shape inference is tried, and kept when it leaves fewer dims unknown.
    """
    bare = skeleton(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(bare, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference errors come in many types; all mean "no shapes"
        inferred = None
    lost = _unknown_dims(inferred) if inferred is not None else None
    if lost == 0:
        return inferred
    symbolic = _symbolic_inferred(bare)
    if symbolic is not None and (lost is None or _unknown_dims(symbolic) < lost):
        return symbolic
    return inferred


def _unknown_dims(model: onnx.ModelProto) -> int:
    """Dims of intermediate and output tensors that inference could not name: no value and
    no symbol, or a symbol onnx made up (``unk__3``), or no shape at all (counted as 1)."""
    count = 0
    for info in (*model.graph.value_info, *model.graph.output):
        if info.type.WhichOneof("value") != "tensor_type":
            continue
        tensor = info.type.tensor_type
        if not tensor.HasField("shape"):
            count += 1
            continue
        count += sum(1 for d in tensor.shape.dim
                     if not d.HasField("dim_value") and not d.dim_param or d.dim_param.startswith("unk__"))
    return count


def _symbolic_inferred(bare: onnx.ModelProto) -> onnx.ModelProto | None:
    """onnxruntime's symbolic shape inference (it evaluates shape subgraphs with sympy),
    quietly; None when it is unavailable or raises.

    Without ``auto_merge``: merging would declare two free dims equal wherever an op
    combines them (``A * B`` of shapes (A, 3) and (B, 3) becomes (A, 3)), which is false
    when one of them is a broadcast 1, and gradient rules would then skip the reduction.
    """
    import logging

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError:  # sympy missing: onnx's shapes stand
        return None
    log = logging.getLogger(SymbolicShapeInference.__module__)
    level = log.level
    log.setLevel(logging.CRITICAL)  # it warns about every symbol it cannot resolve
    try:
        # SymbolicShapeInference.infer_shapes, less its debugging dump: when inference does
        # not finish it saves the model to sym_shape_infer_temp.onnx (and its weights to
        # *.data files) in the working folder before raising.
        inference = SymbolicShapeInference(2**31 - 1, False, False, 0)
        inference._preprocess(bare)
        complete = False
        while inference.run_:
            complete = inference._infer_impl()
        inference._update_output_from_vi()
        return inference.out_mp_ if complete else None
    except Exception:  # noqa: BLE001 - as for onnx's inference: no shapes, not an error
        return None
    finally:
        log.setLevel(level)


def _apply_inferred(model: onnx.ModelProto, inferred: onnx.ModelProto) -> None:
    """Copy inferred value_info and output types into ``model`` (in place)."""
    weights = {init.name for init in model.graph.initializer}
    del model.graph.value_info[:]
    model.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in weights)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)


# Initializers larger than this are hidden by skeleton().
_SKELETON_MAX_ELEMENTS = 1024


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its large initializers turned into typed graph inputs.

    Shape inference, the checker and the version converter serialise the whole model,
    weights included (seconds for a VGG); they need only the weights' types and shapes.
    Small initializers keep their values because data propagation and the converter read
    them (Reshape targets, pads, axes). :func:`with_weights` puts the weights back into a
    model made from the skeleton.
    """
    graph = model.graph
    result = without_initializers(model)
    result.ir_version = max(model.ir_version, 4)  # initializers may then be absent from the inputs
    sk_graph = result.graph
    declared = {info.name for info in graph.input}
    for init in graph.initializer:
        if not _hidden(init):
            sk_graph.initializer.append(init)
        elif init.name not in declared:
            sk_graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return result


def with_weights(derived: onnx.ModelProto, model: onnx.ModelProto) -> onnx.ModelProto:
    """``derived`` (modified in place), made from ``skeleton(model)``, with the initializers
    the skeleton hid back in place of the graph inputs that stood for them (those of them
    that ``derived`` still declares)."""
    graph = derived.graph
    declared = {info.name for info in model.graph.input}
    names = {info.name for info in graph.input}
    hidden = [init for init in model.graph.initializer if _hidden(init) and init.name in names]
    added = {init.name for init in hidden} - declared
    kept = [info for info in graph.input if info.name not in added]
    del graph.input[:]
    graph.input.extend(kept)
    graph.initializer.extend(hidden)
    return derived


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of ``model``, weights included (see :func:`without_initializers` for one
    without them)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    return result


def without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` without its graph's initializers (cheap: no weights are copied)."""
    result = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(result, field.name, value)
    for field, value in model.graph.ListFields():
        if field.name != "initializer":
            _copy_field(result.graph, field.name, value)
    return result


def _hidden(init: onnx.TensorProto) -> bool:
    return _numel(init.dims) > _SKELETON_MAX_ELEMENTS


def _copy_field(message, name: str, value) -> None:
    """Set field ``name`` of a protobuf message to ``value`` (repeated fields extended)."""
    if isinstance(value, MutableSequence):
        getattr(message, name).extend(value)
    elif hasattr(value, "CopyFrom"):
        getattr(message, name).CopyFrom(value)
    else:
        setattr(message, name, value)


def _numel(dims: object) -> int:
    """Product of a sequence of ints (1 for a scalar)."""
    total = 1
    for d in dims:
        total *= int(d)
    return total


def _value_infos(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """value_info, outputs and inputs, in increasing order of authority."""
    graph = model.graph
    return [*graph.value_info, *graph.output, *graph.input]


def _dims(type_proto: onnx.TypeProto) -> Shape | None:
    """Shape of a tensor type: ints, symbolic names, None for unknown; None if rank unknown."""
    if type_proto.WhichOneof("value") != "tensor_type":
        return None
    tensor_type = type_proto.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def tensor_shapes(model: onnx.ModelProto) -> dict[str, Shape]:
    """Shapes of every named tensor of known rank.

    Reads the graph's inputs, outputs, value_info and initializers as they
    are; call :func:`infer_shapes` first (``load_model`` does) to fill value_info.

    Args:
        model: not modified.

    Returns:
        ``{name: shape}``; a dimension is an int, the name of a symbolic
        dimension, or None when unknown.
    """
    shapes: dict[str, Shape] = {}
    for info in _value_infos(model):
        dims = _dims(info.type)
        if dims is not None and info.name:
            shapes[info.name] = dims
    for init in model.graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes


def tensor_dtypes(model: onnx.ModelProto) -> dict[str, int]:
    """Element types (``onnx.TensorProto`` enum values) of every tensor whose type is known.

    Args:
        model: not modified; see :func:`tensor_shapes` about shape inference.

    Returns:
        ``{name: elem_type}``.
    """
    dtypes: dict[str, int] = {}
    for info in _value_infos(model):
        if info.type.WhichOneof("value") == "tensor_type" and info.type.tensor_type.elem_type:
            dtypes[info.name] = info.type.tensor_type.elem_type
    for init in model.graph.initializer:
        dtypes[init.name] = init.data_type
    return dtypes
