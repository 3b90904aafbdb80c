"""Resampling and padding: Resize, Upsample, Pad, DepthToSpace, SpaceToDepth.

Resize is linear in X and separable: along each resized axis the output is A X for an
(out x in) interpolation matrix A, so dX applies A^T along each axis. A^T is read from the
runtime itself: the same Resize node applied to a constant identity (one basis vector per
batch entry, resized along the last axis) is A^T, which onnxruntime folds at session start.
So the gradient matches whatever coordinate arithmetic and rounding the runtime uses (those
of onnxruntime 1.31's nearest mode differ from its published float32 formulas at exact
halves), for every mode, coordinate_transformation_mode and nearest_mode. An integer nearest
upsampling (each input copied to a block of s outputs, unambiguously) is summed back with a
Reshape and a ReduceSum instead.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxviz.autodiff.registry import RuleContext, register
from onnxviz.errors import GradientError

f32 = np.float32


# --- Resize ---------------------------------------------------------------------------------


def _original_coordinate(mode: str, x: np.ndarray, scale: float, out_len: int, in_len: int,
                         roi_start: float, roi_end: float) -> np.ndarray:
    """onnxruntime's published resized -> original coordinate map (float32, or float64 for an
    exact reference when ``x`` is float64)."""
    t = np.float64 if x.dtype == np.float64 else f32  # float64: the exact reference
    x = x.astype(t)
    scale, out_f, in_f = t(f32(scale)), t(out_len), t(in_len)
    half = t(0.5)
    if mode == "asymmetric":
        return x / scale
    if mode == "pytorch_half_pixel":
        return (x + half) / scale - half if out_len > 1 else np.zeros_like(x)
    if mode == "tf_half_pixel_for_nn":
        return (x + half) / scale
    if mode == "align_corners":
        return np.zeros_like(x) if out_len == 1 else x * (in_f - 1) / (out_f - 1)
    if mode == "tf_crop_and_resize":
        start, end = t(roi_start), t(roi_end)
        if out_len > 1:
            return (start * (in_f - 1) + x * (end - start) * (in_f - 1) / (out_f - 1)).astype(t)
        return np.full_like(x, t(0.5 * (float(start) + float(end)) * (in_len - 1)))
    if mode == "half_pixel_symmetric":
        adjustment = out_f / (scale * in_f)
        offset = (in_f / 2) * (1 - adjustment)
        return (offset + (x.astype(np.float64) + 0.5) / scale - 0.5).astype(t)
    if mode == "half_pixel":
        return (x + half) / scale - half
    raise GradientError(f"Resize: unknown coordinate_transformation_mode {mode!r}")


def _nearest(mode: str, x: np.ndarray, downsample: bool) -> np.ndarray:
    """onnxruntime's nearest_mode rounding of original coordinates."""
    if mode == "simple":  # Resize-10 and Upsample
        return np.ceil(x) if downsample else np.trunc(x)
    # std::round: halves away from zero (x + 0.5 would round 0.49999997 up in float32)
    whole = np.trunc(x)
    rounded = whole + np.sign(x) * (np.abs(x - whole) >= f32(0.5))
    if mode == "round_prefer_ceil":
        return rounded
    if mode == "floor":
        return np.floor(x)
    if mode == "ceil":
        return np.ceil(x)
    if mode == "round_prefer_floor":
        return np.where(x == whole + f32(0.5), np.floor(x), rounded)
    raise GradientError(f"Resize: unknown nearest_mode {mode!r}")


def _block_factor(mode: str, ctm: str, nearest_mode: str, in_len: int, out_len: int,
                  scale: float) -> int | None:
    """s when nearest resizing copies input j to outputs s*j .. s*j+s-1 unambiguously: the
    float32 coordinates are exact (equal to the float64 ones) or no rounding boundary lies
    within 1e-5 of them, so every implementation of the formula agrees."""
    if mode != "nearest" or out_len % in_len or out_len == in_len or ctm == "tf_crop_and_resize":
        return None
    s = out_len // in_len
    rows = np.arange(out_len)
    coord = _original_coordinate(ctm, rows, scale, out_len, in_len, 0.0, 1.0)
    wide = _original_coordinate(ctm, rows.astype(np.float64), scale, out_len, in_len, 0.0, 1.0)
    inexact = coord.astype(np.float64) != wide
    for nudge in (0.0, 1e-5, -1e-5):
        moved = np.where(inexact, coord + f32(nudge), coord).astype(f32)
        index = np.clip(_nearest(nearest_mode, moved, scale < 1), 0, in_len - 1)
        if not np.array_equal(index.astype(np.int64), rows // s):
            return None
    return s


def _resize_plan(ctx: RuleContext, roi_v: np.ndarray | None, scales_v: np.ndarray | None,
                 has_sizes: bool, sizes_v: np.ndarray | None, ctm: str
                 ) -> tuple[tuple, tuple, list[float], list[tuple[float, float]], bool]:
    """(input shape, output shape, scale per axis, roi per axis, sized) of a resampling node."""
    x = ctx.inputs[0]
    shape = ctx.shape(x)
    if shape is None:
        raise GradientError(f"node {ctx.node.name!r} ({ctx.node.op_type}): unknown rank of {x!r}; "
                            f"run shape inference")
    rank = len(shape)
    axes = [a % rank for a in ctx.attr("axes", list(range(rank)))]
    scales = [1.0] * rank
    out = list(shape)
    if has_sizes:
        sizes = np.asarray(sizes_v).tolist() if sizes_v is not None else _static_out(ctx, axes, shape)
        for axis, size in zip(axes, sizes):
            out[axis] = int(size) if isinstance(size, (int, float)) else size
        for axis in axes:
            if out[axis] == shape[axis] and not isinstance(out[axis], int):
                continue  # a free-length axis taken as not resized (scale 1): see _static_out
            scales[axis] = float(f32(out[axis]) / f32(_static_dim(ctx, shape, axis)))
        if ctx.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise GradientError(
                f"node {ctx.node.name!r} (Resize): keep_aspect_ratio_policy other than "
                f"'stretch' is not supported; resize with explicit sizes per axis"
            )
    elif scales_v is not None and scales_v.size:
        for axis, s in zip(axes, scales_v.astype(f32).tolist()):
            scales[axis] = s
            if s != 1:
                out[axis] = int(f32(s) * f32(_static_dim(ctx, shape, axis)))
    else:
        raise GradientError(
            f"node {ctx.node.name!r} ({ctx.node.op_type}): the scales are computed at run time; "
            f"the gradient needs them as constants (fold constants before differentiating)"
        )
    roi = [(0.0, 1.0)] * rank
    if roi_v is not None and roi_v.size and ctm == "tf_crop_and_resize":
        flat = roi_v.astype(f32).tolist()
        n = len(flat) // 2
        for i, axis in enumerate(axes if n == len(axes) else range(rank)):
            roi[axis] = (flat[i], flat[n + i])
    return tuple(shape), tuple(out), scales, roi, has_sizes


def _static_dim(ctx: RuleContext, shape: tuple, axis: int) -> int:
    if not isinstance(shape[axis], int):
        raise GradientError(
            f"node {ctx.node.name!r} ({ctx.node.op_type}): axis {axis} of the input is resized "
            f"but its length is not static ({shape}); export the model with a fixed size"
        )
    return shape[axis]


def _static_out(ctx: RuleContext, axes: list[int], in_shape: tuple) -> list:
    """Output lengths of a Resize whose sizes are computed at run time, from its inferred shape.

    An axis of free length in both input and output (the batch: torch's interpolate and
    tf.image.resize pass ``Concat(Shape(X)[:2], size)``, and onnx names the output's batch
    ``unk__0``) is taken as not resized, its length the input's; a resampling of a free-length
    axis could not be differentiated anyway (its interpolation matrix must be static).
    :func:`resize` checks that guess at run time.
    """
    shape = ctx.shape(ctx.outputs[0])
    sizes = []
    for a in axes:
        dim = shape[a] if shape is not None else None
        if isinstance(dim, int):
            sizes.append(dim)
        elif shape is not None and not isinstance(in_shape[a], int):
            sizes.append(in_shape[a])
        else:
            raise GradientError(
                f"node {ctx.node.name!r} (Resize): the sizes are computed at run time and the "
                f"output shape is unknown; export the model with fixed sizes"
            )
    return sizes


def resample_grad(ctx: RuleContext, plan: tuple, mode: str, ctm: str, nearest_mode: str) -> str:
    """dX from dY for a separable resampling planned by :func:`_resize_plan`."""
    dy = ctx.dy[0]
    in_shape, out_shape, scales, roi, by_size = plan
    if in_shape == out_shape:  # onnxruntime copies when no axis changes length
        return dy
    rank = len(in_shape)
    blocks, grad = {}, dy
    for axis in range(rank):
        if scales[axis] == 1 and in_shape[axis] == out_shape[axis]:
            continue
        factor = _block_factor(mode, ctm, nearest_mode, in_shape[axis], out_shape[axis], scales[axis])
        if factor is not None:
            blocks[axis] = factor
            continue
        a_t = _probe(ctx, in_shape[axis], out_shape[axis], scales[axis], roi[axis], by_size)
        grad = _apply_transposed(ctx, grad, a_t, axis, rank)
    if blocks:
        grad = _sum_blocks(ctx, grad, in_shape, blocks)
    return grad


def _probe(ctx: RuleContext, in_len: int, out_len: int, scale: float, roi: tuple[float, float],
           by_size: bool) -> str:
    """A^T (in_len, out_len): this node's resampling applied along the last axis of a
    constant identity (in_len, 1, 1, in_len); constant-folded by the runtime."""
    e = ctx.e
    eye = e.const(np.eye(in_len, dtype=f32).reshape(in_len, 1, 1, in_len), dtype=f32, hint="basis")
    attrs = {a.name: helper.get_attribute_value(a) for a in ctx.node.attribute
             if a.name not in ("axes", "keep_aspect_ratio_policy", "extrapolation_value", "scales")}
    attrs["extrapolation_value"] = 0.0  # extrapolated outputs are constants: no gradient
    op = ctx.node.op_type
    if op == "Upsample" and len(ctx.inputs) == 1:  # Upsample-7: scales attribute
        inputs, attrs["scales"] = [eye], [1.0, 1.0, 1.0, scale]
        attrs.pop("extrapolation_value")
    elif op == "Upsample" or ctx.opset < 11:  # (X, scales)
        inputs = [eye, e.const(np.array([1, 1, 1, scale], dtype=f32), dtype=f32)]
        attrs.pop("extrapolation_value")
    else:
        rois = e.const(np.array([0, 0, 0, roi[0], 1, 1, 1, roi[1]], dtype=f32), dtype=f32)
        if by_size:
            inputs = [eye, rois, "", e.ints([in_len, 1, 1, out_len])]
        else:
            inputs = [eye, rois, e.const(np.array([1, 1, 1, scale], dtype=f32), dtype=f32)]
    resized = e.op(op, *inputs, **attrs)
    a_t = e.op("Reshape", resized, e.ints([in_len, out_len]))
    if ctx.dtype(ctx.inputs[0]) != np.float32:
        a_t = e.op("Cast", a_t, to=helper.np_dtype_to_tensor_dtype(ctx.dtype(ctx.inputs[0])))
    return a_t


def _apply_transposed(ctx: RuleContext, t: str, a_t: str, axis: int, rank: int) -> str:
    """Contract axis ``axis`` of t (length out) with A^T (in, out): t <- A^T t along that axis."""
    e = ctx.e
    if axis == rank - 2:
        return e.op("MatMul", a_t, t)
    a = e.op("Transpose", a_t, perm=[1, 0])
    if axis == rank - 1:
        return e.op("MatMul", t, a)
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    moved = e.op("Transpose", t, perm=perm)
    return e.op("Transpose", e.op("MatMul", moved, a), perm=perm)


def _sum_blocks(ctx: RuleContext, t: str, in_shape: tuple, blocks: dict[int, int]) -> str:
    """Sum the s consecutive outputs each input was copied to: one Reshape and one ReduceSum."""
    e = ctx.e
    target, summed, shifted = [], [], False
    for axis, dim in enumerate(in_shape):
        if axis in blocks:
            target += [dim, blocks[axis]]
            summed.append(len(target) - 1)
            shifted = True
        elif isinstance(dim, int):
            target.append(dim)
        elif not shifted:
            target.append(0)  # copy: the index is still the input's
        elif -1 not in target:
            target.append(-1)
        else:
            raise GradientError(
                f"node {ctx.node.name!r} ({ctx.node.op_type}): more than one unknown dim after a "
                f"resized axis ({in_shape}); give the model static shapes"
            )
    reshaped = e.op("Reshape", t, e.ints(target))
    if ctx.opset < 13:  # an unconverted Upsample/Resize-10 model: the attribute form
        return e.op("ReduceSum", reshaped, axes=summed, keepdims=0)
    return e.op("ReduceSum", reshaped, e.ints(summed), keepdims=0)


@register("Resize")
def resize(ctx: RuleContext) -> list[str | None]:
    """Y = A_1 ... A_k X (one interpolation matrix per resized axis): dX = A_k^T ... A_1^T dY."""
    if ctx.opset >= 11:
        ctm = ctx.attr("coordinate_transformation_mode", "half_pixel")
        nearest_mode = ctx.attr("nearest_mode", "round_prefer_floor")
        names = ctx.inputs + [""] * (4 - len(ctx.inputs))
    else:  # Resize-10: (X, scales), asymmetric, truncating nearest
        ctm, nearest_mode = "asymmetric", "simple"
        names = [ctx.inputs[0], "", ctx.inputs[1], ""]
    values = [ctx.value(name) if name else None for name in names]
    plan = _resize_plan(ctx, values[1], values[2], bool(names[3]), values[3], ctm)
    grad = resample_grad(ctx, plan, ctx.attr("mode", "nearest"), ctm, nearest_mode)
    if any(not isinstance(d, int) for d in plan[1]) and names[3] and values[3] is None:
        # free-length axes taken as not resized (_static_out): a Reshape to X's shape fails at
        # run time (element counts differ) if one was
        grad = ctx.e.op("Reshape", grad, ctx.e.op("Shape", ctx.inputs[0]))
    return [grad] + [None] * (len(ctx.inputs) - 1)


@register("Upsample")
def upsample(ctx: RuleContext) -> list[str | None]:
    """Upsample (opset 7-9): a Resize with asymmetric coordinates and truncating nearest."""
    scales = ctx.value(ctx.inputs[1]) if len(ctx.inputs) > 1 else np.asarray(ctx.attr("scales"), dtype=f32)
    plan = _resize_plan(ctx, None, scales, False, None, "asymmetric")
    grad = resample_grad(ctx, plan, ctx.attr("mode", "nearest"), "asymmetric", "simple")
    return [grad] + [None] * (len(ctx.inputs) - 1)


# --- Pad --------------------------------------------------------------------------------------


def _pad_source(mode: str, length: int, begin: int, end: int) -> np.ndarray:
    """For each output position of a 1-D pad, the input index it reads (-1: the constant)."""
    q = np.arange(-begin, length + end)
    if mode == "edge":
        return np.clip(q, 0, length - 1)
    if mode == "reflect":
        if length == 1:
            return np.zeros_like(q)
        period = 2 * (length - 1)
        r = np.mod(q, period)
        return np.where(r > length - 1, period - r, r)
    if mode == "wrap":
        return np.mod(q, length)
    return np.where((q >= 0) & (q < length), q, -1)


def _runs(source: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Split an index map into runs (out_start, out_stop, in_start, step) with step in {1, -1, 0}."""
    runs, p, n = [], 0, len(source)
    while p < n:
        if source[p] < 0:
            p += 1
            continue
        step = int(source[p + 1] - source[p]) if p + 1 < n and source[p + 1] >= 0 else 1
        step = step if step in (1, -1, 0) else 1
        stop = p + 1
        while stop < n and source[stop] >= 0 and source[stop] - source[stop - 1] == step:
            stop += 1
        runs.append((p, stop, int(source[p]), step))
        p = stop
    return runs


def _unpad_axis(ctx: RuleContext, g: str, axis: int, length: int, source: np.ndarray) -> str:
    """Transpose of reading positions ``source`` along ``axis``: sum g back to ``length``."""
    e = ctx.e
    axes = e.ints([axis])
    parts = []
    for start, stop, first, step in _runs(source):
        if step == -1:  # reversed run: read it backwards
            piece = e.op("Slice", g, e.ints([stop - 1]), e.ints([start - 1 if start else np.iinfo(np.int64).min]),
                         axes, e.ints([-1]))
            lo, n = first - (stop - start - 1), stop - start
        else:
            piece = g if (start, stop) == (0, len(source)) else e.op("Slice", g, e.ints([start]), e.ints([stop]), axes)
            if step == 0:
                piece = e.op("ReduceSum", piece, axes, keepdims=1)
            lo, n = first, (1 if step == 0 else stop - start)
        if (lo, n) != (0, length):
            pads = [0] * (2 * ctx.rank(ctx.inputs[0]))
            pads[axis], pads[len(pads) // 2 + axis] = lo, length - lo - n
            piece = e.op("Pad", piece, e.ints(pads))
        parts.append(piece)
    return parts[0] if len(parts) == 1 else e.op("Sum", *parts)


def _pad_amounts(ctx: RuleContext) -> tuple[str | None, np.ndarray | None, list[int]]:
    """(pads tensor name or None, constant pads per (begin..., end...) of all axes, axes)."""
    x = ctx.inputs[0]
    rank = ctx.rank(x)
    if len(ctx.inputs) > 1 and ctx.inputs[1]:  # opset 11+: pads input
        name, value = ctx.inputs[1], ctx.value(ctx.inputs[1])
    else:
        name, value = None, np.asarray(ctx.attr("pads"), dtype=np.int64)
    axes_name = ctx.inputs[3] if len(ctx.inputs) > 3 and ctx.inputs[3] else None
    if axes_name is None:
        axes = list(range(rank)) if rank is not None else []
    else:
        axes_v = ctx.value(axes_name)
        if axes_v is None or rank is None:
            raise GradientError(f"node {ctx.node.name!r} (Pad): the axes input must be a constant")
        axes = [int(a) % rank for a in axes_v.tolist()]
    return name, value, axes


@register("Pad")
def pad(ctx: RuleContext) -> list[str | None]:
    """Y[p] = X[src(p)] or the constant: dX[i] = Σ dY over the positions reading i; d(value) = Σ the rest."""
    e, x, dy = ctx.e, ctx.inputs[0], ctx.dy[0]
    mode = ctx.attr("mode", "constant")
    name, value, axes = _pad_amounts(ctx)
    grads: list[str | None] = [None] * len(ctx.inputs)
    axes_in = ctx.inputs[3] if len(ctx.inputs) > 3 else ""
    if mode == "constant":
        shape = ctx.shape(x)
        if value is not None and min(value.tolist(), default=0) >= 0 and shape is not None \
                and all(isinstance(shape[a], int) for a in axes):
            # only padding: dX is the middle of dY (a Slice, 20% faster than a cropping Pad)
            n = len(axes)
            begin = [int(v) for v in value[:n]]
            dx = e.op("Slice", dy, e.ints(begin), e.ints([b + shape[a] for a, b in zip(axes, begin)]),
                      e.ints(axes))
        else:  # Pad by -pads: crops the padding, refills cropped positions with zeros
            crop = e.ints([-int(v) for v in value]) if value is not None else e.op("Neg", name)
            dx = e.op("Pad", dy, crop, "", axes_in) if axes_in else e.op("Pad", dy, crop)
        if len(ctx.inputs) > 2 and ctx.needs(2):
            rest = e.op("Sub", e.op("ReduceSum", dy, keepdims=0), e.op("ReduceSum", dx, keepdims=0))
            grads[2] = e.op("Reshape", rest, e.op("Shape", ctx.inputs[2]))
        grads[0] = dx
        return grads
    shape = ctx.shape(x)
    if value is None or shape is None or not all(isinstance(shape[a], int) for a in axes):
        raise GradientError(
            f"node {ctx.node.name!r} (Pad, mode {mode!r}): the gradient needs constant pads and "
            f"static lengths of the padded axes"
        )
    n = len(axes)
    begin, end = [int(v) for v in value[:n]], [int(v) for v in value[n:]]
    rank = len(shape)
    grad = dy
    for axis, b, en in zip(axes, begin, end):
        length = shape[axis] + min(b, 0) + min(en, 0)  # negative pads crop first
        if b > 0 or en > 0:
            grad = _unpad_axis(ctx, grad, axis, length, _pad_source(mode, length, max(b, 0), max(en, 0)))
    crops = [0] * (2 * rank)
    for axis, b, en in zip(axes, begin, end):
        crops[axis], crops[rank + axis] = max(-b, 0), max(-en, 0)
    if any(crops):  # the cropped positions get nothing
        grad = e.op("Pad", grad, e.ints(crops))
    grads[0] = grad
    return grads


# --- DepthToSpace / SpaceToDepth ---------------------------------------------------------------


@register("SpaceToDepth")
def space_to_depth(ctx: RuleContext) -> list[str | None]:
    """A permutation whose inverse is DepthToSpace (DCR): dX = DepthToSpace(dY)."""
    return [ctx.e.op("DepthToSpace", ctx.dy[0], blocksize=int(ctx.attr("blocksize")), mode="DCR")]


@register("DepthToSpace")
def depth_to_space(ctx: RuleContext) -> list[str | None]:
    """A permutation: dX = SpaceToDepth(dY) for DCR; for CRD the inverse reshape-transpose."""
    e, dy, bs = ctx.e, ctx.dy[0], int(ctx.attr("blocksize"))
    if ctx.attr("mode", "DCR") == "DCR":
        return [e.op("SpaceToDepth", dy, blocksize=bs)]
    shape = ctx.shape(ctx.inputs[0])
    if shape is None or not all(isinstance(d, int) for d in shape[1:]):
        raise GradientError(
            f"node {ctx.node.name!r} (DepthToSpace CRD): the channel and spatial dims of the "
            f"input must be static"
        )
    _, c, h, w = shape
    # Y = reshape(transpose(reshape(X, (N, C/bs², bs, bs, H, W)), (0,1,4,2,5,3)), (N, C/bs², H bs, W bs))
    t = e.op("Reshape", dy, e.ints([0, c // (bs * bs), h, bs, w, bs]))
    t = e.op("Transpose", t, perm=[0, 1, 3, 5, 2, 4])
    return [e.op("Reshape", t, e.ints([0, c, h, w]))]
