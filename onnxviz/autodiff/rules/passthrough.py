"""Ops that pass the gradient through unchanged."""

from __future__ import annotations

from onnxviz.autodiff.registry import RuleContext, register


@register("Identity", "Dropout")
def identity(ctx: RuleContext) -> list[str | None]:
    """dx = dy (Dropout is the identity at inference; its mask output gets no gradient)."""
    return [ctx.dy[0]] + [None] * (len(ctx.inputs) - 1)


@register("Cast")
def cast(ctx: RuleContext) -> list[str | None]:
    """dx = Cast(dy) back to x's type."""
    from onnx import helper

    elem = helper.np_dtype_to_tensor_dtype(ctx.dtype(ctx.inputs[0]))
    return [ctx.e.op("Cast", ctx.dy[0], to=elem)]
