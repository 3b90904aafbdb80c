"""Activations and unary math: the ReLU family (with guided/deconvnet modes) and smooth ops.

``ctx.mode`` changes only the piecewise-linear ("ReLU family") rules. With ``dy`` the
upstream gradient, ``relu(dy) = max(dy, 0)`` and ``f'`` the op's true derivative:

============================  ==========================  ===============================  ==================
op                            plain                       guided                           deconvnet
============================  ==========================  ===============================  ==================
Relu                          dy * [x > 0]                relu(dy) * [x > 0]               relu(dy)
Clip(min, max) (ReLU6...)     dy * [min < x < max]        relu(dy) * [min < x < max]       relu(dy)
LeakyRelu(alpha)              dy * (x > 0 ? 1 : alpha)    relu(dy) * [x > 0]               relu(dy)
PRelu(slope)                  dy * (x > 0 ? 1 : slope)    relu(dy) * [x > 0]               relu(dy)
ThresholdedRelu(alpha)        dy * [x > alpha]            relu(dy) * [x > alpha]           relu(dy)
HardSigmoid(alpha, beta)      dy * alpha * [0 < y < 1]    relu(dy) * alpha * [0 < y < 1]   alpha * relu(dy)
HardSwish                     dy * f'(x)                  relu(dy) * max(f'(x), 0)         relu(dy)
Elu(alpha), Celu(alpha)       dy * f'(x)                  relu(dy) * [x > 0]               relu(dy)
Selu(alpha, gamma)            dy * f'(x)                  relu(dy) * gamma * [x > 0]       gamma * relu(dy)
============================  ==========================  ===============================  ==================

So *guided* (Springenberg et al. 2015) passes the positive part of the upstream
gradient, only where the unit was on its active (positive, linear) piece, times the
slope there; HardSwish, whose slope is negative on (-3, -1.5), passes ``relu(dy)``
times its slope clipped at 0, i.e. only where the unit increases. *deconvnet*
(Zeiler & Fergus 2014) ignores the forward input and applies the op's positive linear
piece to the upstream gradient: ``slope * relu(dy)``. PRelu's slope gradient is the
true one in every mode. Smooth ops (Sigmoid, Tanh, Gelu, ...) are the same in all modes.

Kinks follow torch: Relu'(0) = 0 (also LeakyRelu/PRelu/Elu take the negative side at 0),
Clip passes the gradient only for ``min < x < max`` (torch's hardtanh/ReLU6 convention;
``torch.clamp`` would also pass it at ``x == min`` or ``x == max``), HardSigmoid only for
``0 < y < 1``, and HardSwish uses ``x/3 + 1/2`` on (-3, 3), 0 at -3 and 1 at 3. A
Hardswish exported as ``x * HardSigmoid(x)`` (torch below opset 14) is fused back into one
HardSwish before guided and deconvnet rules run (``driver.fuse_hard_swish``).

Masks of Relu, Clip, LeakyRelu (alpha >= 0), HardSigmoid, Elu, Selu and Celu are read
from the op's output (``y > 0`` is ``x > 0``), so onnxruntime keeps fusing
Conv + activation: the input tensor of a fused activation no longer exists.
"""

from __future__ import annotations

import math

from onnxviz.autodiff.broadcast import unbroadcast
from onnxviz.autodiff.registry import RuleContext, register
from onnxviz.autodiff.rules.elementwise import as_mask, between, compared, elem_type, masked, scaled
from onnxviz.errors import GradientError


def _positive(ctx: RuleContext) -> str:
    """relu(dy), the upstream gradient of guided and deconvnet modes."""
    return ctx.e.op("Relu", ctx.dy[0])


def _upstream(ctx: RuleContext) -> str:
    """dy in plain mode, relu(dy) in guided mode."""
    return ctx.dy[0] if ctx.mode == "plain" else _positive(ctx)


def _pad(grads: list[str | None], ctx: RuleContext) -> list[str | None]:
    """One entry per node input: the given gradients, then None."""
    return grads + [None] * (len(ctx.inputs) - len(grads))


def _zero(ctx: RuleContext, like: str) -> str:
    return ctx.const_like(0.0, like)


# --- ReLU family -----------------------------------------------------------------


@register("Relu")
def relu(ctx: RuleContext) -> list[str | None]:
    """dx = dy * [y > 0]."""
    y = ctx.outputs[0]
    if ctx.mode == "deconvnet":
        return [_positive(ctx)]
    return [between(ctx, _upstream(ctx), y, 0.0, None)]


def _clip_bounds(ctx: RuleContext) -> tuple[tuple[bool, float | None], tuple[bool, float | None]]:
    """(known, value) of Clip's min and max: attributes (opset < 11) or constant inputs.

    An absent bound is known and None; a bound computed in the graph is not known.
    """
    if "min" in ctx.attrs or "max" in ctx.attrs:
        lo, hi = ctx.attr("min"), ctx.attr("max")
        return (True, None if lo is None else float(lo)), (True, None if hi is None else float(hi))

    def bound(name: str) -> tuple[bool, float | None]:
        if not name:
            return True, None
        value = ctx.value(name)
        if value is None or value.size != 1:
            return False, None
        return True, float(value.reshape(()))

    inputs = ctx.inputs + ["", ""]
    return bound(inputs[1]), bound(inputs[2])


@register("Clip")
def clip(ctx: RuleContext) -> list[str | None]:
    """dx = dy * [min < y < max] (min, max optional; no gradient for the bounds)."""
    y = ctx.outputs[0]
    if ctx.mode == "deconvnet":
        return _pad([_positive(ctx)], ctx)
    up = _upstream(ctx)
    (lo_known, lo), (hi_known, hi) = _clip_bounds(ctx)
    if lo_known and hi_known:
        return _pad([between(ctx, up, y, lo, hi)], ctx)
    # A bound computed in the graph: compare against the tensor itself.
    inputs = ctx.inputs + ["", ""]
    return _pad([compared(ctx, up, y, inputs[1] or None, inputs[2] or None)], ctx)


@register("LeakyRelu")
def leaky_relu(ctx: RuleContext) -> list[str | None]:
    """dx = dy * (x > 0 ? 1 : alpha)."""
    e, x, y = ctx.e, ctx.inputs[0], ctx.outputs[0]
    alpha = float(ctx.attr("alpha", 0.01))
    if ctx.mode == "deconvnet":
        return [_positive(ctx)]
    # For alpha >= 0, y > 0 exactly where x > 0; a negative alpha needs the input.
    probe = y if alpha >= 0 else x
    positive = e.op("Greater", probe, _zero(ctx, y))
    if ctx.mode == "guided":
        return [masked(ctx, _positive(ctx), positive, y)]
    slope = e.op("Add", e.op("Mul", as_mask(ctx, positive, y), ctx.const_like(1.0 - alpha, y)),
                 ctx.const_like(alpha, y))
    return [e.op("Mul", ctx.dy[0], slope)]


@register("PRelu")
def prelu(ctx: RuleContext) -> list[str | None]:
    """dx = dy * (x > 0 ? 1 : slope); dslope = sum of dy * min(x, 0) over broadcast axes."""
    e, (x, slope), y, dy = ctx.e, ctx.inputs, ctx.outputs[0], ctx.dy[0]
    zero = _zero(ctx, x)
    dx = None
    if ctx.needs(0):
        if ctx.mode == "deconvnet":
            dx = _positive(ctx)
        else:
            positive = e.op("Greater", x, zero)
            if ctx.mode == "guided":
                dx = masked(ctx, _positive(ctx), positive, x)
            else:
                # slope + [x > 0] * (1 - slope), broadcast to x's shape by the Mul
                one_minus = e.op("Sub", ctx.const_like(1.0, x), slope)
                dx = e.op("Mul", dy, e.op("Add", slope, e.op("Mul", as_mask(ctx, positive, x), one_minus)))
    dslope = None
    if ctx.needs(1):
        dslope = unbroadcast(ctx, e.op("Mul", dy, e.op("Min", x, zero)), slope, y)
    return [dx, dslope]


@register("ThresholdedRelu")
def thresholded_relu(ctx: RuleContext) -> list[str | None]:
    """dx = dy * [x > alpha]."""
    x, y = ctx.inputs[0], ctx.outputs[0]
    if ctx.mode == "deconvnet":
        return [_positive(ctx)]
    alpha = float(ctx.attr("alpha", 1.0))
    return [masked(ctx, _upstream(ctx), ctx.e.op("Greater", x, ctx.const_like(alpha, x)), y)]


@register("HardSigmoid")
def hard_sigmoid(ctx: RuleContext) -> list[str | None]:
    """dx = dy * alpha * [0 < y < 1]."""
    e, y = ctx.e, ctx.outputs[0]
    alpha = float(ctx.attr("alpha", 0.2))
    if ctx.mode == "deconvnet":
        return [scaled(ctx, _positive(ctx), alpha, y)]
    inside = e.op("And", e.op("Greater", y, _zero(ctx, y)), e.op("Less", y, ctx.const_like(1.0, y)))
    return [scaled(ctx, masked(ctx, _upstream(ctx), inside, y), alpha, y)]


@register("HardSwish")
def hard_swish(ctx: RuleContext) -> list[str | None]:
    """y = x * clip(x/6 + 1/2, 0, 1); dx = dy * (x <= -3 ? 0 : x < 3 ? x/3 + 1/2 : 1), as torch."""
    e, x = ctx.e, ctx.inputs[0]
    if ctx.mode == "deconvnet":
        return [_positive(ctx)]
    three = ctx.const_like(3.0, x)
    ramp = e.op("Add", e.op("Mul", x, ctx.const_like(1.0 / 3.0, x)), ctx.const_like(0.5, x))
    inside = e.op("Less", e.op("Abs", x), three)
    slope = e.op("Add", masked(ctx, ramp, inside, x), as_mask(ctx, e.op("GreaterOrEqual", x, three), x))
    if ctx.mode == "guided":  # the slope clipped at 0: the unit decreases on (-3, -1.5)
        return [e.op("Mul", _positive(ctx), e.op("Relu", slope))]
    return [e.op("Mul", ctx.dy[0], slope)]


def _exp_linear(ctx: RuleContext, pos: float, neg_scale: float, neg_div: float = 1.0) -> list[str | None]:
    """Elu/Selu/Celu from the output: f' = pos for x > 0, else (y / neg_div) + neg_scale."""
    e, y = ctx.e, ctx.outputs[0]
    if ctx.mode == "deconvnet":
        return [scaled(ctx, _positive(ctx), pos, y)]
    zero = _zero(ctx, y)
    if ctx.mode == "guided":
        return [scaled(ctx, masked(ctx, _positive(ctx), e.op("Greater", y, zero), y), pos, y)]
    negative_part = scaled(ctx, e.op("Min", y, zero), 1.0 / neg_div, y)
    slope = e.op("Add", negative_part, ctx.const_like(neg_scale, y))
    if pos != neg_scale:  # on x > 0, min(y, 0) = 0, so add (pos - neg_scale) there
        step = scaled(ctx, as_mask(ctx, e.op("Greater", y, zero), y), pos - neg_scale, y)
        slope = e.op("Add", slope, step)
    return [e.op("Mul", ctx.dy[0], slope)]


@register("Elu")
def elu(ctx: RuleContext) -> list[str | None]:
    """dx = dy * (x > 0 ? 1 : y + alpha)."""
    alpha = float(ctx.attr("alpha", 1.0))
    return _exp_linear(ctx, 1.0, alpha)


@register("Selu")
def selu(ctx: RuleContext) -> list[str | None]:
    """dx = dy * (x > 0 ? gamma : y + gamma * alpha)."""
    alpha = float(ctx.attr("alpha", 1.67326319217681884765625))
    gamma = float(ctx.attr("gamma", 1.05070102214813232421875))
    return _exp_linear(ctx, gamma, gamma * alpha)


@register("Celu")
def celu(ctx: RuleContext) -> list[str | None]:
    """dx = dy * (x > 0 ? 1 : y / alpha + 1)."""
    alpha = float(ctx.attr("alpha", 1.0))
    return _exp_linear(ctx, 1.0, 1.0, alpha)


# --- smooth activations (same in every mode) ----------------------------------------


@register("Sigmoid")
def sigmoid(ctx: RuleContext) -> list[str | None]:
    """dx = dy * y * (1 - y)."""
    e, y = ctx.e, ctx.outputs[0]
    return [e.op("Mul", ctx.dy[0], e.op("Mul", y, e.op("Sub", ctx.const_like(1.0, y), y)))]


@register("Tanh")
def tanh(ctx: RuleContext) -> list[str | None]:
    """dx = dy * (1 - y^2)."""
    e, y = ctx.e, ctx.outputs[0]
    return [e.op("Mul", ctx.dy[0], e.op("Sub", ctx.const_like(1.0, y), e.op("Mul", y, y)))]


@register("Softplus")
def softplus(ctx: RuleContext) -> list[str | None]:
    """dx = dy * sigmoid(x)."""
    return [ctx.e.op("Mul", ctx.dy[0], ctx.e.op("Sigmoid", ctx.inputs[0]))]


@register("Softsign")
def softsign(ctx: RuleContext) -> list[str | None]:
    """dx = dy / (1 + |x|)^2."""
    e, x = ctx.e, ctx.inputs[0]
    denom = e.op("Add", e.op("Abs", x), ctx.const_like(1.0, x))
    return [e.op("Div", ctx.dy[0], e.op("Mul", denom, denom))]


@register("Erf")
def erf(ctx: RuleContext) -> list[str | None]:
    """dx = dy * 2/sqrt(pi) * exp(-x^2)."""
    e, x = ctx.e, ctx.inputs[0]
    gauss = e.op("Exp", e.op("Neg", e.op("Mul", x, x)))
    return [e.op("Mul", ctx.dy[0], scaled(ctx, gauss, 2.0 / math.sqrt(math.pi), x))]


@register("Gelu")
def gelu(ctx: RuleContext) -> list[str | None]:
    """none: dx = dy * (Phi(x) + x phi(x)); tanh: derivative of 0.5 x (1 + tanh(u(x)))."""
    e, x = ctx.e, ctx.inputs[0]

    def c(value: float) -> str:
        return ctx.const_like(value, x)

    x2 = e.op("Mul", x, x)
    approximate = ctx.attr("approximate", "none")
    if approximate == "tanh":
        k, a = math.sqrt(2.0 / math.pi), 0.044715
        u = e.op("Mul", e.op("Add", x, e.op("Mul", c(a), e.op("Mul", x2, x))), c(k))
        t = e.op("Tanh", u)
        du = e.op("Add", c(k), e.op("Mul", x2, c(3 * a * k)))  # u'(x)
        sech2 = e.op("Sub", c(1.0), e.op("Mul", t, t))
        slope = e.op("Add", e.op("Mul", e.op("Add", t, c(1.0)), c(0.5)),
                     e.op("Mul", e.op("Mul", x, c(0.5)), e.op("Mul", sech2, du)))
    elif approximate == "none":
        # Phi(x) = y / x would divide by zero at x = 0; recompute it with Erf
        cdf = e.op("Mul", e.op("Add", e.op("Erf", e.op("Mul", x, c(1 / math.sqrt(2)))), c(1.0)), c(0.5))
        pdf = e.op("Mul", e.op("Exp", e.op("Mul", x2, c(-0.5))), c(1 / math.sqrt(2 * math.pi)))
        slope = e.op("Add", cdf, e.op("Mul", x, pdf))
    else:
        raise GradientError(f"node {ctx.node.name!r}: Gelu approximate={approximate!r} is not "
                            f"'none' or 'tanh'; fix the model")
    return [e.op("Mul", ctx.dy[0], slope)]


@register("Mish")
def mish(ctx: RuleContext) -> list[str | None]:
    """y = x tanh(softplus(x)); dx = dy * (t + x sigmoid(x) (1 - t^2)), t = tanh(softplus(x))."""
    e, x = ctx.e, ctx.inputs[0]
    t = e.op("Tanh", e.op("Softplus", x))
    sech2 = e.op("Sub", ctx.const_like(1.0, x), e.op("Mul", t, t))
    slope = e.op("Add", t, e.op("Mul", e.op("Mul", x, e.op("Sigmoid", x)), sech2))
    return [e.op("Mul", ctx.dy[0], slope)]


# --- unary math ----------------------------------------------------------------------


@register("Exp")
def exp(ctx: RuleContext) -> list[str | None]:
    """dx = dy * y."""
    return [ctx.e.op("Mul", ctx.dy[0], ctx.outputs[0])]


@register("Log")
def log(ctx: RuleContext) -> list[str | None]:
    """dx = dy / x."""
    return [ctx.e.op("Div", ctx.dy[0], ctx.inputs[0])]


@register("Sqrt")
def sqrt(ctx: RuleContext) -> list[str | None]:
    """dx = dy / (2 y)."""
    y = ctx.outputs[0]
    return [ctx.e.op("Div", scaled(ctx, ctx.dy[0], 0.5, y), y)]


@register("Reciprocal")
def reciprocal(ctx: RuleContext) -> list[str | None]:
    """dx = -dy * y^2."""
    e, y = ctx.e, ctx.outputs[0]
    return [e.op("Neg", e.op("Mul", ctx.dy[0], e.op("Mul", y, y)))]


@register("Neg")
def neg(ctx: RuleContext) -> list[str | None]:
    """dx = -dy."""
    return [ctx.e.op("Neg", ctx.dy[0])]


@register("Abs")
def abs_(ctx: RuleContext) -> list[str | None]:
    """dx = dy * sign(x) (0 at x = 0, as torch)."""
    return [ctx.e.op("Mul", ctx.dy[0], ctx.e.op("Sign", ctx.inputs[0]))]


@register("Pow")
def pow_(ctx: RuleContext) -> list[str | None]:
    """d x^p = (dy * p * x^(p - 1), dy * y * log(x)); the exponent's gradient needs x > 0."""
    e, (x, p), y, dy = ctx.e, ctx.inputs, ctx.outputs[0], ctx.dy[0]
    dx = dp = None
    if ctx.needs(0):
        value = ctx.value(p)
        if value is not None and value.size == 1:
            k = float(value.reshape(()))
            if k == 1:
                dx = dy
            elif k == 2:
                dx = e.op("Mul", dy, scaled(ctx, x, 2.0, x))
            else:
                power = e.op("Pow", x, ctx.const_like(k - 1, x))
                dx = e.op("Mul", dy, scaled(ctx, power, k, x))
        else:
            pf = p if ctx.dtype(p) == ctx.dtype(x) else e.op("Cast", p, to=elem_type(ctx, x))
            power = e.op("Pow", x, e.op("Sub", pf, ctx.const_like(1.0, x)))
            dx = e.op("Mul", dy, e.op("Mul", pf, power))
        dx = unbroadcast(ctx, dx, x, y)
    if ctx.needs(1):
        dp = unbroadcast(ctx, e.op("Mul", dy, e.op("Mul", y, e.op("Log", x))), p, y)
    return [dx, dp]
