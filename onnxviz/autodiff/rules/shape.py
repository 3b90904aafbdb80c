"""Shape and indexing ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split,
Slice, Gather, GatherElements, Tile.

Shapes are read at run time (``Shape`` of the forward input) wherever the rule only needs to
restore them, so a dynamic batch (or a static shape that onnx's inference got wrong) is no
problem; only Slice's index arithmetic uses static lengths (with a run-time fallback).
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxviz.autodiff.registry import RuleContext, register
from onnxviz.errors import GradientError

INT64_MIN = np.iinfo(np.int64).min


def _shape_of(ctx: RuleContext, name: str) -> str:
    """The run-time shape of a forward tensor. Never the inferred static one: onnx's
    inference can disagree with onnxruntime (ceil-mode pools, Resize output sizes)."""
    return ctx.e.op("Shape", name)


def _zeros_like(ctx: RuleContext, name: str, dtype_of: str) -> str:
    """Zeros with the shape of ``name`` and the element type of ``dtype_of``."""
    elem = helper.np_dtype_to_tensor_dtype(ctx.dtype(dtype_of))
    zero = helper.make_tensor("zero", elem, [1], [0])
    return ctx.e.op("ConstantOfShape", _shape_of(ctx, name), value=zero)


def _reshape_back(ctx: RuleContext) -> list[str | None]:
    x = ctx.inputs[0]
    # allowzero: a zero-length dim of x must stay zero, not copy dY's dim
    allowzero = 1 if ctx.opset >= 14 else None
    dx = ctx.e.op("Reshape", ctx.dy[0], _shape_of(ctx, x), allowzero=allowzero)
    return [dx] + [None] * (len(ctx.inputs) - 1)


@register("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(ctx: RuleContext) -> list[str | None]:
    """Same elements, new shape: dX = Reshape(dY, shape(X)); shape/axes inputs get none."""
    return _reshape_back(ctx)


@register("Transpose")
def transpose(ctx: RuleContext) -> list[str | None]:
    """Y = X permuted by p: dX = dY permuted by p^-1."""
    perm = ctx.attr("perm")
    if perm is None:
        rank = ctx.rank(ctx.inputs[0])
        if rank is None:
            raise GradientError(f"node {ctx.node.name!r} (Transpose): unknown rank; run shape inference")
        perm = list(reversed(range(rank)))
    return [ctx.e.op("Transpose", ctx.dy[0], perm=[int(i) for i in np.argsort(perm)])]


def _axis(ctx: RuleContext, name: str, axis: int) -> int:
    if axis >= 0:
        return axis
    rank = ctx.rank(name)
    if rank is None:
        raise GradientError(f"node {ctx.node.name!r} ({ctx.node.op_type}): negative axis with "
                            f"unknown rank; run shape inference")
    return axis + rank


def _lengths(ctx: RuleContext, names: list[str], axis: int) -> str:
    """1-D int64 tensor of the run-time lengths of ``names`` along ``axis``."""
    e = ctx.e
    parts = [e.op("Slice", e.op("Shape", n), e.ints([axis]), e.ints([axis + 1])) for n in names]
    return e.op("Concat", *parts, axis=0)


@register("Concat")
def concat(ctx: RuleContext) -> list[str | None]:
    """Y = [X_1 ... X_k] along an axis: dX_i = the i-th piece of dY (one Split)."""
    names = ctx.inputs
    axis = _axis(ctx, names[0], int(ctx.attr("axis")))
    pieces = ctx.e.op("Split", ctx.dy[0], _lengths(ctx, names, axis), axis=axis, outputs=len(names))
    pieces = [pieces] if isinstance(pieces, str) else pieces
    return [p if ctx.needs(i) else None for i, p in enumerate(pieces)]


@register("Split")
def split(ctx: RuleContext) -> list[str | None]:
    """Y_i = pieces of X: dX = Concat(dY_i), zeros for outputs that get no gradient."""
    x = ctx.inputs[0]
    axis = _axis(ctx, x, int(ctx.attr("axis", 0)))
    parts = [dy if dy is not None else _zeros_like(ctx, y, x) for y, dy in zip(ctx.outputs, ctx.dy)]
    dx = parts[0] if len(parts) == 1 else ctx.e.op("Concat", *parts, axis=axis)
    return [dx] + [None] * (len(ctx.inputs) - 1)


# --- Slice -------------------------------------------------------------------------------------


def _slice_params(ctx: RuleContext) -> tuple[list, list, list, list] | None:
    """(starts, ends, axes, steps) as python ints, or None when any is computed at run time."""
    if len(ctx.inputs) == 1:  # opset < 10: attributes
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes = ctx.attr("axes", list(range(len(starts))))
        return list(starts), list(ends), list(axes), [1] * len(starts)
    values = [ctx.value(n) if n else None for n in (ctx.inputs + [""] * (5 - len(ctx.inputs)))[1:]]
    starts, ends, axes, steps = values
    names = (ctx.inputs + [""] * 5)[1:5]
    if starts is None or ends is None or (names[2] and axes is None) or (names[3] and steps is None):
        return None
    starts, ends = starts.tolist(), ends.tolist()
    axes = axes.tolist() if axes is not None else list(range(len(starts)))
    steps = steps.tolist() if steps is not None else [1] * len(starts)
    return starts, ends, axes, steps


def slice_indices(length: int, start: int, end: int, step: int) -> range:
    """The input positions a Slice reads along one axis (ONNX clamping rules)."""
    if step > 0:
        start = min(max(start + length if start < 0 else start, 0), length)
        end = min(max(end + length if end < 0 else end, 0), length)
    else:
        start = min(max(start + length if start < 0 else start, -1), length - 1)
        end = min(max(end + length if end < 0 else end, -1), length - 1)
    return range(start, end, step)


def _spread_axis(ctx: RuleContext, g: str, axis: int, rank: int, length: int, picked: range) -> str:
    """Transpose of reading positions ``picked`` (distinct, arithmetic) along ``axis``."""
    e = ctx.e
    axes = e.ints([axis])
    count = len(picked)
    step = picked.step if count > 1 else 1
    if step < 0:  # read backwards: reverse the gradient, then it is an increasing slice
        g = e.op("Slice", g, e.ints([-1]), e.ints([INT64_MIN]), axes, e.ints([-1]))
        step, first = -step, picked[-1]
    else:
        first = picked[0]
    if step > 1:  # put step-1 zeros after each element: (.., n, 1, ..) -> (.., n, step, ..) -> (.., n*step, ..)
        shape = e.op("Shape", g)
        up = e.op("Unsqueeze", g, e.ints([axis + 1]))
        pads = [0] * (2 * (rank + 1))
        pads[rank + 1 + axis + 1] = step - 1
        up = e.op("Pad", up, e.ints(pads))
        merged = e.op("Concat", e.op("Slice", shape, e.ints([0]), e.ints([axis])), e.ints([count * step]),
                      e.op("Slice", shape, e.ints([axis + 1]), e.ints([rank])), axis=0)
        g = e.op("Reshape", up, merged)
    pads = [0] * (2 * rank)  # the trailing zeros may overrun the end: a negative pad crops them
    pads[axis], pads[rank + axis] = first, length - first - count * step
    return e.op("Pad", g, e.ints(pads)) if any(pads) else g


@register("Slice")
def slice_(ctx: RuleContext) -> list[str | None]:
    """Y = X[start:end:step] per axis: dX = zeros with dY written back at the read positions."""
    x = ctx.inputs[0]
    params = _slice_params(ctx)
    shape = ctx.shape(x)
    if params is None or shape is None:
        return [_slice_dynamic(ctx)] + [None] * (len(ctx.inputs) - 1)
    starts, ends, axes, steps = params
    rank = len(shape)
    grad = ctx.dy[0]
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = axis % rank
        if not isinstance(shape[axis], int):
            return [_slice_dynamic(ctx)] + [None] * (len(ctx.inputs) - 1)
        picked = slice_indices(shape[axis], int(start), int(end), int(step))
        if not picked:  # nothing read: no gradient
            return [_zeros_like(ctx, x, x)] + [None] * (len(ctx.inputs) - 1)
        if len(picked) == shape[axis] and picked.step == 1:
            continue  # the whole axis
        grad = _spread_axis(ctx, grad, axis, rank, shape[axis], picked)
    return [grad] + [None] * (len(ctx.inputs) - 1)


def _slice_dynamic(ctx: RuleContext) -> str:
    """Run-time starts/ends/steps: slice the positions 0..n-1 of X with the same inputs to
    learn which positions were read, then ScatterElements dY there (positions are distinct)."""
    e, x = ctx.e, ctx.inputs[0]
    if len(ctx.inputs) == 1:
        raise GradientError(f"node {ctx.node.name!r} (Slice): unknown input shape; run shape inference")
    rank = ctx.rank(x)
    axes_v = ctx.value(ctx.inputs[3]) if len(ctx.inputs) > 3 and ctx.inputs[3] else None
    if rank is None or (len(ctx.inputs) > 3 and ctx.inputs[3] and axes_v is None):
        raise GradientError(
            f"node {ctx.node.name!r} (Slice): the gradient needs constant axes and a known rank"
        )
    if axes_v is None:
        starts_shape = ctx.shape(ctx.inputs[1])
        if starts_shape is None or not isinstance(starts_shape[0], int):
            raise GradientError(f"node {ctx.node.name!r} (Slice): cannot tell which axes are sliced")
        axes = list(range(starts_shape[0]))
    else:
        axes = [int(a) % rank for a in axes_v.tolist()]
    x_shape = e.op("Shape", x)
    one = e.const(np.array(1, dtype=np.int64))
    zero = e.const(np.array(0, dtype=np.int64))
    grad = ctx.dy[0]
    for i, axis in reversed(list(enumerate(axes))):
        length = e.op("Squeeze", e.op("Slice", x_shape, e.ints([axis]), e.ints([axis + 1])), e.ints([0]))
        positions = e.op("Range", zero, length, one)
        picks = [e.op("Slice", name, e.ints([i]), e.ints([i + 1])) if name else ""
                 for name in (ctx.inputs + [""] * 5)[1:3]]
        steps = []
        if len(ctx.inputs) > 4 and ctx.inputs[4]:
            steps = [e.op("Slice", ctx.inputs[4], e.ints([i]), e.ints([i + 1]))]
        read = e.op("Slice", positions, picks[0], picks[1], e.ints([0]), *steps)
        view = [1] * rank
        view[axis] = -1
        index = e.op("Expand", e.op("Reshape", read, e.ints(view)), e.op("Shape", grad))
        target_shape = e.op("ScatterElements", e.op("Shape", grad), e.ints([axis]),
                            e.op("Unsqueeze", length, e.ints([0])), axis=0)
        elem = helper.np_dtype_to_tensor_dtype(ctx.dtype(x))
        zeros = e.op("ConstantOfShape", target_shape, value=helper.make_tensor("zero", elem, [1], [0]))
        grad = e.op("ScatterElements", zeros, index, grad, axis=axis)
    return grad


# --- Gather, GatherElements --------------------------------------------------------------------


@register("Gather")
def gather(ctx: RuleContext) -> list[str | None]:
    """Y = X[..., idx, ...] along an axis: dX = zeros + dY scattered (added) at idx."""
    e, (x, idx), dy = ctx.e, ctx.inputs, ctx.dy[0]
    rank = ctx.rank(x)
    if rank is None:
        raise GradientError(f"node {ctx.node.name!r} (Gather): unknown rank of {x!r}; run shape inference")
    axis = int(ctx.attr("axis", 0)) % rank
    x_shape = e.op("Shape", x)
    before = e.op("Slice", x_shape, e.ints([0]), e.ints([axis]))
    after = e.op("Slice", x_shape, e.ints([axis + 1]), e.ints([rank]))
    # dY (X[:axis], *idx.shape, X[axis+1:]) -> (X[:axis], P, X[axis+1:]), P = idx.size
    flat_dy = e.op("Reshape", dy, e.op("Concat", before, e.ints([-1]), after, axis=0))
    flat_idx = e.op("Reshape", idx, e.ints([-1]))
    if ctx.opset >= 16:
        view = [1] * rank
        view[axis] = -1
        index = e.op("Expand", e.op("Reshape", flat_idx, e.ints(view)), e.op("Shape", flat_dy))
        dx = e.op("ScatterElements", _zeros_like(ctx, x, x), index, flat_dy, axis=axis, reduction="add")
        return [dx, None]
    # opset 13-15 (no scatter-add): one-hot (P, L) matrix, dX = onehot^T dY along the axis
    length = e.op("Slice", x_shape, e.ints([axis]), e.ints([axis + 1]))
    positions = e.op("Range", e.const(np.array(0, dtype=np.int64)), e.op("Squeeze", length, e.ints([0])),
                     e.const(np.array(1, dtype=np.int64)))
    wrapped = e.op("Mod", e.op("Add", flat_idx, e.op("Squeeze", length, e.ints([0]))),
                   e.op("Squeeze", length, e.ints([0])))  # negative indices count from the end
    elem = helper.np_dtype_to_tensor_dtype(ctx.dtype(x))
    onehot = e.op("Cast", e.op("Equal", e.op("Unsqueeze", wrapped, e.ints([1])), positions), to=elem)  # (P, L)
    lead = e.op("ReduceProd", before, keepdims=1) if axis else e.ints([1])
    moved = e.op("Reshape", flat_dy, e.op("Concat", lead, e.ints([-1]), e.ints([1]) if axis == rank - 1
                                          else e.op("ReduceProd", after, keepdims=1), axis=0))  # (A, P, B)
    summed = e.op("MatMul", e.op("Transpose", onehot, perm=[1, 0]), moved)  # (A, L, B)
    return [e.op("Reshape", summed, x_shape), None]


@register("GatherElements")
def gather_elements(ctx: RuleContext) -> list[str | None]:
    """Y[i] = X[..., idx[i], ...]: dX = zeros + dY scattered (added) at idx (opset 16+)."""
    if ctx.opset < 16:
        raise GradientError(
            f"node {ctx.node.name!r} (GatherElements): the gradient needs ScatterElements with "
            f"reduction (opset 16); convert the model to opset 16 or later"
        )
    e, (x, idx) = ctx.e, ctx.inputs
    rank = ctx.rank(x)
    axis = int(ctx.attr("axis", 0)) % rank if rank else int(ctx.attr("axis", 0))
    dx = e.op("ScatterElements", _zeros_like(ctx, x, x), idx, ctx.dy[0], axis=axis, reduction="add")
    return [dx, None]


# --- Tile ------------------------------------------------------------------------------------


@register("Tile")
def tile(ctx: RuleContext) -> list[str | None]:
    """Y = X repeated r_i times along each axis: dX = Σ over the copies (reshape to (r_i, d_i), sum r_i)."""
    e, (x, repeats) = ctx.e, ctx.inputs
    rank = ctx.rank(x)
    if rank is None:
        raise GradientError(f"node {ctx.node.name!r} (Tile): unknown rank of {x!r}; run shape inference")
    # Y's axis i has r_i * d_i entries, copy-major: reshape it to (r_i, d_i)
    pairs = e.op("Concat", e.op("Unsqueeze", repeats, e.ints([1])),
                 e.op("Unsqueeze", e.op("Shape", x), e.ints([1])), axis=1)  # (rank, 2)
    blocks = e.op("Reshape", ctx.dy[0], e.op("Reshape", pairs, e.ints([-1])))
    return [e.op("ReduceSum", blocks, e.ints(list(range(0, 2 * rank, 2))), keepdims=0), None]
