"""Undo numpy-style broadcasting of a gradient, in one place for every rule."""

from __future__ import annotations

from onnxviz.autodiff.registry import RuleContext
from onnxviz.errors import GradientError


def broadcast_axes(in_shape: tuple, out_shape: tuple) -> tuple[list[int], list[int]]:
    """Axes of ``out_shape`` to sum so a gradient of that shape fits ``in_shape``.

    Returns:
        (leading, stretched): the leading axes that ``in_shape`` lacks (summed and
        dropped) and the axes where ``in_shape`` has 1 but ``out_shape`` may not
        (summed, kept as 1).

    Raises:
        GradientError: when static shapes cannot tell whether an axis was broadcast.
    """
    lead = len(out_shape) - len(in_shape)
    if lead < 0:
        raise GradientError(f"input rank {len(in_shape)} exceeds output rank {len(out_shape)}")
    stretched = []
    for axis, dim in enumerate(in_shape):
        out_dim = out_shape[lead + axis]
        if dim == 1 and out_dim != 1:
            stretched.append(lead + axis)
        elif isinstance(dim, int) or (isinstance(dim, str) and dim == out_dim):
            continue
        else:
            raise GradientError(
                f"cannot tell whether axis {axis} of shape {in_shape} was broadcast to "
                f"{out_shape}: give the model static or named dims (run shape inference)"
            )
    return list(range(lead)), stretched


def unbroadcast(ctx: RuleContext, grad: str, x: str, out: str) -> str:
    """Sum ``grad`` (shaped like forward tensor ``out``) down to the shape of input ``x``."""
    in_shape, out_shape = ctx.shape(x), ctx.shape(out)
    if in_shape is None or out_shape is None:
        raise GradientError(
            f"node {ctx.node.name!r} ({ctx.node.op_type}): unknown shape of {x!r} or {out!r}, "
            f"needed to undo broadcasting; run shape inference or give static shapes"
        )
    lead, stretched = broadcast_axes(tuple(in_shape), tuple(out_shape))
    e = ctx.e
    if stretched:
        grad = e.op("ReduceSum", grad, e.ints(stretched), keepdims=1)
    if lead:
        grad = e.op("ReduceSum", grad, e.ints(lead), keepdims=0)
    return grad
