"""Normalisation layers: BatchNormalization (inference), InstanceNormalization,
LayerNormalization and LRN.

BatchNormalization is an affine map per channel at inference; its running mean and
variance are constants (no gradient). Instance and layer normalisation recompute the
statistics of their input in the backward graph (ReduceSum only) and use the standard
formula ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sigma`` with ``g = dy * scale``.

LRN's cross-channel window sum is an AveragePool over the channel axis after
Unsqueeze(1) (kernel ``size`` along channels, 1 elsewhere, zero padding counted), exact
and fast on every execution provider; its transpose is the same pool with the padding
mirrored, which matters only for even ``size``.
"""

from __future__ import annotations

from onnxviz.autodiff.broadcast import unbroadcast
from onnxviz.autodiff.registry import RuleContext, register
from onnxviz.autodiff.rules.reduce import reduced_count
from onnxviz.errors import GradientError


def _rank(ctx: RuleContext, x: str) -> int:
    rank = ctx.rank(x)
    if rank is None:
        raise GradientError(
            f"node {ctx.node.name!r} ({ctx.node.op_type}): unknown rank of {x!r}; "
            f"run shape inference or give the model input a static rank"
        )
    return rank


def _per_channel(ctx: RuleContext, v: str, rank: int) -> str:
    """A (C,) tensor reshaped to (C, 1, ..., 1) so it broadcasts along axis 1 of a rank-``rank`` tensor."""
    if rank <= 2:
        return v
    return ctx.e.op("Unsqueeze", v, ctx.e.ints(range(1, rank - 1)))


@register("BatchNormalization")
def batch_norm(ctx: RuleContext) -> list[str | None]:
    """y = scale xhat + B, xhat = (x - mean) / sigma: dx = dy scale / sigma, dscale = sum(dy xhat), dB = sum(dy)."""
    if ctx.attr("training_mode", 0) or any(ctx.outputs[1:]) or ctx.attr("spatial", 1) == 0:
        raise GradientError(
            f"node {ctx.node.name!r}: BatchNormalization in training mode (or spatial=0) has no "
            f"gradient rule; export the model in eval mode"
        )
    e, (x, scale, _bias, mean, var) = ctx.e, ctx.inputs[:5]
    rank = _rank(ctx, x)
    eps = float(ctx.attr("epsilon", 1e-5))
    dy = ctx.dy[0]
    inv_std = e.op("Reciprocal", e.op("Sqrt", e.op("Add", var, ctx.const_like(eps, x))))
    others = ctx.e.ints([0, *range(2, rank)])
    dx = dscale = dbias = None
    if ctx.needs(0):
        dx = e.op("Mul", dy, _per_channel(ctx, e.op("Mul", scale, inv_std), rank))
    if ctx.needs(1):
        centred = e.op("Sub", x, _per_channel(ctx, mean, rank))
        dscale = e.op("Mul", e.op("ReduceSum", e.op("Mul", dy, centred), others, keepdims=0), inv_std)
    if ctx.needs(2):
        dbias = e.op("ReduceSum", dy, others, keepdims=0)
    return [dx, dscale, dbias, None, None]


def _standardise(ctx: RuleContext, x: str, axes: list[int], eps: float) -> tuple[str, str, str]:
    """Recompute (xhat, 1/sigma, 1/n) of x over ``axes`` (biased variance, as the ops)."""
    e = ctx.e
    axes_in = e.ints(axes)
    total = e.op("ReduceSum", x, axes_in, keepdims=1)
    n = reduced_count(ctx, x, axes, total)
    inv_n = ctx.const_like(1.0 / n, x) if isinstance(n, float) else e.op("Reciprocal", n)
    centred = e.op("Sub", x, e.op("Mul", total, inv_n))
    var = e.op("Mul", e.op("ReduceSum", e.op("Mul", centred, centred), axes_in, keepdims=1), inv_n)
    inv_std = e.op("Reciprocal", e.op("Sqrt", e.op("Add", var, ctx.const_like(eps, x))))
    return e.op("Mul", centred, inv_std), inv_std, inv_n


def _standardise_backward(ctx: RuleContext, g: str, xhat: str, inv_std: str, inv_n: str,
                          axes: list[int]) -> str:
    """dx = (g - mean(g) - xhat * mean(g * xhat)) / sigma, means over ``axes``."""
    e = ctx.e
    axes_in = e.ints(axes)
    mean_g = e.op("Mul", e.op("ReduceSum", g, axes_in, keepdims=1), inv_n)
    mean_gx = e.op("Mul", e.op("ReduceSum", e.op("Mul", g, xhat), axes_in, keepdims=1), inv_n)
    inner = e.op("Sub", e.op("Sub", g, mean_g), e.op("Mul", xhat, mean_gx))
    return e.op("Mul", inner, inv_std)


@register("InstanceNormalization")
def instance_norm(ctx: RuleContext) -> list[str | None]:
    """y = scale * xhat + B, statistics per sample and channel over the spatial axes."""
    e, (x, scale, _bias), dy = ctx.e, ctx.inputs, ctx.dy[0]
    rank = _rank(ctx, x)
    spatial = list(range(2, rank))
    xhat, inv_std, inv_n = _standardise(ctx, x, spatial, float(ctx.attr("epsilon", 1e-5)))
    others = e.ints([0, *spatial])
    dx = dscale = dbias = None
    if ctx.needs(0):
        g = e.op("Mul", dy, _per_channel(ctx, scale, rank))
        dx = _standardise_backward(ctx, g, xhat, inv_std, inv_n, spatial)
    if ctx.needs(1):
        dscale = e.op("ReduceSum", e.op("Mul", dy, xhat), others, keepdims=0)
    if ctx.needs(2):
        dbias = e.op("ReduceSum", dy, others, keepdims=0)
    return [dx, dscale, dbias]


@register("LayerNormalization")
def layer_norm(ctx: RuleContext) -> list[str | None]:
    """y = scale * xhat + B, statistics over axes axis..rank-1."""
    if any(g is not None for g in ctx.dy[1:]):
        raise GradientError(
            f"node {ctx.node.name!r}: gradients through LayerNormalization's Mean/InvStdDev "
            f"outputs are not supported; differentiate a tensor that does not use them"
        )
    e, y, dy = ctx.e, ctx.outputs[0], ctx.dy[0]
    x, scale = ctx.inputs[:2]
    bias = ctx.inputs[2] if len(ctx.inputs) > 2 else ""
    rank = _rank(ctx, x)
    axes = list(range(int(ctx.attr("axis", -1)) % rank, rank))
    xhat, inv_std, inv_n = _standardise(ctx, x, axes, float(ctx.attr("epsilon", 1e-5)))
    dx = dscale = dbias = None
    if ctx.needs(0):
        dx = _standardise_backward(ctx, e.op("Mul", dy, scale), xhat, inv_std, inv_n, axes)
    if ctx.needs(1):
        dscale = unbroadcast(ctx, e.op("Mul", dy, xhat), scale, y)
    if bias and ctx.needs(2):
        dbias = unbroadcast(ctx, dy, bias, y)
    return [dx, dscale, dbias][: len(ctx.inputs)]


def _channel_window_mean(ctx: RuleContext, t: str, rank: int, size: int, before: int, after: int) -> str:
    """mean over channels c - before .. c + after (zeros outside), as an AveragePool."""
    e = ctx.e
    spatial = rank - 2
    pooled = e.op(
        "AveragePool",
        e.op("Unsqueeze", t, e.ints([1])),
        kernel_shape=[size] + [1] * spatial,
        pads=[before] + [0] * spatial + [after] + [0] * spatial,
        count_include_pad=1,
    )
    return e.op("Squeeze", pooled, e.ints([1]))


@register("LRN")
def lrn(ctx: RuleContext) -> list[str | None]:
    """y = x s^-beta, s = bias + alpha * window_mean(x^2):
    dx = dy s^-beta - 2 alpha beta x * window_mean^T(dy y / s)."""
    e, x, y, dy = ctx.e, ctx.inputs[0], ctx.outputs[0], ctx.dy[0]
    rank = _rank(ctx, x)
    if rank < 3 or rank > 4:
        raise GradientError(
            f"node {ctx.node.name!r}: LRN gradient supports 3-D and 4-D inputs, not rank {rank}"
        )
    size = int(ctx.attr("size"))
    alpha = float(ctx.attr("alpha", 1e-4))
    beta = float(ctx.attr("beta", 0.75))
    bias = float(ctx.attr("bias", 1.0))
    before = (size - 1) // 2  # the forward window is c - before .. c + after
    after = size - 1 - before
    square_mean = _channel_window_mean(ctx, e.op("Mul", x, x), rank, size, before, after)
    s = e.op("Add", e.op("Mul", square_mean, ctx.const_like(alpha, x)), ctx.const_like(bias, x))
    direct = e.op("Mul", dy, e.op("Pow", s, ctx.const_like(-beta, x)))
    back = _channel_window_mean(ctx, e.op("Div", e.op("Mul", dy, y), s), rank, size, after, before)
    cross = e.op("Mul", e.op("Mul", x, back), ctx.const_like(2.0 * alpha * beta, x))
    return [e.op("Sub", direct, cross)]
