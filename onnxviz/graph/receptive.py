"""Receptive fields of every spatial tensor, from the graph alone.

For each tensor reachable from the image input we track which of its axes
are the image's H and W axes and, per axis, the standard recurrence
(Araujo et al., "Computing receptive fields of convolutional neural
networks", Distill 2019)::

    k_eff = d (k - 1) + 1
    size' = size + (k_eff - 1) jump
    jump' = jump s
    start' = start + ((k_eff - 1) / 2 - p_begin) jump

Arithmetic is exact (``Fraction``): upsampling makes jumps fractional.

Conventions and approximations:

* Pixel ``i`` of the input has coordinate ``i``; ``start`` is the centre of
  output element 0's window and output element ``o`` is centred at
  ``start + o * jump``. Clipping at the image border is ignored.
* Upsampling ops (ConvTranspose, Resize/Upsample, DepthToSpace) do not map
  outputs to input windows on a regular grid (output ``o`` of a 2x nearest
  upsample reads input ``o // 2``). For them ``size`` is the largest window
  over the outputs and ``start`` is the best linear fit: the average over
  one period of outputs of (window centre - ``o * jump``). Exact for
  regular ops, within half an input step for upsampling.
* Normalisations (BatchNormalization, InstanceNormalization, LRN...) count as
  pointwise; global context (Global*Pool, squeeze-excitation branches,
  statistics) is not spatial and is ignored where it is merged back in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import onnx

from onnxviz.graph._nodes import Constants, attrs
from onnxviz.graph.info import image_input, opset_version
from onnxviz.graph.load import Shape, infer_shapes, tensor_shapes


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one tensor, per image axis (H, W), in input pixels.

    Attributes:
        size: extent of the input window that can influence one output element
            (border clipping ignored). An int unless upsampling made it fractional.
        jump: input pixels between neighbouring output elements (fractional
            after upsampling).
        start: input coordinate of the centre of output element (0, 0)'s
            window; negative with padding. After upsampling ops, the best
            linear fit over all outputs (see the module docstring).
    """

    size: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float]


@dataclass(frozen=True)
class _Dim:
    """The recurrence state along one image axis."""

    size: Fraction = Fraction(1)
    jump: Fraction = Fraction(1)
    start: Fraction = Fraction(0)

    def window(self, k_eff: int, stride: int, pad_begin: int) -> _Dim:
        """After a sliding window (conv, pool) of effective size k_eff."""
        return _Dim(
            self.size + (k_eff - 1) * self.jump,
            self.jump * stride,
            self.start + (Fraction(k_eff - 1, 2) - pad_begin) * self.jump,
        )

    def shift(self, begin: int, step: int = 1) -> _Dim:
        """After dropping ``begin`` leading elements (negative: padding) and taking every ``step``-th."""
        return _Dim(self.size, self.jump * step, self.start + begin * self.jump)

    def taps(self, step: Fraction, taps: Callable[[int], Sequence[Fraction]], period: int) -> _Dim:
        """After an op whose output ``o`` reads input elements ``taps(o)``, nominally at ``o * step``.

        The window is the largest over one period of outputs; the start is the
        average offset of the window centres from ``o * step``.
        """
        span, offsets = Fraction(0), []
        for o in range(period):
            read = taps(o)
            if read:
                lo, hi = min(read), max(read)
                span = max(span, hi - lo)
                offsets.append((lo + hi) / 2 - o * step)
        offset = sum(offsets, Fraction(0)) / len(offsets) if offsets else Fraction(0)
        return _Dim(self.size + span * self.jump, self.jump * step, self.start + offset * self.jump)

    @property
    def lo(self) -> Fraction:
        return self.start - (self.size - 1) / 2

    @property
    def hi(self) -> Fraction:
        return self.start + (self.size - 1) / 2


@dataclass(frozen=True)
class _Track:
    """Where the image axes are in a tensor, and the recurrence state along each."""

    axes: tuple[int, int]
    dims: tuple[_Dim, _Dim]

    def field(self) -> ReceptiveField:
        return ReceptiveField(
            size=(_number(self.dims[0].size), _number(self.dims[1].size)),
            jump=(_number(self.dims[0].jump), _number(self.dims[1].jump)),
            start=(float(self.dims[0].start), float(self.dims[1].start)),
        )


def _number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


class _Context:
    """What the handlers need to know about the model besides the node."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        # load_model already inferred shapes; infer only for a bare model.
        if not graph.value_info and graph.node:
            model = infer_shapes(model)
        self.shapes = tensor_shapes(model)
        self.constants = Constants(graph)
        self.opset = opset_version(model)

    def shape(self, name: str) -> Shape | None:
        return self.shapes.get(name) if name else None

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return None if shape is None else len(shape)

    def dim(self, name: str, axis: int) -> int | None:
        shape = self.shape(name)
        if shape is None or axis >= len(shape):
            return None
        value = shape[axis]
        return value if isinstance(value, int) else None


Handler = Callable[[onnx.NodeProto, list["_Track | None"], _Context], "_Track | None"]


def receptive_fields(model: onnx.ModelProto) -> dict[str, ReceptiveField]:
    """Receptive field of every spatial tensor reachable from the image input.

    Args:
        model: not modified; shapes are inferred when it has no value_info.

    Returns:
        ``{tensor name: ReceptiveField}``, the image input included (size 1,
        jump 1, start 0). Tensors past ops that destroy the spatial layout
        (Flatten, Gemm, global pooling, reshapes that merge H or W) are absent.

    Raises:
        NotAnImageModelError: the model has no rank-4 input.
    """
    spec = image_input(model)
    ctx = _Context(model)
    axes = (2, 3) if spec.layout == "NCHW" else (1, 2)
    tracks: dict[str, _Track] = {spec.name: _Track(axes, (_Dim(), _Dim()))}
    for node in model.graph.node:
        inputs = [tracks.get(name) if name else None for name in node.input]
        if not any(inputs):
            continue
        track = _handler(node.op_type)(node, inputs, ctx)
        if track is not None:
            tracks.update((name, track) for name in node.output if name)
    return {name: track.field() for name, track in tracks.items()}


def _handler(op_type: str) -> Handler:
    if op_type in _HANDLERS:
        return _HANDLERS[op_type]
    if op_type in _POINTWISE:
        return _pointwise
    if op_type in _STOP:
        return _stop
    return _shape_preserving


# --- sliding windows ---------------------------------------------------------------


def _spatial_indices(track: _Track, n_spatial: int) -> tuple[int, int] | None:
    """Positions of the image axes among an NC... op's spatial axes (2, 3, ...)."""
    indices = (track.axes[0] - 2, track.axes[1] - 2)
    return indices if all(0 <= i < n_spatial for i in indices) else None


# Input index of the weight of convolution-like ops (to read the kernel size from).
_WEIGHT_INPUT = {"QLinearConv": 3}


def _kernel(node: onnx.NodeProto, a: dict, ctx: _Context) -> list[int] | None:
    """kernel_shape, or the weight's spatial dims for Conv/ConvTranspose."""
    if "kernel_shape" in a:
        return list(a["kernel_shape"])
    index = _WEIGHT_INPUT.get(node.op_type, 1)
    weight = ctx.shape(node.input[index]) if len(node.input) > index else None
    if weight is None or not all(isinstance(d, int) for d in weight[2:]):
        return None
    return list(weight[2:])


def _decoded(a: dict, key: str, default: str) -> str:
    value = a.get(key, default)
    return value.decode() if isinstance(value, bytes) else value


def _pads_begin(a: dict, k_eff: list[int], strides: list[int], sizes: list[int | None]) -> list[int]:
    """Leading padding per spatial axis, auto_pad included.

    SAME needs the input size; when it is dynamic the size is assumed to be a
    multiple of the stride.
    """
    n = len(k_eff)
    auto_pad = _decoded(a, "auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return [0] * n
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins = []
        for k, s, size in zip(k_eff, strides, sizes):
            if size is None:
                total = max(k - s, 0)
            else:
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            # odd padding: the extra pixel goes at the end for SAME_UPPER
            begins.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        return begins
    return list(a.get("pads", [0] * 2 * n))[:n]


def _sliding(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context):
    """(track, attrs, kernel, spatial indices, strides, dilations) of a sliding-window
    node, or None when the input is not tracked or the kernel or axes are unknown."""
    track = inputs[0]
    a = attrs(node)
    kernel = _kernel(node, a, ctx)
    if track is None or kernel is None:
        return None
    n = len(kernel)
    indices = _spatial_indices(track, n)
    if indices is None:
        return None
    return track, a, kernel, indices, list(a.get("strides", [1] * n)), list(a.get("dilations", [1] * n))


def _window(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """Conv, MaxPool, AveragePool, LpPool and other NC-first sliding windows."""
    setup = _sliding(node, inputs, ctx)
    if setup is None:
        return None
    track, a, kernel, indices, strides, dilations = setup
    n = len(kernel)
    k_eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    sizes = [ctx.dim(node.input[0], i + 2) for i in range(n)]
    pads = _pads_begin(a, k_eff, strides, sizes)
    dims = tuple(dim.window(k_eff[i], strides[i], pads[i]) for dim, i in zip(track.dims, indices))
    return replace(track, dims=dims)


def _conv_transpose(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """ConvTranspose: output ``o`` reads inputs ``i`` with ``i s + k d - p = o``."""
    setup = _sliding(node, inputs, ctx)
    if setup is None:
        return None
    track, a, kernel, indices, strides, dilations = setup
    pads = _transpose_pads(node, a, ctx, kernel, strides, dilations)
    if pads is None:
        return None
    dims = []
    for dim, i in zip(track.dims, indices):
        k, s, d, p = kernel[i], strides[i], dilations[i], pads[i]

        def taps(o: int, k: int = k, s: int = s, d: int = d, p: int = p) -> list[Fraction]:
            return [Fraction((o + p - j * d) // s) for j in range(k) if (o + p - j * d) % s == 0]

        dims.append(dim.taps(Fraction(1, s), taps, period=s))
    return replace(track, dims=tuple(dims))


def _transpose_pads(
    node: onnx.NodeProto, a: dict, ctx: _Context, kernel: list[int], strides: list[int], dilations: list[int]
) -> list[int] | None:
    """Leading padding of a ConvTranspose, per the ONNX spec's output_shape/auto_pad equations."""
    n = len(kernel)
    k_eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    out_pad = list(a.get("output_padding", [0] * n))
    auto_pad = _decoded(a, "auto_pad", "NOTSET")
    if "output_shape" in a:
        totals = []
        for i in range(n):
            size = ctx.dim(node.input[0], i + 2)
            if size is None:
                return None
            totals.append(strides[i] * (size - 1) + out_pad[i] + k_eff[i] - a["output_shape"][-n + i])
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # output = input * stride, so the input size cancels out
        totals = [out_pad[i] + k_eff[i] - strides[i] for i in range(n)]
    elif auto_pad == "VALID":
        return [0] * n
    else:
        return list(a.get("pads", [0] * 2 * n))[:n]
    if auto_pad == "SAME_UPPER":
        return [t // 2 for t in totals]
    return [t - t // 2 for t in totals]


def _space_to_depth(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """SpaceToDepth(b): a b x b window with stride b."""
    track = inputs[0]
    block = attrs(node)["blocksize"]
    if track is None or _spatial_indices(track, 2) is None:
        return None
    return replace(track, dims=tuple(dim.window(block, block, 0) for dim in track.dims))


def _depth_to_space(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """DepthToSpace(b): output ``o`` reads input ``o // b``."""
    track = inputs[0]
    block = attrs(node)["blocksize"]
    if track is None or _spatial_indices(track, 2) is None:
        return None
    dims = tuple(dim.taps(Fraction(1, block), lambda o: [Fraction(o // block)], block) for dim in track.dims)
    return replace(track, dims=dims)


# --- resampling --------------------------------------------------------------------


def _resize(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """Resize and Upsample: the window of the interpolation taps, jump divided by the scale."""
    track = inputs[0]
    if track is None:
        return None
    a = attrs(node)
    legacy = node.op_type == "Upsample" or ctx.opset < 11
    mode = _decoded(a, "mode", "nearest")
    ctm = _decoded(a, "coordinate_transformation_mode", "asymmetric" if legacy else "half_pixel")
    nearest = _decoded(a, "nearest_mode", "simple" if legacy else "round_prefer_floor")
    dims = []
    for dim, axis in zip(track.dims, track.axes):
        scale = _resize_scale(node, a, ctx, axis)
        if scale is None:
            return None
        in_size, out_size = ctx.dim(node.input[0], axis), ctx.dim(node.output[0], axis)
        mapping = _coordinate_map(ctm, scale, in_size, out_size)
        if mapping is None:
            return None
        x0, step = mapping
        taps = _interpolation_taps(mode, nearest, x0, step, downsampling=scale < 1)
        period = min(step.denominator, 512)
        dims.append(dim.taps(step, taps, period))
    return replace(track, dims=tuple(dims))


def _resize_scale(node: onnx.NodeProto, a: dict, ctx: _Context, axis: int) -> Fraction | None:
    """Scale along ``axis``: from the scales (attribute or input), else sizes, else shapes."""
    rank = ctx.rank(node.input[0])
    axes = list(a.get("axes", range(rank or 0)))
    axes = [x + rank if x < 0 and rank else x for x in axes]
    inputs = list(node.input) + [""] * 4
    if node.op_type == "Upsample" or ctx.opset < 11:
        scales, sizes = a.get("scales") or ctx.constants.floats(inputs[1]), None
    else:
        scales, sizes = ctx.constants.floats(inputs[2]), ctx.constants.ints(inputs[3])
    in_size = ctx.dim(node.input[0], axis)
    if scales and axis in axes and len(scales) == len(axes):
        return Fraction(scales[axes.index(axis)]).limit_denominator(1000)
    if sizes and axis in axes and len(sizes) == len(axes) and in_size:
        return Fraction(sizes[axes.index(axis)], in_size)
    out_size = ctx.dim(node.output[0], axis)
    if in_size and out_size:
        return Fraction(out_size, in_size)
    return None


def _coordinate_map(
    ctm: str, scale: Fraction, in_size: int | None, out_size: int | None
) -> tuple[Fraction, Fraction] | None:
    """(x(0), dx/do) of the input coordinate an output element samples."""
    half = Fraction(1, 2)
    if ctm in ("half_pixel", "pytorch_half_pixel"):
        return half / scale - half, 1 / scale
    if ctm == "half_pixel_symmetric":
        if in_size is None:
            return half / scale - half, 1 / scale
        # the spec's centring of a non-integer output size
        adjustment = Fraction(math.floor(scale * in_size)) / (scale * in_size)
        offset = Fraction(in_size, 2) * (1 - adjustment)
        return offset + half / scale - half, 1 / scale
    if ctm == "asymmetric":
        return Fraction(0), 1 / scale
    if ctm == "tf_half_pixel_for_nn":
        return half / scale, 1 / scale
    if ctm in ("align_corners", "tf_crop_and_resize"):
        # tf_crop_and_resize is approximated with a full-image crop box
        if in_size is None or out_size is None:
            return None
        step = Fraction(in_size - 1, out_size - 1) if out_size > 1 else Fraction(0)
        return Fraction(0), step
    return None


def _interpolation_taps(
    mode: str, nearest: str, x0: Fraction, step: Fraction, downsampling: bool
) -> Callable[[int], list[Fraction]]:
    """Input elements output ``o`` reads (only those with a non-zero weight)."""

    def taps(o: int) -> list[Fraction]:
        x = x0 + o * step
        if mode == "nearest":
            return [Fraction(_round(x, nearest, downsampling))]
        if x.denominator == 1:  # exactly on an input element: the other taps weigh 0
            return [x]
        floor = math.floor(x)
        reach = 1 if mode in ("linear", "bilinear") else 2  # cubic reads 4 neighbours
        return [Fraction(floor - reach + 1), Fraction(floor + reach)]

    return taps


def _round(x: Fraction, nearest_mode: str, downsampling: bool) -> int:
    if nearest_mode == "simple":  # onnxruntime's legacy (opset < 11) rounding
        nearest_mode = "ceil" if downsampling else "floor"
    if nearest_mode == "floor":
        return math.floor(x)
    if nearest_mode == "ceil":
        return math.ceil(x)
    if nearest_mode == "round_prefer_ceil":
        return math.floor(x + Fraction(1, 2))
    return math.ceil(x - Fraction(1, 2))  # round_prefer_floor


# --- padding and slicing -----------------------------------------------------------


def _pad(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """Pad: output element 0 sits ``pad_begin`` elements before input element 0."""
    track = inputs[0]
    a = attrs(node)
    pads = a.get("pads", a.get("paddings"))
    if pads is None and len(node.input) > 1:
        pads = ctx.constants.ints(node.input[1])
    if track is None or pads is None:
        return None
    rank = ctx.rank(node.input[0]) or len(pads) // 2
    axes = ctx.constants.ints(node.input[3]) if len(node.input) > 3 and node.input[3] else list(range(rank))
    axes = [x % rank for x in axes]
    dims = []
    for dim, axis in zip(track.dims, track.axes):
        begin = pads[axes.index(axis)] if axis in axes else 0
        dims.append(dim.shift(-begin))
    return replace(track, dims=tuple(dims))


def _slice(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """Slice: a crop (shifted start) with an optional step (multiplied jump)."""
    track = inputs[0]
    if track is None:
        return None
    a = attrs(node)
    if "starts" in a:  # opset < 10
        starts, axes, steps = list(a["starts"]), a.get("axes"), None
    else:
        extra = list(node.input) + [""] * 5
        starts, axes, steps = ctx.constants.ints(extra[1]), ctx.constants.ints(extra[3]), ctx.constants.ints(extra[4])
    rank = ctx.rank(node.input[0])
    if starts is None or (rank is None and (axes is None or min(axes) < 0)):
        return None
    axes = list(range(len(starts))) if axes is None else [x % rank if x < 0 else x for x in axes]
    steps = steps or [1] * len(starts)
    dims = []
    for dim, axis in zip(track.dims, track.axes):
        if axis not in axes:
            dims.append(dim)
            continue
        i = axes.index(axis)
        begin, size = starts[i], ctx.dim(node.input[0], axis)
        if steps[i] <= 0 or (begin < 0 and size is None):
            return None
        if size is not None:
            begin = min(max(begin + size if begin < 0 else begin, 0), size)
        dims.append(dim.shift(begin, steps[i]))
    return replace(track, dims=tuple(dims))


# --- layout ------------------------------------------------------------------------


def _transpose(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    track = inputs[0]
    if track is None:
        return None
    perm = attrs(node).get("perm")
    if perm is None:
        rank = ctx.rank(node.input[0])
        if rank is None:
            return None
        perm = list(reversed(range(rank)))
    perm = list(perm)
    return replace(track, axes=(perm.index(track.axes[0]), perm.index(track.axes[1])))


def _reshape(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """Reshape, Flatten, Squeeze, Unsqueeze: follow H and W if they survive as axes.

    In row-major order an axis of size d whose trailing axes hold P elements
    survives as any output axis of size d with P trailing elements.
    Outputs of rank < 3 (flattened features) stop the spatial layout.
    """
    track = inputs[0]
    before, after = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    if track is None or before is None or after is None or len(after) < 3:
        return None
    axes = tuple(_surviving_axis(before, after, axis) for axis in track.axes)
    if None in axes or axes[0] == axes[1]:
        return None
    return replace(track, axes=axes)


def _trailing(shape: Shape, axis: int) -> int | None:
    tail = shape[axis + 1 :]
    return math.prod(tail) if all(isinstance(d, int) for d in tail) else None


def _surviving_axis(before: Shape, after: Shape, axis: int) -> int | None:
    size, trailing = before[axis], _trailing(before, axis)
    if not isinstance(size, int) or trailing is None:
        return None
    for j, d in enumerate(after):
        if d == size and _trailing(after, j) == trailing:
            return j
    return None


# --- merging and pointwise ---------------------------------------------------------


def _aligned(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> list[_Track]:
    """Tracked inputs with axes moved to the output's rank (numpy broadcasting prepends axes)."""
    out_rank = ctx.rank(node.output[0])
    aligned = []
    for name, track in zip(node.input, inputs):
        if track is None:
            continue
        in_rank = ctx.rank(name)
        shift = out_rank - in_rank if out_rank is not None and in_rank is not None else 0
        aligned.append(replace(track, axes=(track.axes[0] + shift, track.axes[1] + shift)))
    return aligned


def _merge(tracks: list[_Track]) -> _Track | None:
    """Union of the windows of several inputs to one output element.

    Inputs of one elementwise op or Concat share the output grid, so their
    jumps agree; the union's jump is taken from the widest input.
    """
    if not tracks:
        return None
    tracks = [t for t in tracks if t.axes == tracks[0].axes]
    dims = []
    for i in range(2):
        column = [t.dims[i] for t in tracks]
        lo, hi = min(d.lo for d in column), max(d.hi for d in column)
        widest = max(column, key=lambda d: d.size)
        dims.append(_Dim(hi - lo + 1, widest.jump, (lo + hi) / 2))
    return _Track(tracks[0].axes, tuple(dims))


def _pointwise(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    return _merge(_aligned(node, inputs, ctx))


def _concat(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """Concat along a non-image axis merges its inputs; along H or W it stops."""
    rank = ctx.rank(node.output[0])
    axis = attrs(node).get("axis", 1)
    if axis < 0:
        if rank is None:
            return None
        axis += rank
    merged = _merge(_aligned(node, inputs, ctx))
    return None if merged is None or axis in merged.axes else merged


def _split(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """Split along a non-image axis: every part keeps the field."""
    track = inputs[0]
    rank = ctx.rank(node.input[0])
    axis = attrs(node).get("axis", 0)
    if track is None or (axis < 0 and rank is None):
        return None
    if axis < 0:
        axis += rank
    return None if axis in track.axes else track


def _softmax(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """Softmax family: pointwise unless it normalises across H or W."""
    track = inputs[0]
    rank = ctx.rank(node.input[0])
    if track is None or rank is None:
        return None
    legacy = ctx.opset < 13  # before 13 the input is flattened to 2-D from `axis` on
    axis = attrs(node).get("axis", 1 if legacy else -1) % rank
    touched = range(axis, rank) if legacy else (axis,)
    return None if any(a in touched for a in track.axes) else track


def _reduce(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """Reductions over non-image axes keep the field; over H or W they stop."""
    track = inputs[0]
    rank = ctx.rank(node.input[0])
    a = attrs(node)
    if track is None or rank is None:
        return None
    if node.op_type in ("ArgMax", "ArgMin"):
        axes = [a.get("axis", 0)]
    elif "axes" in a:
        axes = list(a["axes"])
    elif len(node.input) > 1 and node.input[1]:
        axes = ctx.constants.ints(node.input[1])
        if axes is None:
            return None
    else:
        axes = [] if a.get("noop_with_empty_axes", 0) else list(range(rank))
    axes = [x % rank for x in axes]
    if any(x in axes for x in track.axes):
        return None
    if a.get("keepdims", 1):
        return track
    return replace(track, axes=tuple(x - sum(r < x for r in axes) for x in track.axes))


def _matmul(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """``A @ B`` with A spatial keeps the field unless H or W is A's last axis, the one summed
    over: output row ``m`` reads row ``m`` of A only (a 1x1 conv in NHWC, a channels-last
    Linear as in ConvNeXt), and batch axes are pointwise. Anything else stops."""
    rank = ctx.rank(node.output[0])
    aligned = _aligned(node, inputs, ctx)
    if rank is None or len(aligned) != 1 or inputs[0] is None or (ctx.rank(node.input[0]) or 0) < 2:
        return None
    track = aligned[0]
    return track if all(x < rank - 1 for x in track.axes) else None


def _shape_preserving(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> _Track | None:
    """Any other op with one spatial input and an output of the same known shape."""
    tracked = [(name, t) for name, t in zip(node.input, inputs) if t is not None]
    if len(tracked) != 1 or not node.output:
        return None
    name, track = tracked[0]
    before, after = ctx.shape(name), ctx.shape(node.output[0])
    if before is None or before != after or any(d is None for d in before):
        return None
    return track


def _stop(node: onnx.NodeProto, inputs: list[_Track | None], ctx: _Context) -> None:
    return None


_HANDLERS: dict[str, Handler] = {
    "Conv": _window,
    "MaxPool": _window,
    "AveragePool": _window,
    "LpPool": _window,
    "ConvInteger": _window,
    "QLinearConv": _window,
    "ConvTranspose": _conv_transpose,
    "SpaceToDepth": _space_to_depth,
    "DepthToSpace": _depth_to_space,
    "Resize": _resize,
    "Upsample": _resize,
    "Pad": _pad,
    "Slice": _slice,
    "Transpose": _transpose,
    "Reshape": _reshape,
    "Flatten": _reshape,
    "Squeeze": _reshape,
    "Unsqueeze": _reshape,
    "Concat": _concat,
    "Split": _split,
    "Softmax": _softmax,
    "LogSoftmax": _softmax,
    "Hardmax": _softmax,
    "MatMul": _matmul,
    **{
        op: _reduce
        for op in (
            "ReduceMean ReduceMax ReduceMin ReduceSum ReduceProd ReduceL1 ReduceL2 ReduceLogSum "
            "ReduceLogSumExp ReduceSumSquare ArgMax ArgMin"
        ).split()
    },
}

# Spatially pointwise: output (n, c, h, w) reads only inputs at (h, w).
_POINTWISE = set(
    (
        "Add Sub Mul Div Pow Sum Max Min Mean Mod BitShift Where Equal Less LessOrEqual Greater "
        "GreaterOrEqual And Or Xor Not Relu LeakyRelu PRelu Elu Selu Celu ThresholdedRelu Clip "
        "Sigmoid HardSigmoid HardSwish Mish Tanh Softplus Softsign Gelu Erf Exp Log Sqrt Reciprocal "
        "Abs Neg Sign Floor Ceil Round Sin Cos Shrink IsNaN IsInf Identity Dropout Cast CastLike "
        "BatchNormalization InstanceNormalization LayerNormalization GroupNormalization "
        "MeanVarianceNormalization LpNormalization LRN QuantizeLinear DequantizeLinear"
    ).split()
)

# Ops whose outputs have no spatial layout left.
_STOP = set(
    (
        "GlobalAveragePool GlobalMaxPool GlobalLpPool Gemm Shape Size NonZero TopK RoiAlign MaxRoiPool "
        "NonMaxSuppression Einsum"
    ).split()
)
