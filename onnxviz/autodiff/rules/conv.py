"""Convolutions: Conv and ConvTranspose, any number of spatial axes, groups, strides,
dilations, explicit or automatic pads.

Per spatial axis: input length H, kernel k, stride s, dilation d, extent k_eff = d(k-1)+1,
pads (pb, pe) and output length O = floor((H + pb + pe - k_eff) / s) + 1. A transposed
convolution reproduces an input of length H from O when ``pads = (pb, max(0, -R))`` and
``output_padding = max(0, R)`` with R = H + pb - s(O-1) - k_eff, the positions after the last
window. The pads are always explicit: onnxruntime derives symmetric pads from an
``output_shape`` attribute, which is wrong for asymmetric pads and strides with a remainder.

Speed on onnxruntime CPU: a stride-1 input gradient is a plain Conv with the flipped kernel
(in/out channels swapped per group; precomputed for constant weights), faster than
ConvTranspose, depthwise layers above all. A strided depthwise gradient spreads dY onto the
input grid (zeros between) and runs that stride-1 Conv: 3-5x faster than the depthwise
ConvTranspose. Dense strided layers keep ConvTranspose (the zero-filled Conv does s^2 times
the work there). The weight gradient is a Conv with batch and channels swapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxviz.autodiff.registry import RuleContext, register
from onnxviz.errors import GradientError

INT64_MIN = np.iinfo(np.int64).min


@dataclass(frozen=True)
class Window:
    """Geometry of a convolution or pooling window along each spatial axis."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begin: tuple[int, ...]
    end: tuple[int, ...]

    @property
    def extent(self) -> tuple[int, ...]:
        """d(k-1)+1: the span of one window."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilations))

    def out_len(self, spatial: tuple[int, ...], ceil_mode: bool = False) -> tuple[int, ...]:
        """Output lengths as onnxruntime computes them (ceil mode drops a last window that
        would start in the end padding, as torch does; onnx shape inference does not)."""
        out = []
        for h, s, pb, pe, ke in zip(spatial, self.strides, self.begin, self.end, self.extent):
            num = h + pb + pe - ke
            o = (-(-num // s) if ceil_mode else num // s) + 1
            if ceil_mode and (o - 1) * s >= h + pb:
                o -= 1
            out.append(o)
        return tuple(out)

    def tail(self, spatial: tuple[int, ...], out: tuple[int, ...]) -> tuple[int, ...]:
        """R = H + pb - s(O-1) - k_eff per axis: input positions after the last window
        (negative when the last window reaches into the end padding)."""
        return tuple(
            h + pb - s * (o - 1) - ke
            for h, o, s, pb, ke in zip(spatial, out, self.strides, self.begin, self.extent)
        )


def static_spatial(ctx: RuleContext, name: str, why: str) -> tuple[int, ...]:
    """The static spatial dims (all but the first two) of ``name``, or a GradientError."""
    shape = ctx.shape(name)
    if shape is None or not all(isinstance(d, int) for d in shape[2:]):
        raise GradientError(
            f"node {ctx.node.name!r} ({ctx.node.op_type}): the spatial dims of {name!r} are "
            f"not static ({shape}); they are needed {why}. onnxviz.Model fixes a free image "
            f"size to each batch's own, so here they depend on more than the image size: export "
            f"the model with static shapes"
        )
    return tuple(shape[2:])


def window(ctx: RuleContext, kernel: tuple[int, ...], x: str) -> Window:
    """Resolve strides, dilations and pads (auto_pad included) of a Conv or pooling node."""
    n = len(kernel)
    strides = tuple(ctx.attr("strides", [1] * n))
    dilations = tuple(ctx.attr("dilations", [1] * n))
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        spatial = static_spatial(ctx, x, "to resolve auto_pad")
        begin, end = [], []
        for h, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max(0, (-(-h // s) - 1) * s + d * (k - 1) + 1 - h)
            head = total - total // 2 if auto_pad == "SAME_LOWER" else total // 2
            begin.append(head)
            end.append(total - head)
        return Window(tuple(kernel), strides, dilations, tuple(begin), tuple(end))
    pads = [0] * (2 * n) if auto_pad == "VALID" else list(ctx.attr("pads", [0] * (2 * n)))
    return Window(tuple(kernel), strides, dilations, tuple(pads[:n]), tuple(pads[n:]))


def weight_shape(ctx: RuleContext, w: str) -> tuple[int, ...]:
    """Static shape of a weight tensor."""
    value = ctx.value(w)
    shape = value.shape if value is not None else ctx.shape(w)
    if shape is None or not all(isinstance(d, int) for d in shape):
        raise GradientError(
            f"node {ctx.node.name!r} ({ctx.node.op_type}): the weight {w!r} has no static "
            f"shape; run shape inference or make the weight an initializer"
        )
    return tuple(shape)


def flipped_kernel(ctx: RuleContext, w: str, group: int) -> str:
    """W (M, C/g, *k) -> W' (C, M/g, *k) with W'[c, m] = flip(W[m, c]) within each group:
    the kernel of the transposed convolution written as a plain Conv."""
    m, cg, *k = weight_shape(ctx, w)
    n = len(k)
    spatial = list(range(2, 2 + n))
    value = ctx.value(w)
    if value is not None:  # precompute: no Transpose/Slice nodes at run time
        flipped = value.reshape(group, m // group, cg, *k).swapaxes(1, 2).reshape(cg * group, m // group, *k)
        flipped = np.ascontiguousarray(np.flip(flipped, axis=tuple(spatial)))
        return ctx.e.const(flipped, dtype=value.dtype, hint="flipped_w")
    e = ctx.e
    if group == 1:
        swapped = e.op("Transpose", w, perm=[1, 0, *spatial])
    else:
        grouped = e.op("Reshape", w, e.ints([group, m // group, cg, *k]))
        grouped = e.op("Transpose", grouped, perm=[0, 2, 1, *(a + 1 for a in spatial)])
        swapped = e.op("Reshape", grouped, e.ints([group * cg, m // group, *k]))
    return e.op("Slice", swapped, e.ints([-1] * n), e.ints([INT64_MIN] * n), e.ints(spatial),
                e.ints([-1] * n))


def crop_kernel(ctx: RuleContext, t: str, have: tuple[int, ...], kernel: tuple[int, ...]) -> str:
    """Slice the spatial axes of ``t`` (lengths ``have``) to the first ``kernel`` entries."""
    if tuple(have) == tuple(kernel):
        return t
    e = ctx.e
    n = len(kernel)
    return e.op("Slice", t, e.ints([0] * n), e.ints(list(kernel)), e.ints(list(range(2, 2 + n))))


def bias_grad(ctx: RuleContext, n_spatial: int) -> str:
    """dB = sum of dY over batch and spatial axes."""
    return ctx.e.op("ReduceSum", ctx.dy[0], ctx.e.ints([0, *range(2, 2 + n_spatial)]), keepdims=0)


def zero_insert(ctx: RuleContext, t: str, strides: tuple[int, ...], lengths: tuple[int, ...]) -> str:
    """(N, C, *O) -> (N, C, *(s*O)) with t[o] at s*o and zeros between: nearest-neighbour
    upsampling times a 0/1 mask, both exact. (Measured on onnxruntime CPU at 16x96x56x56:
    this 25 ms, a depthwise 1x1 ConvTranspose 27 ms, Pad + DepthToSpace 130 ms, a Pad of a
    (N, C, O, 1, O, 1) view 230 ms.)"""
    e = ctx.e
    scales = np.array([1, 1, *strides], dtype=np.float32)
    up = e.op("Resize", t, "", e.const(scales), mode="nearest",
              coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    mask = np.zeros([1, 1, *(s * o for s, o in zip(strides, lengths))], dtype=ctx.dtype(ctx.inputs[0]))
    mask[(Ellipsis, *(slice(None, None, s) for s in strides))] = 1
    return e.op("Mul", up, ctx.const_like(mask, ctx.inputs[0]))


def _conv_dx(ctx: RuleContext, win: Window, group: int) -> str:
    """dX of Conv: Conv(dY, flipped W) for stride 1, else ConvTranspose with explicit pads."""
    e, dy, (x, w) = ctx.e, ctx.dy[0], ctx.inputs[:2]
    ext = win.extent
    flip_begin = [ke - 1 - pb for ke, pb in zip(ext, win.begin)]
    flip_end = [ke - 1 - pe for ke, pe in zip(ext, win.end)]
    if all(s == 1 for s in win.strides) and min(flip_begin + flip_end) >= 0:
        return e.op("Conv", dy, flipped_kernel(ctx, w, group), pads=flip_begin + flip_end,
                    dilations=list(win.dilations), group=group)
    spatial = static_spatial(ctx, x, "for the gradient of a strided convolution")
    out = win.out_len(spatial)
    cg = weight_shape(ctx, w)[1]
    if group > 1 and cg == 1:
        # Depthwise: onnxruntime's depthwise ConvTranspose is slow; spreading dY onto the
        # input grid (zeros between) and running the stride-1 Conv is 3-5x faster.
        pads = [*flip_begin, *(h - s * o + pb for h, s, o, pb in zip(spatial, win.strides, out, win.begin))]
        if min(pads) >= 0:
            return e.op("Conv", zero_insert(ctx, dy, win.strides, out), flipped_kernel(ctx, w, group),
                        pads=pads, dilations=list(win.dilations), group=group)
    tail = win.tail(spatial, out)
    return e.op(
        "ConvTranspose", dy, w, strides=list(win.strides), dilations=list(win.dilations),
        group=group, pads=[*win.begin, *(max(0, -r) for r in tail)],
        output_padding=[max(0, r) for r in tail],
    )


def _conv_dw(ctx: RuleContext, win: Window, group: int) -> str:
    """dW[m, c] = sum over batch and output positions of dY[:, m] X[:, c] at window offsets:
    a Conv with batch and channels swapped (X as data, dY as kernel, stride and dilation swapped)."""
    e, dy, (x, w) = ctx.e, ctx.dy[0], ctx.inputs[:2]
    m, cg, *kernel = weight_shape(ctx, w)
    n = len(kernel)
    spatial = static_spatial(ctx, x, "for the weight gradient")
    out = win.out_len(spatial)
    tail = win.tail(spatial, out)
    perm = [1, 0, *range(2, 2 + n)]
    if group == 1:
        xt = e.op("Transpose", x, perm=perm)  # (C, N, *H)
    else:  # (Cg, g*N, *H): group gi of the "channels" holds X[:, gi*Cg + c] for all n
        xg = e.op("Reshape", x, e.ints([0, group, cg, *spatial]))
        xg = e.op("Transpose", xg, perm=[2, 1, 0, *range(3, 3 + n)])
        xt = e.op("Reshape", xg, e.ints([cg, -1, *spatial]))
    dyt = e.op("Transpose", dy, perm=perm)  # (M, N, *O): the kernel
    end = [max(0, -r) for r in tail]
    got = e.op("Conv", xt, dyt, strides=list(win.dilations), dilations=list(win.strides),
               pads=[*win.begin, *end], group=group)  # (Cg, M, *k')
    have = tuple(
        (h + pb + pe - s * (o - 1) - 1) // d + 1
        for h, pb, pe, s, o, d in zip(spatial, win.begin, end, win.strides, out, win.dilations)
    )
    return e.op("Transpose", crop_kernel(ctx, got, have, tuple(kernel)), perm=perm)


@register("Conv")
def conv(ctx: RuleContext) -> list[str | None]:
    """Y = X ⋆ W + B: dX = dY ⋆ᵀ W, dW = X ⋆ dY (batch as channels), dB = Σ dY."""
    x, w = ctx.inputs[:2]
    group = int(ctx.attr("group", 1))
    kernel = tuple(ctx.attr("kernel_shape", weight_shape(ctx, w)[2:]))
    win = window(ctx, kernel, x)
    grads: list[str | None] = [None] * len(ctx.inputs)
    if ctx.needs(0):
        grads[0] = _conv_dx(ctx, win, group)
    if ctx.needs(1):
        grads[1] = _conv_dw(ctx, win, group)
    if ctx.needs(2):
        grads[2] = bias_grad(ctx, len(kernel))
    return grads


def transpose_window(ctx: RuleContext, kernel: tuple[int, ...], spatial: tuple[int, ...]
                     ) -> tuple[Window, tuple[int, ...]]:
    """(window, output lengths) of a ConvTranspose, pads resolved as onnxruntime does.

    With ``output_shape`` (or SAME auto_pad, out = H*s) the total padding is
    max(0, s(H-1) + output_padding + k_eff - out); SAME_UPPER puts its smaller half first,
    every other auto_pad its larger half (measured on onnxruntime 1.31).
    """
    n = len(kernel)
    strides = tuple(ctx.attr("strides", [1] * n))
    dilations = tuple(ctx.attr("dilations", [1] * n))
    out_pad = tuple(ctx.attr("output_padding", [0] * n))
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    output_shape = ctx.attr("output_shape")
    ext = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilations))
    full = tuple(s * (h - 1) + op + ke for h, s, op, ke in zip(spatial, strides, out_pad, ext))
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = (tuple(output_shape[-n:]) if output_shape is not None
                  else tuple(h * s for h, s in zip(spatial, strides)))
        totals = [max(0, f - t) for f, t in zip(full, target)]
        begin = tuple(t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals)
        end = tuple(t - b for t, b in zip(totals, begin))
    elif auto_pad == "VALID":
        begin = end = (0,) * n
    else:
        pads = list(ctx.attr("pads", [0] * (2 * n)))
        begin, end = tuple(pads[:n]), tuple(pads[n:])
    out = tuple(f - b - e for f, b, e in zip(full, begin, end))
    if output_shape is not None:  # a longer output_shape appends zeros (and the bias)
        out = tuple(output_shape[-n:])
    return Window(tuple(kernel), strides, dilations, begin, end), out


@register("ConvTranspose")
def conv_transpose(ctx: RuleContext) -> list[str | None]:
    """Y = X ⋆ᵀ W + B: dX = dY ⋆ W (a strided Conv), dW = dY ⋆ X (batch as channels), dB = Σ dY."""
    e, dy, (x, w) = ctx.e, ctx.dy[0], ctx.inputs[:2]
    group = int(ctx.attr("group", 1))
    c, mg, *wkernel = weight_shape(ctx, w)
    kernel = tuple(ctx.attr("kernel_shape", wkernel))
    n = len(kernel)
    spatial = static_spatial(ctx, x, "for the gradient of ConvTranspose")
    win, out = transpose_window(ctx, kernel, spatial)
    # Y[j] = Yfull[j + pb]; the Conv reading dY needs pad pb before and enough after to
    # reach s(H-1) + k_eff positions.
    end = [max(0, s * (h - 1) + ke - pb - o)
           for s, h, ke, pb, o in zip(win.strides, spatial, win.extent, win.begin, out)]
    pads = [*win.begin, *end]
    grads: list[str | None] = [None] * len(ctx.inputs)
    if ctx.needs(0):
        grads[0] = e.op("Conv", dy, w, strides=list(win.strides), dilations=list(win.dilations),
                        pads=pads, group=group)
    if ctx.needs(1):
        perm = [1, 0, *range(2, 2 + n)]
        if group == 1:
            dyt = e.op("Transpose", dy, perm=perm)  # (M, N, *Hout)
        else:  # (Mg, g*N, *Hout)
            dyg = e.op("Reshape", dy, e.ints([0, group, mg, *out]))
            dyg = e.op("Transpose", dyg, perm=[2, 1, 0, *range(3, 3 + n)])
            dyt = e.op("Reshape", dyg, e.ints([mg, -1, *out]))
        xt = e.op("Transpose", x, perm=perm)  # (C, N, *H): the kernel
        got = e.op("Conv", dyt, xt, strides=list(win.dilations), dilations=list(win.strides),
                   pads=pads, group=group)  # (Mg, C, *k')
        have = tuple(
            (o + pb + pe - s * (h - 1) - 1) // d + 1
            for o, pb, pe, s, h, d in zip(out, win.begin, end, win.strides, spatial, win.dilations)
        )
        grads[1] = e.op("Transpose", crop_kernel(ctx, got, have, kernel), perm=perm)
    if ctx.needs(2):
        grads[2] = bias_grad(ctx, n)
    return grads
