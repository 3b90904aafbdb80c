"""Linear algebra: Gemm, MatMul (batched, broadcasting, 1-D operands) and simple Einsum.

Gemm's input gradients are Gemms again (the transposes become transA/transB flags).
MatMul promotes 1-D operands to matrices as numpy does (a (K,) left operand is (1, K),
a (K,) right operand is (K, 1)), multiplies by the transposed other operand, sums the
broadcast batch axes away and drops the promoted axis again.
"""

from __future__ import annotations

import re

from onnxviz.autodiff.broadcast import broadcast_axes, unbroadcast
from onnxviz.autodiff.registry import RuleContext, register
from onnxviz.autodiff.rules.elementwise import scaled
from onnxviz.errors import GradientError


@register("Gemm")
def gemm(ctx: RuleContext) -> list[str | None]:
    """Y = alpha A'B' + beta C: dA' = alpha dY B'^T, dB' = alpha A'^T dY, dC = beta dY (unbroadcast)."""
    e, dy, y = ctx.e, ctx.dy[0], ctx.outputs[0]
    a, b = ctx.inputs[:2]
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    ta, tb = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    da = db = dc = None
    if ctx.needs(0):
        if ta:  # dA = alpha B' dY^T
            da = e.op("Gemm", b, dy, alpha=alpha, transA=tb, transB=1)
        else:  # dA = alpha dY B'^T
            da = e.op("Gemm", dy, b, alpha=alpha, transB=1 - tb)
    if ctx.needs(1):
        if tb:  # dB = alpha dY^T A'
            db = e.op("Gemm", dy, a, alpha=alpha, transA=1, transB=ta)
        else:  # dB = alpha A'^T dY
            db = e.op("Gemm", a, dy, alpha=alpha, transA=1 - ta)
    if ctx.needs(2):
        c = ctx.inputs[2]
        dc = unbroadcast(ctx, scaled(ctx, dy, beta, y), c, y)
    return [da, db, dc][: len(ctx.inputs)]


def _swap_last(ctx: RuleContext, t: str, rank: int) -> str:
    """Transpose the last two axes of a rank-``rank`` tensor."""
    perm = [*range(rank - 2), rank - 1, rank - 2]
    return ctx.e.op("Transpose", t, perm=perm)


def _sum_batch(ctx: RuleContext, grad: str, shape: tuple, batch: tuple) -> str:
    """Sum a gradient with batch axes ``batch`` + shape[-2:] down to ``shape``."""
    lead, stretched = broadcast_axes(tuple(shape[:-2]), tuple(batch))
    if stretched:
        grad = ctx.e.op("ReduceSum", grad, ctx.e.ints(stretched), keepdims=1)
    if lead:
        grad = ctx.e.op("ReduceSum", grad, ctx.e.ints(lead), keepdims=0)
    return grad


@register("MatMul")
def matmul(ctx: RuleContext) -> list[str | None]:
    """Y = A B: dA = dY B^T, dB = A^T dY, batch axes summed where A or B was broadcast."""
    e, (a, b), y, dy = ctx.e, ctx.inputs, ctx.outputs[0], ctx.dy[0]
    sa, sb, sy = ctx.shape(a), ctx.shape(b), ctx.shape(y)
    if sa is None or sb is None or sy is None:
        raise GradientError(
            f"node {ctx.node.name!r} (MatMul): unknown shapes of its operands; run shape "
            f"inference or give the model static ranks"
        )
    # Promote 1-D operands to matrices, and dY accordingly.
    a2, sa2 = (e.op("Unsqueeze", a, e.ints([0])), (1, *sa)) if len(sa) == 1 else (a, tuple(sa))
    b2, sb2 = (e.op("Unsqueeze", b, e.ints([1])), (*sb, 1)) if len(sb) == 1 else (b, tuple(sb))
    lost = ([-2] if len(sa) == 1 else []) + ([-1] if len(sb) == 1 else [])
    dy2 = e.op("Unsqueeze", dy, e.ints(lost)) if lost else dy
    batch = tuple(sy[: len(sy) - (len(sa) > 1) - (len(sb) > 1)])
    da = db = None
    if ctx.needs(0):
        da = e.op("MatMul", dy2, _swap_last(ctx, b2, len(sb2)))
        da = _sum_batch(ctx, da, sa2, batch)
        if len(sa) == 1:
            da = e.op("Squeeze", da, e.ints([0]))
    if ctx.needs(1):
        db = e.op("MatMul", _swap_last(ctx, a2, len(sa2)), dy2)
        db = _sum_batch(ctx, db, sb2, batch)
        if len(sb) == 1:
            db = e.op("Squeeze", db, e.ints([1]))
    return [da, db]


_TERM = re.compile(r"^[a-zA-Z]*$")


def _einsum_terms(ctx: RuleContext) -> tuple[list[str], str]:
    """(input terms, output term) of an explicit, ellipsis-free, diagonal-free equation."""
    equation = str(ctx.attr("equation", "")).replace(" ", "")
    lhs, arrow, out = equation.partition("->")
    terms = lhs.split(",")
    simple = (
        arrow
        and all(_TERM.match(t) and len(set(t)) == len(t) for t in [*terms, out])
    )
    if simple:
        for i, term in enumerate(terms):
            elsewhere = set(out).union(*(terms[:i] + terms[i + 1:]))
            simple = simple and set(term) <= elsewhere
    if not simple:
        raise GradientError(
            f"node {ctx.node.name!r}: Einsum gradient supports explicit equations ('ij,jk->ik') "
            f"without '...', repeated indices or indices summed within one operand; got {equation!r}"
        )
    return terms, out


@register("Einsum")
def einsum(ctx: RuleContext) -> list[str | None]:
    """d einsum(..., Xi, ...)/dXi = einsum(dY and the other operands -> term of Xi)."""
    terms, out = _einsum_terms(ctx)
    grads: list[str | None] = []
    for i, term in enumerate(terms):
        if not ctx.needs(i):
            grads.append(None)
            continue
        others = [j for j in range(len(terms)) if j != i]
        equation = ",".join([out, *(terms[j] for j in others)]) + "->" + term
        grads.append(ctx.e.op("Einsum", ctx.dy[0], *(ctx.inputs[j] for j in others), equation=equation))
    return grads
