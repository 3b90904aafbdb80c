"""Softmax and LogSoftmax over one axis (opset >= 13) or the flattened trailing axes (before 13).

Before opset 13 both ops coerced the input to 2-D at ``axis`` (default 1) and normalised
over everything from ``axis`` on, so the backward sums over axes ``axis..rank-1``; from
opset 13 they normalise over the single ``axis`` (default -1).
"""

from __future__ import annotations

from onnxviz.autodiff.registry import RuleContext, register
from onnxviz.errors import GradientError


def softmax_axes(ctx: RuleContext) -> list[int]:
    """The axes a Softmax/LogSoftmax node normalises over."""
    if ctx.opset >= 13:
        return [int(ctx.attr("axis", -1))]
    x = ctx.inputs[0]
    rank = ctx.rank(x)
    if rank is None:
        raise GradientError(
            f"node {ctx.node.name!r} ({ctx.node.op_type}, opset {ctx.opset}): unknown rank of "
            f"{x!r}, needed for the pre-13 flattening semantics; re-export at opset >= 13"
        )
    return list(range(int(ctx.attr("axis", 1)) % rank, rank))


@register("Softmax")
def softmax(ctx: RuleContext) -> list[str | None]:
    """dx = y * (dy - sum(dy * y))."""
    e, y, dy = ctx.e, ctx.outputs[0], ctx.dy[0]
    dot = e.op("ReduceSum", e.op("Mul", dy, y), e.ints(softmax_axes(ctx)), keepdims=1)
    return [e.op("Mul", y, e.op("Sub", dy, dot))]


@register("LogSoftmax")
def log_softmax(ctx: RuleContext) -> list[str | None]:
    """dx = dy - exp(y) * sum(dy)."""
    e, y, dy = ctx.e, ctx.outputs[0], ctx.dy[0]
    total = e.op("ReduceSum", dy, e.ints(softmax_axes(ctx)), keepdims=1)
    return [e.op("Sub", dy, e.op("Mul", e.op("Exp", y), total))]
