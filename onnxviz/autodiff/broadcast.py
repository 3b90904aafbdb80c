"""Undo numpy-style broadcasting of a gradient, in one place for every rule."""

from __future__ import annotations

from onnxviz.autodiff.registry import RuleContext
from onnxviz.errors import GradientError


def _classify_axes(in_shape: tuple, out_shape: tuple) -> tuple[list[int], list[int], list[int]]:
    """(leading, stretched, unknown) axes of ``out_shape`` for an input of ``in_shape``.

    unknown: axes where static shapes cannot tell whether the input was broadcast (its
    dim is unknown, or a symbol other than the output's: onnx names the batch dim of a
    Resize by scales ``unk__0`` while the image input calls it ``N``).
    """
    lead = len(out_shape) - len(in_shape)
    if lead < 0:
        raise GradientError(f"input rank {len(in_shape)} exceeds output rank {len(out_shape)}")
    stretched, unknown = [], []
    for axis, dim in enumerate(in_shape):
        out_dim = out_shape[lead + axis]
        if dim == 1 and out_dim != 1:
            stretched.append(lead + axis)
        elif isinstance(dim, int) or (isinstance(dim, str) and dim == out_dim):
            continue
        else:
            unknown.append(lead + axis)
    return list(range(lead)), stretched, unknown


def broadcast_axes(in_shape: tuple, out_shape: tuple) -> tuple[list[int], list[int]]:
    """Axes of ``out_shape`` to sum so a gradient of that shape fits ``in_shape``.

    Returns:
        (leading, stretched): the leading axes that ``in_shape`` lacks (summed and
        dropped) and the axes where ``in_shape`` has 1 but ``out_shape`` may not
        (summed, kept as 1).

    Raises:
        GradientError: when static shapes cannot tell whether an axis was broadcast.
    """
    lead, stretched, unknown = _classify_axes(in_shape, out_shape)
    if unknown:
        axis = unknown[0] - len(lead)
        raise GradientError(
            f"cannot tell whether axis {axis} of shape {in_shape} was broadcast to "
            f"{out_shape}: give the model static or named dims (run shape inference)"
        )
    return lead, stretched


def unbroadcast(ctx: RuleContext, grad: str, x: str, out: str) -> str:
    """Sum ``grad`` (shaped like forward tensor ``out``) down to the shape of input ``x``.

    Axes whose broadcasting static shapes cannot tell are summed where ``x``'s run-time
    dim is 1 (a no-op when the output's is 1 too), decided in the graph.
    """
    in_shape, out_shape = ctx.shape(x), ctx.shape(out)
    if in_shape is None or out_shape is None:
        raise GradientError(
            f"node {ctx.node.name!r} ({ctx.node.op_type}): unknown shape of {x!r} or {out!r}, "
            f"needed to undo broadcasting; run shape inference or give static shapes"
        )
    lead, stretched, unknown = _classify_axes(tuple(in_shape), tuple(out_shape))
    e = ctx.e
    if stretched:
        grad = e.op("ReduceSum", grad, e.ints(stretched), keepdims=1)
    if unknown:
        dims = e.op("Gather", e.op("Shape", x), e.ints([a - len(lead) for a in unknown]))
        ones = e.op("Equal", dims, e.ints([1]))
        axes = e.op("Compress", e.ints(unknown), ones, axis=0)
        grad = e.op("ReduceSum", grad, axes, keepdims=1, noop_with_empty_axes=1)
    if lead:
        grad = e.op("ReduceSum", grad, e.ints(lead), keepdims=0)
    return grad
