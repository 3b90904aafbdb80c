"""Reductions: ReduceSum, ReduceMean, ReduceMax/Min, ReduceL1/L2, ReduceSumSquare, ReduceLogSumExp.

Axes come from the attribute (ReduceSum before opset 13, the others before 18) or the
second input; none (or empty) means every axis, unless ``noop_with_empty_axes`` makes
the op the identity. The backward emits only ReduceSum (axes input), Unsqueeze, Expand
and elementwise ops, never ReduceMean/ReduceMax, whose axes form changed at opset 18.

The upstream gradient is first given the kept (size-1) axes back, so it broadcasts
against the input; ReduceMax/ReduceMin split it equally among tied maxima, like
``torch.amax``/``torch.amin``.
"""

from __future__ import annotations

import math

from onnxviz.autodiff.registry import RuleContext, register
from onnxviz.autodiff.rules.elementwise import as_mask, elem_type, scaled

#: Static axes (ints), a dynamic axes tensor (its name), or None for every axis.
Axes = list[int] | str | None


def reduce_axes(ctx: RuleContext) -> Axes:
    """The reduced axes of a Reduce* node, from its axes input or attribute."""
    inputs = ctx.inputs
    if len(inputs) > 1 and inputs[1]:
        value = ctx.value(inputs[1])
        if value is None:
            return inputs[1]
        axes = [int(a) for a in value.reshape(-1)]
    else:
        axes = list(ctx.attr("axes", []) or [])
    return axes or None


def _is_noop(ctx: RuleContext, axes: Axes) -> bool:
    return axes is None and bool(ctx.attr("noop_with_empty_axes", 0))


def _axes_input(ctx: RuleContext, axes: Axes) -> str | None:
    """The axes input of an emitted ReduceSum/Unsqueeze (None: every axis)."""
    return ctx.e.ints(axes) if isinstance(axes, list) else axes


def keep_dims(ctx: RuleContext, grad: str, axes: Axes) -> str:
    """``grad`` (shaped like the reduction's output) with the reduced axes back as size 1."""
    if ctx.attr("keepdims", 1) or axes is None:  # a scalar broadcasts as it is
        return grad
    # Unsqueeze's negative axes count from the end of its output, which has x's rank.
    return ctx.e.op("Unsqueeze", grad, _axes_input(ctx, axes))


def reduced_count(ctx: RuleContext, x: str, axes: Axes, y: str) -> float | str:
    """Number of elements summed into each output element: a number, or a tensor name."""
    shape = ctx.shape(x)
    if shape is not None and not isinstance(axes, str):
        picked = range(len(shape)) if axes is None else [a % len(shape) for a in axes]
        dims = [shape[a] for a in picked]
        if all(isinstance(d, int) for d in dims):
            return float(math.prod(dims))
    e = ctx.e
    to = elem_type(ctx, x)
    return e.op("Div", e.op("Cast", e.op("Size", x), to=to), e.op("Cast", e.op("Size", y), to=to))


def _spread(ctx: RuleContext, grad: str, x: str) -> str:
    """Broadcast a kept-dims gradient to x's (possibly dynamic) shape."""
    return ctx.e.op("Expand", grad, ctx.e.op("Shape", x))


def _pad(ctx: RuleContext, grad: str) -> list[str | None]:
    return [grad] + [None] * (len(ctx.inputs) - 1)


@register("ReduceSum")
def reduce_sum(ctx: RuleContext) -> list[str | None]:
    """dx = expand(dy)."""
    x, axes = ctx.inputs[0], reduce_axes(ctx)
    if _is_noop(ctx, axes):
        return _pad(ctx, ctx.dy[0])
    return _pad(ctx, _spread(ctx, keep_dims(ctx, ctx.dy[0], axes), x))


@register("ReduceMean")
def reduce_mean(ctx: RuleContext) -> list[str | None]:
    """dx = expand(dy) / n, n = number of reduced elements."""
    e, x, y, axes = ctx.e, ctx.inputs[0], ctx.outputs[0], reduce_axes(ctx)
    if _is_noop(ctx, axes):
        return _pad(ctx, ctx.dy[0])
    n = reduced_count(ctx, x, axes, y)
    grad = scaled(ctx, ctx.dy[0], 1.0 / n, x) if isinstance(n, float) else e.op("Div", ctx.dy[0], n)
    return _pad(ctx, _spread(ctx, keep_dims(ctx, grad, axes), x))


@register("ReduceMax", "ReduceMin")
def reduce_extremum(ctx: RuleContext) -> list[str | None]:
    """dx = dy * [x == y] / #{ties} (ties share the gradient equally, as torch.amax)."""
    e, x, y, axes = ctx.e, ctx.inputs[0], ctx.outputs[0], reduce_axes(ctx)
    if _is_noop(ctx, axes):
        return _pad(ctx, ctx.dy[0])
    hit = as_mask(ctx, e.op("Equal", x, keep_dims(ctx, y, axes)), x)
    count = e.op("ReduceSum", hit, _axes_input(ctx, axes), keepdims=1)
    share = e.op("Div", keep_dims(ctx, ctx.dy[0], axes), count)
    return _pad(ctx, e.op("Mul", hit, share))


@register("ReduceSumSquare")
def reduce_sum_square(ctx: RuleContext) -> list[str | None]:
    """dx = 2 x dy."""
    e, x, axes = ctx.e, ctx.inputs[0], reduce_axes(ctx)
    if _is_noop(ctx, axes):
        return _pad(ctx, e.op("Mul", ctx.dy[0], scaled(ctx, x, 2.0, x)))
    return _pad(ctx, e.op("Mul", scaled(ctx, x, 2.0, x), keep_dims(ctx, ctx.dy[0], axes)))


@register("ReduceL1")
def reduce_l1(ctx: RuleContext) -> list[str | None]:
    """dx = sign(x) dy."""
    e, x, axes = ctx.e, ctx.inputs[0], reduce_axes(ctx)
    dy = ctx.dy[0] if _is_noop(ctx, axes) else keep_dims(ctx, ctx.dy[0], axes)
    return _pad(ctx, e.op("Mul", e.op("Sign", x), dy))


@register("ReduceL2")
def reduce_l2(ctx: RuleContext) -> list[str | None]:
    """dx = x dy / y (undefined where the whole slice is 0)."""
    e, x, y, axes = ctx.e, ctx.inputs[0], ctx.outputs[0], reduce_axes(ctx)
    if _is_noop(ctx, axes):
        return _pad(ctx, e.op("Mul", ctx.dy[0], e.op("Sign", x)))
    ratio = e.op("Div", keep_dims(ctx, ctx.dy[0], axes), keep_dims(ctx, y, axes))
    return _pad(ctx, e.op("Mul", x, ratio))


@register("ReduceLogSumExp")
def reduce_log_sum_exp(ctx: RuleContext) -> list[str | None]:
    """dx = dy * exp(x - y) (the softmax of x over the reduced axes)."""
    e, x, y, axes = ctx.e, ctx.inputs[0], ctx.outputs[0], reduce_axes(ctx)
    if _is_noop(ctx, axes):
        return _pad(ctx, ctx.dy[0])
    weights = e.op("Exp", e.op("Sub", x, keep_dims(ctx, y, axes)))
    return _pad(ctx, e.op("Mul", weights, keep_dims(ctx, ctx.dy[0], axes)))
