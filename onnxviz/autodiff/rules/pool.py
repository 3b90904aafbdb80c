"""Pooling: MaxPool, AveragePool, LpPool, GlobalAveragePool, GlobalMaxPool, GlobalLpPool.

Windowed pools use a polyphase view of the padded input: along an axis with stride s,
position s*i + r is element i of phase r, so window o's kernel offset a (at s*o + d*a) is
phase (d*a) % s, element o + (d*a) // s, and reading one offset for every window is a step-1
Slice (SpaceToDepth makes the phases for 2-D pools).

MaxPool: ArgMax over the stacked offsets finds each window's winner, and dY is added at the
winners' input positions with one ScatterElements (reduction "add", opset 16+; opsets 13-15
place one-hot masks with Pads and a Sum). Ties follow torch: a window's whole gradient goes
to its first maximum in row-major kernel order (ArgMax picks the first). Padded positions are
-inf and never win. No MaxPool with an Indices output is emitted: it loses onnxruntime's fast
NCHWc kernel (and was 1.4-2x slower end to end than this).

AveragePool and LpPool spread dY/count (or its Lp analogue) back over the windows: for float32
with a static channel count as a depthwise all-ones Conv over dY spread onto the input grid,
otherwise with the polyphase Pads and Sum (any dtype, any channel count).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import onnx
from onnx import helper

from onnxviz.autodiff.registry import RuleContext, register
from onnxviz.autodiff.rules.conv import Window, static_spatial, window, zero_insert


class Polyphase:
    """The polyphase layout (N*C, S, *Q) of a pool's padded input, S = prod(strides)."""

    def __init__(self, win: Window, spatial: tuple[int, ...], out: tuple[int, ...]) -> None:
        self.win, self.spatial, self.out = win, spatial, out
        self.n = len(spatial)
        reach = [d * (k - 1) // s for k, d, s in zip(win.kernel, win.dilations, win.strides)]
        self.reach = tuple(reach)  # the largest shift along each axis
        self.q = tuple(o + m for o, m in zip(out, reach))
        self.padded = tuple(s * q for s, q in zip(win.strides, self.q))
        self.phases = math.prod(win.strides)
        #: kernel offsets in row-major order -> (phase index, shift per axis)
        self.offsets = []
        for offset in itertools.product(*(range(k) for k in win.kernel)):
            parts = [divmod(d * a, s) for a, d, s in zip(offset, win.dilations, win.strides)]
            phase = int(np.ravel_multi_index([r for _, r in parts], win.strides)) if self.n else 0
            self.offsets.append((phase, tuple(q for q, _ in parts)))

    @property
    def trivial(self) -> bool:
        """Whether the windows tile the padded input exactly (kernel == stride, dilation 1)."""
        return all(m == 0 for m in self.reach) and [p for p, _ in self.offsets] == list(range(self.phases))

    def split(self, ctx: RuleContext, x: str, fill: float) -> str:
        """x (N, C, *H) -> (N*C, S, *Q): padded with ``fill`` (or cropped) to s*Q, then phases."""
        e, n = ctx.e, self.n
        ends = [p - h - b for p, h, b in zip(self.padded, self.spatial, self.win.begin)]
        pads = [0, 0, *self.win.begin, 0, 0, *ends]
        if any(pads):
            x = e.op("Pad", x, e.ints(pads), ctx.const_like(fill, x))
        if self.phases == 1:
            return e.op("Reshape", x, e.ints([-1, 1, *self.q]))
        if n == 2 and len(set(self.win.strides)) == 1:  # 10x faster than the Transpose
            flat = e.op("Reshape", x, e.ints([-1, 1, *self.padded]))
            return e.op("SpaceToDepth", flat, blocksize=self.win.strides[0])
        interleaved = [v for q, s in zip(self.q, self.win.strides) for v in (q, s)]
        t = e.op("Reshape", x, e.ints([-1, *interleaved]))
        t = e.op("Transpose", t, perm=[0, *range(2, 2 * n + 1, 2), *range(1, 2 * n, 2)])
        return e.op("Reshape", t, e.ints([-1, self.phases, *self.q]))

    def merge(self, ctx: RuleContext, t: str, x: str) -> str:
        """The inverse of :meth:`split` for a gradient: (N*C, S, *Q) -> x's shape, the padding dropped."""
        e, n = ctx.e, self.n
        if self.phases == 1:
            t = e.op("Reshape", t, e.ints([-1, *self.padded]))
        else:
            t = e.op("Reshape", t, e.ints([-1, *self.win.strides, *self.q]))
            t = e.op("Transpose", t, perm=[0, *(a for i in range(n) for a in (n + 1 + i, 1 + i))])
            t = e.op("Reshape", t, e.ints([-1, *self.padded]))
        ends = [h + b - p for p, h, b in zip(self.padded, self.spatial, self.win.begin)]
        pads = [0, *(-b for b in self.win.begin), 0, *ends]
        if any(pads):  # negative pads crop: onnxruntime and the spec allow them
            t = e.op("Pad", t, e.ints(pads))
        return e.op("Reshape", t, e.op("Shape", x))

    def columns(self, ctx: RuleContext, poly: str) -> str:
        """(N*C, K, *O): every window's values, one kernel offset per channel, row-major."""
        if self.trivial:
            return poly
        e, n = ctx.e, self.n
        axes = e.ints(list(range(1, n + 2)))
        cols = [
            e.op("Slice", poly, e.ints([phase, *shift]),
                 e.ints([phase + 1, *(q + o for q, o in zip(shift, self.out))]), axes)
            for phase, shift in self.offsets
        ]
        return cols[0] if len(cols) == 1 else e.op("Concat", *cols, axis=1)

    def shifts(self) -> list[tuple[tuple[int, ...], list[int]]]:
        """(shift, table): table[phase] = the offset index with that phase and shift, or -1."""
        found = []
        for shift in itertools.product(*(range(m + 1) for m in self.reach)):
            table = [-1] * self.phases
            for j, (phase, sh) in enumerate(self.offsets):
                if sh == shift:
                    table[phase] = j
            if max(table) >= 0:
                found.append((shift, table))
        return found

    def place(self, ctx: RuleContext, part: str, shift: tuple[int, ...]) -> str:
        """Move a (N*C, S, *O) gradient to elements o + shift of (N*C, S, *Q)."""
        if not any(shift) and self.q == self.out:
            return part
        e = ctx.e
        ends = [q - o - s for q, o, s in zip(self.q, self.out, shift)]
        return e.op("Pad", part, e.ints([0, 0, *shift, 0, 0, *ends]))


def _pool_geometry(ctx: RuleContext) -> tuple[Polyphase, str]:
    x = ctx.inputs[0]
    kernel = tuple(ctx.attr("kernel_shape"))
    win = window(ctx, kernel, x)
    spatial = static_spatial(ctx, x, "for the gradient of a pooling layer")
    out = win.out_len(spatial, bool(ctx.attr("ceil_mode", 0)))
    return Polyphase(win, spatial, out), x


def _flat_dy(ctx: RuleContext, poly: Polyphase) -> str:
    """dY (N, C, *O) -> (N*C, 1, *O)."""
    return ctx.e.op("Reshape", ctx.dy[0], ctx.e.ints([-1, 1, *poly.out]))


def spread(ctx: RuleContext, poly: Polyphase, g: str, x: str) -> str:
    """dX[h] = sum of g[o] (N, C, *O) over the windows o containing h: the transpose of a
    window sum. float32 with static channels: a depthwise Conv of all-ones kernels over g
    spread onto the input grid (zeros between), 2-3x faster on onnxruntime CPU than a
    ConvTranspose; otherwise the polyphase Pad and Sum (any dtype)."""
    e, win = ctx.e, poly.win
    shape = ctx.shape(x)
    channels = shape[1] if shape is not None else None
    begin = [ke - 1 - pb for ke, pb in zip(win.extent, win.begin)]
    if ctx.dtype(x) == np.float32 and isinstance(channels, int) and min(begin) >= 0:
        grid = [s * o for s, o in zip(win.strides, poly.out)]
        u = zero_insert(ctx, g, win.strides, poly.out) if max(win.strides) > 1 else g
        end = [h + pb - length for h, pb, length in zip(poly.spatial, win.begin, grid)]
        if min(end) < 0:  # the grid runs past the last window's start: only zeros there
            u = e.op("Slice", u, e.ints([0] * poly.n), e.ints([length + min(0, t) for length, t in zip(grid, end)]),
                     e.ints(list(range(2, 2 + poly.n))))
        ones = ctx.const_like(np.ones((channels, 1, *win.kernel)), x)
        return e.op("Conv", u, ones, pads=[*begin, *(max(0, t) for t in end)],
                    dilations=list(win.dilations), group=channels)
    g = e.op("Reshape", g, e.ints([-1, 1, *poly.out]))
    parts = []
    for shift, table in poly.shifts():
        mask = np.array([t >= 0 for t in table], dtype=ctx.dtype(x)).reshape(1, -1, *[1] * poly.n)
        part = g if mask.all() and poly.phases == 1 else e.op("Mul", g, ctx.const_like(mask, x))
        parts.append(poly.place(ctx, part, shift))
    total = parts[0] if len(parts) == 1 else e.op("Sum", *parts)
    return poly.merge(ctx, total, x)


@register("MaxPool")
def max_pool(ctx: RuleContext) -> list[str | None]:
    """dX[h] = Σ_o dY[o] [h = first argmax of window o] (torch's tie rule); Indices gets none."""
    poly, x = _pool_geometry(ctx)
    first = ctx.e.op("ArgMax", poly.columns(ctx, poly.split(ctx, x, -np.inf)), axis=1, keepdims=1)
    if ctx.opset >= 16:
        return [_scatter_winners(ctx, poly, first, x)]
    return [_place_winners(ctx, poly, first, x)]


def _scatter_winners(ctx: RuleContext, poly: Polyphase, first: str, x: str) -> str:
    """Add dY[o] at the flat input position of window o's winner: one ScatterElements
    (reduction "add", opset 16) with O updates, no K-fold expansion."""
    e, win, n = ctx.e, poly.win, poly.n
    sizes = [int(np.prod(poly.spatial[i + 1:])) for i in range(n)]  # row-major strides of x
    grid = np.meshgrid(*(np.arange(o) for o in poly.out), indexing="ij")
    base = sum((s * g - pb) * m for g, s, pb, m in zip(grid, win.strides, win.begin, sizes))
    # offset j = (a_0, ..., a_n-1) row-major sits at sum_i d_i a_i m_i past the window origin;
    # with q_i = j // prod(k_i+1..), a_i = q_i - k_i q_i-1, so that is sum_i q_i e_i:
    coef = [d * m for d, m in zip(win.dilations, sizes)]
    span = [int(np.prod(win.kernel[i + 1:])) for i in range(n)]
    weight = [coef[i] - (win.kernel[i + 1] * coef[i + 1] if i + 1 < n else 0) for i in range(n)]
    # int32 arithmetic: 3x faster than int64 on onnxruntime CPU (and H*W < 2**31)
    j = e.op("Cast", first, to=onnx.TensorProto.INT32)
    index = e.op("Add", e.op("Mul", j, e.const(np.array(weight[-1], dtype=np.int32))),
                 e.const(base.reshape(1, 1, *poly.out).astype(np.int32)))
    for i in range(n - 1):
        if weight[i]:
            q = e.op("Div", j, e.const(np.array(span[i], dtype=np.int32)))
            index = e.op("Add", index, e.op("Mul", q, e.const(np.array(weight[i], dtype=np.int32))))
    flat = [-1, int(np.prod(poly.out))]
    target = e.op("Reshape", x, e.ints([-1, int(np.prod(poly.spatial))]))
    zero = helper.make_tensor("zero", helper.np_dtype_to_tensor_dtype(ctx.dtype(x)), [1], [0])
    grad = e.op("ScatterElements", e.op("ConstantOfShape", e.op("Shape", target), value=zero),
                e.op("Reshape", index, e.ints(flat)), e.op("Reshape", ctx.dy[0], e.ints(flat)),
                axis=1, reduction="add")
    return e.op("Reshape", grad, e.op("Shape", x))


def _place_winners(ctx: RuleContext, poly: Polyphase, first: str, x: str) -> str:
    """Opsets 13-15 (no scatter-add): per shift, a one-hot mask of the winners in phase
    layout times dY, moved by a Pad and summed."""
    e = ctx.e
    g = _flat_dy(ctx, poly)
    elem = helper.np_dtype_to_tensor_dtype(ctx.dtype(x))
    parts = []
    for shift, table in poly.shifts():
        index = e.const(np.array(table, dtype=np.int64).reshape(1, -1, *[1] * poly.n))
        hit = e.op("Cast", e.op("Equal", first, index), to=elem)  # (N*C, S, *O)
        parts.append(poly.place(ctx, e.op("Mul", hit, g), shift))
    total = parts[0] if len(parts) == 1 else e.op("Sum", *parts)
    return poly.merge(ctx, total, x)


def window_counts(poly: Polyphase, include_pad: bool) -> np.ndarray:
    """Positions of each window inside the input (or inside the padded input), (1, 1, *O).

    onnxruntime divides an AveragePool window by this count: with count_include_pad the
    window is clipped to the padded input (a ceil-mode window reaching past the end
    padding counts less than the kernel size), without it to the input itself.
    """
    win = poly.win
    counts = np.ones((), dtype=np.int64)
    for h, o, k, s, d, pb, pe in zip(poly.spatial, poly.out, win.kernel, win.strides,
                                     win.dilations, win.begin, win.end):
        pos = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - pb
        lo, hi = (-pb, h + pe) if include_pad else (0, h)
        counts = np.multiply.outer(counts, ((pos >= lo) & (pos < hi)).sum(axis=1))
    return counts.reshape(1, 1, *poly.out)


@register("AveragePool")
def average_pool(ctx: RuleContext) -> list[str | None]:
    """Y[o] = Σ_window X / count[o]: dX = spread(dY / count), count as onnxruntime divides."""
    e = ctx.e
    poly, x = _pool_geometry(ctx)
    counts = window_counts(poly, bool(ctx.attr("count_include_pad", 0)))
    inv = ctx.const_like(1.0 / np.maximum(counts, 1), x)
    return [spread(ctx, poly, e.op("Mul", ctx.dy[0], inv), x)]


@register("LpPool")
def lp_pool(ctx: RuleContext) -> list[str | None]:
    """Y = (Σ_window |X|^p)^(1/p): dX = sign(X)|X|^(p-1) spread(dY Y^(1-p)) (zero where Y = 0)."""
    e = ctx.e
    poly, x = _pool_geometry(ctx)
    p = float(ctx.attr("p", 2))
    y = ctx.outputs[0]
    g = e.op("Mul", ctx.dy[0], _lp_scale(ctx, y, p))
    return [e.op("Mul", spread(ctx, poly, g, x), _lp_slope(ctx, x, p))]


def _lp_scale(ctx: RuleContext, y: str, p: float) -> str:
    """Y^(1-p), with Y = 0 (an all-zero window, whose slope factor is 0) read as 1."""
    e = ctx.e
    if p == 1:
        return ctx.const_like(1.0, y)
    zero = e.op("Cast", e.op("Equal", y, ctx.const_like(0.0, y)), to=helper.np_dtype_to_tensor_dtype(ctx.dtype(y)))
    safe = e.op("Add", y, zero)
    return e.op("Reciprocal", safe) if p == 2 else e.op("Pow", safe, ctx.const_like(1 - p, y))


def _lp_slope(ctx: RuleContext, x: str, p: float) -> str:
    """d|x|^p/dx / p = sign(x)|x|^(p-1)."""
    e = ctx.e
    if p == 1:
        return e.op("Sign", x)
    if p == 2:
        return x
    return e.op("Mul", x, e.op("Pow", e.op("Abs", x), ctx.const_like(p - 2, x)))


def _spatial_size(ctx: RuleContext, x: str, y: str) -> str:
    """The number of spatial positions of x as a scalar of x's type (static or Size(x)/Size(y))."""
    shape = ctx.shape(x)
    if shape is not None and all(isinstance(d, int) for d in shape[2:]):
        return ctx.const_like(float(math.prod(shape[2:])), x)
    e = ctx.e
    elem = helper.np_dtype_to_tensor_dtype(ctx.dtype(x))
    return e.op("Cast", e.op("Div", e.op("Size", x), e.op("Size", y)), to=elem)


@register("GlobalAveragePool")
def global_average_pool(ctx: RuleContext) -> list[str | None]:
    """Y = mean over spatial axes: dX = dY / (H·W), broadcast."""
    e, x, y = ctx.e, ctx.inputs[0], ctx.outputs[0]
    scaled = e.op("Div", ctx.dy[0], _spatial_size(ctx, x, y))
    return [e.op("Expand", scaled, e.op("Shape", x))]


@register("GlobalMaxPool")
def global_max_pool(ctx: RuleContext) -> list[str | None]:
    """Y = max over spatial axes: dX = dY at the first maximum (row-major), zero elsewhere."""
    e, x = ctx.e, ctx.inputs[0]
    flat = e.op("Reshape", x, e.ints([0, 0, -1]))
    first = e.op("ArgMax", flat, axis=2, keepdims=1)  # (N, C, 1)
    shape = ctx.shape(x)
    if shape is not None and all(isinstance(d, int) for d in shape[2:]):
        positions = e.const(np.arange(math.prod(shape[2:]), dtype=np.int64))
    else:
        size = e.op("Squeeze", e.op("Slice", e.op("Shape", flat), e.ints([2]), e.ints([3])), e.ints([0]))
        positions = e.op("Range", e.const(np.array(0, dtype=np.int64)), size,
                         e.const(np.array(1, dtype=np.int64)))
    elem = helper.np_dtype_to_tensor_dtype(ctx.dtype(x))
    hit = e.op("Cast", e.op("Equal", first, positions), to=elem)  # (N, C, H*W)
    g = e.op("Reshape", ctx.dy[0], e.ints([0, 0, 1]))
    return [e.op("Reshape", e.op("Mul", hit, g), e.op("Shape", x))]


@register("GlobalLpPool")
def global_lp_pool(ctx: RuleContext) -> list[str | None]:
    """Y = (Σ_spatial |X|^p)^(1/p): dX = sign(X)|X|^(p-1) dY Y^(1-p)."""
    e, x, y = ctx.e, ctx.inputs[0], ctx.outputs[0]
    p = float(ctx.attr("p", 2))
    g = e.op("Mul", ctx.dy[0], _lp_scale(ctx, y, p))
    return [e.op("Mul", _lp_slope(ctx, x, p), g)]
