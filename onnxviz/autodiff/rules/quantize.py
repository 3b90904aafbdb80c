"""QuantizeLinear / DequantizeLinear (QDQ int8 models): the straight-through estimator.

Quantizing rounds, so its derivative is zero almost everywhere. As in quantization-aware
training (torch's ``fake_quantize_per_tensor_affine``), the gradient passes straight
through where the value is representable and stops where it saturates::

    QuantizeLinear    q = sat(round(x / s) + zp)   dx = dq / s * [qmin <= round(x / s) + zp <= qmax]
    DequantizeLinear  y = (q - zp) * s             dq = dy * s

so a Q -> DQ pair with one scale gives ``dx = dy * [in range]``, torch's fake-quantize
backward. The gradient of the integer tensor ``q`` is carried in float (``dy``'s type).
Per-axis scales broadcast along ``axis``; blocked quantization (``block_size``) and float8
targets have no rule.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from onnxviz.autodiff.registry import RuleContext, register
from onnxviz.autodiff.rules.elementwise import between, compared
from onnxviz.errors import GradientError

#: Representable range of each integer type QuantizeLinear may produce.
_RANGES = {
    TensorProto.UINT8: (0, 255), TensorProto.INT8: (-128, 127),
    TensorProto.UINT16: (0, 65535), TensorProto.INT16: (-32768, 32767),
    TensorProto.UINT4: (0, 15), TensorProto.INT4: (-8, 7),
}


def _along_axis(ctx: RuleContext, name: str, rank: int) -> str:
    """A scale or zero point (scalar, or 1-D along ``axis``) shaped to broadcast at ``rank``."""
    if ctx.attr("block_size", 0):
        raise GradientError(
            f"node {ctx.node.name!r} ({ctx.node.op_type}): blocked quantization (block_size) has "
            f"no gradient rule; quantize per tensor or per channel"
        )
    if not ctx.rank(name):
        return name
    shape = [1] * rank
    shape[ctx.attr("axis", 1) % rank] = -1
    return ctx.e.op("Reshape", name, ctx.e.ints(shape))


@register("DequantizeLinear")
def dequantize_linear(ctx: RuleContext) -> list[str | None]:
    """dq = dy * scale (in dy's float type)."""
    scale = _along_axis(ctx, ctx.inputs[1], ctx.rank(ctx.inputs[0]) or 0)
    return [ctx.e.op("Mul", ctx.dy[0], scale)] + [None] * (len(ctx.inputs) - 1)


@register("QuantizeLinear")
def quantize_linear(ctx: RuleContext) -> list[str | None]:
    """dx = dq / scale where round(x / scale) + zero_point is representable, else 0."""
    e, x = ctx.e, ctx.inputs[0]
    elem = ctx.dtypes.get(ctx.outputs[0], TensorProto.UINT8)
    if elem not in _RANGES:
        raise GradientError(
            f"node {ctx.node.name!r} (QuantizeLinear) produces {TensorProto.DataType.Name(elem)}; "
            f"the straight-through gradient is defined for integer types only"
        )
    lo, hi = _RANGES[elem]
    rank = ctx.rank(x) or 0
    scale = _along_axis(ctx, ctx.inputs[1], rank)
    level = e.op("Round", e.op("Div", x, scale))
    if len(ctx.inputs) > 2 and ctx.inputs[2]:
        zero = _along_axis(ctx, ctx.inputs[2], rank)
        level = e.op("Add", level, e.op("Cast", zero, to=helper.np_dtype_to_tensor_dtype(ctx.dtype(x))))
    grad = e.op("Div", ctx.dy[0], scale)
    # level is integer-valued: [lo <= level <= hi] is the open interval widened by a half
    if ctx.dtype(x) == np.float32:
        grad = between(ctx, grad, level, lo - 0.5, hi + 0.5)
    else:
        grad = compared(ctx, grad, level, ctx.const_like(lo - 0.5, x), ctx.const_like(hi + 0.5, x))
    return [grad] + [None] * (len(ctx.inputs) - 1)
