"""receptive_fields against a brute-force measurement.

Models have positive weights and zero biases, so an input pixel influences
an output element exactly when it lies in that element's receptive field.
We feed one image per input pixel (a one-hot spike), record which outputs
become non-zero, and compare the windows of interior outputs (those whose
window does not touch the image border) with size, jump and start.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fixtures import GraphBuilder, gap_gemm, image, merged_stacks, nhwc_model, ort_run, stack, two_branch_concat, vgg_like
from onnxviz.graph.receptive import ReceptiveField, receptive_fields

SIZE = 32


def influence(model, size: int = SIZE, layout: str = "NCHW") -> np.ndarray:
    """Bool array [in_row, in_col, out_row, out_col]: does that input pixel change that output?"""
    pixels = size * size
    x = np.zeros((pixels, 1, size, size), np.float32)
    x[np.arange(pixels), 0, np.arange(pixels) // size, np.arange(pixels) % size] = 1.0
    if layout == "NHWC":
        x = x.transpose(0, 2, 3, 1).copy()
    out = ort_run(model, x)[0]
    assert out.min() >= 0, "positive weights must give non-negative outputs"
    changed = (out != 0).any(axis=1)  # (pixels, out_rows, out_cols)
    return changed.reshape(size, size, *changed.shape[1:])


def windows(changed: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index along ``axis`` (0: rows, 1: columns): (indices, lo, hi) of interior windows.

    A window is interior when it cannot have been clipped by the border: it
    starts at least one "gap" (the largest distance between influencing pixels,
    > 1 with dilation) from either edge. The other axis is fixed at the middle
    output whose window is interior.
    """
    size = changed.shape[0]
    along = changed.any(axis=1 - axis)  # (input index along axis, out_rows, out_cols)
    across = changed.any(axis=axis)
    gap = max(_largest_gap(along), _largest_gap(across))
    hit = along.any(axis=0)
    lo = np.where(hit, along.argmax(axis=0), -1)
    hi = np.where(hit, size - 1 - along[::-1].argmax(axis=0), -1)
    lo_x = across.argmax(axis=0)
    hi_x = size - 1 - across[::-1].argmax(axis=0)
    interior = hit & (lo >= gap) & (hi <= size - 1 - gap) & (lo_x >= gap) & (hi_x <= size - 1 - gap)
    other = np.nonzero(interior.any(axis=axis))[0]
    assert other.size, "no interior output: make the input larger"
    middle = other[other.size // 2]
    line = (slice(None), middle) if axis == 0 else (middle, slice(None))
    keep = interior[line]
    index = np.nonzero(keep)[0]
    return index, lo[line][keep], hi[line][keep]


def _largest_gap(along: np.ndarray) -> int:
    """Largest distance between consecutive influencing pixels of any output (1 when dense)."""
    gap = 1
    flat = along.reshape(along.shape[0], -1)
    for column in flat.T:
        hits = np.nonzero(column)[0]
        if hits.size > 1:
            gap = max(gap, int(np.diff(hits).max()))
    return gap


def check_axis(changed: np.ndarray, axis: int, field: ReceptiveField, exact: bool) -> None:
    """Compare measured windows along one axis with size, jump and start.

    exact: every interior window is centred at ``start + o * jump``. Otherwise
    (upsampling) the centres repeat with some period p: the centre moves by
    ``p * jump`` every p outputs and ``start`` is the mean offset over whole periods.
    """
    size, jump, start = (Fraction(v[axis]).limit_denominator(64) for v in (field.size, field.jump, field.start))
    index, lo, hi = windows(changed, axis)
    centre = {int(o): Fraction(int(lo[i] + hi[i]), 2) for i, o in enumerate(index)}
    assert int((hi - lo + 1).max()) == size, f"axis {axis}: size {int((hi - lo + 1).max())} != {size}"
    if exact:
        # A later layer's padding can clip a window away from the image border
        # (pixels a floor-mode pool never reads); clipped windows are smaller.
        full = [int(o) for o, w in zip(index, hi - lo + 1) if w == size]
        assert len(full) >= 3, f"axis {axis}: too few unclipped outputs"
        offsets = {centre[o] - o * jump for o in full}
        assert offsets == {start}, f"axis {axis}: centres - o * jump = {sorted(offsets)} != start {start}"
        return
    period = _period(centre)
    run = sorted(centre)[: (len(centre) // period) * period]
    assert (centre[run[0] + period] - centre[run[0]]) / period == jump, f"axis {axis}: jump"
    offsets = [centre[o] - o * jump for o in run]
    assert sum(offsets) / len(offsets) == start, f"axis {axis}: mean offset {sum(offsets) / len(offsets)} != {start}"


def _period(centre: dict[int, Fraction]) -> int:
    """Smallest p such that centre[o + p] - centre[o] is the same for every o."""
    for p in range(1, 9):
        steps = {centre[o + p] - centre[o] for o in centre if o + p in centre}
        if len(steps) == 1 and len(centre) >= 2 * p:
            return p
    raise AssertionError("window centres are not periodic")


def check(model, name: str | None = None, exact: bool = True, layout: str = "NCHW") -> ReceptiveField:
    """Brute-force check of the receptive field of ``name`` (default: the output)."""
    name = name or model.graph.output[0].name
    field = receptive_fields(model)[name]
    changed = influence(model, layout=layout)
    for axis in (0, 1):
        check_axis(changed, axis, field, exact)
    return field


def conv(k, s=1, p=0, d=1, **kw):
    """A Conv spec; ``p`` is an int or a 4-list of pads."""
    pads = [p] * 4 if isinstance(p, int) else list(p)
    kernel = list(k) if isinstance(k, tuple) else [k, k]
    return ("Conv", {"kernel_shape": kernel, "strides": [s, s], "pads": pads, "dilations": [d, d], **kw})


def pool(op, k, s=1, p=0, **kw):
    pads = [p] * 4 if isinstance(p, int) else list(p)
    return (op, {"kernel_shape": [k, k], "strides": [s, s], "pads": pads, **kw})


def deconv(k, s, **kw):
    return ("ConvTranspose", {"kernel_shape": [k, k], "strides": [s, s], **kw})


def resize(scale, mode, **kw):
    return ("Resize", {"scales": float(scale), "mode": mode, **kw})


def auto(op, k, s, mode):
    return (op, {"kernel_shape": [k, k], "strides": [s, s], "auto_pad": mode})


# (id, layers, exact): exact=False for upsampling ops, whose windows are not on a regular grid
CASES = [
    ("conv3", [conv(3, p=1)], True),
    ("conv3_stride2", [conv(3, s=2, p=1)], True),
    ("conv5_asymmetric_pads", [conv(5, s=2, p=[2, 1, 0, 3])], True),
    ("conv_rectangular_kernel", [conv((5, 3), s=1, p=[1, 0, 2, 1])], True),
    ("dilated", [conv(3, p=2, d=2), conv(3, d=3)], True),
    ("same_upper_even_kernel", [auto("Conv", 4, 2, "SAME_UPPER")], True),
    ("same_lower_even_kernel", [auto("Conv", 4, 2, "SAME_LOWER")], True),
    ("same_upper_odd_total", [auto("Conv", 3, 1, "SAME_UPPER"), auto("Conv", 2, 1, "SAME_UPPER")], True),
    ("same_lower_odd_total", [auto("Conv", 2, 1, "SAME_LOWER"), auto("Conv", 3, 2, "SAME_LOWER")], True),
    ("valid", [auto("Conv", 3, 2, "VALID")], True),
    ("maxpool", [pool("MaxPool", 3, s=2, p=1)], True),
    ("maxpool_ceil_dilated", [pool("MaxPool", 2, s=2, ceil_mode=1), pool("MaxPool", 2, s=1, dilations=[2, 2])], True),
    ("maxpool_same_upper", [conv(3), auto("MaxPool", 2, 2, "SAME_UPPER")], True),
    ("avgpool", [pool("AveragePool", 3, s=2, p=1, count_include_pad=1)], True),
    ("avgpool_exclude_pad", [pool("AveragePool", 3, s=1, p=[1, 0, 0, 1])], True),
    ("lppool", [("LpPool", {"kernel_shape": [2, 2], "strides": [2, 2], "p": 2})], True),
    (
        "deep_chain",
        [conv(3), ("Relu", {}), pool("MaxPool", 2, s=2), conv(3, s=2, p=1), pool("AveragePool", 3, p=1), conv(1)],
        True,
    ),
    ("pad_then_conv", [("Pad", {"pads": [0, 0, 2, 1, 0, 0, 0, 3]}), conv(3, s=2)], True),
    ("resize_nearest", [conv(3, s=2, p=1), resize(2, "nearest")], False),
    ("resize_linear", [conv(3, s=2, p=1), resize(2, "linear")], False),
    (
        "resize_nearest_asymmetric_floor",
        [conv(3, s=2, p=1), resize(2, "nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
        False,
    ),
    ("conv_transpose_k4_s2", [conv(3, s=2, p=1), deconv(4, 2, pads=[1, 1, 1, 1])], False),
    ("conv_transpose_k3_s2", [conv(3, s=2, p=1), deconv(3, 2, pads=[1, 1, 0, 0], output_padding=[1, 1])], False),
    ("resize_nearest_3x_ceil", [conv(3, s=2, p=1), resize(3, "nearest", nearest_mode="round_prefer_ceil")], False),
    (
        "resize_linear_3x_asymmetric",
        [conv(3, s=2, p=1), resize(3, "linear", coordinate_transformation_mode="asymmetric")],
        False,
    ),
    ("conv_transpose_same_upper", [conv(3, s=2, p=1), deconv(3, 2, auto_pad="SAME_UPPER")], False),
    ("conv_transpose_same_lower", [conv(3, s=2, p=1), deconv(4, 2, auto_pad="SAME_LOWER", dilations=[2, 2])], False),
    ("space_to_depth", [conv(3, p=1), ("SpaceToDepth", {"blocksize": 2})], True),
    ("depth_to_space", [conv(3, s=2, p=1, filters=4), ("DepthToSpace", {"blocksize": 2})], False),
    ("conv_transpose_s1", [deconv(3, 1, pads=[1, 1, 1, 1])], True),
]


@pytest.mark.parametrize("layers,exact", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_stack_matches_brute_force(layers, exact):
    model = stack(layers, size=SIZE, positive=True)
    check(model, exact=exact)


def test_every_intermediate_tensor_matches_brute_force():
    layers = [conv(3, p=1), ("Relu", {}), pool("MaxPool", 2, s=2), conv(3, s=2, p=[0, 1, 2, 1]), conv(2, d=2)]
    model = stack(layers, size=SIZE, positive=True)
    fields = receptive_fields(model)
    for i in range(len(layers)):
        truncated = stack(layers[: i + 1], size=SIZE, positive=True)
        field = check(truncated)
        assert fields[f"l{i}"] == field


@pytest.mark.parametrize("merge", ["Concat", "Add", "Sum"])
def test_merged_branches_take_the_union(merge):
    # different sizes and (via asymmetric pads) different centres: the union is their hull
    wide = [conv(5, p=[3, 0, 1, 4])]
    narrow = [conv(3, p=[0, 2, 2, 0])]
    model = merged_stacks([wide, narrow], merge=merge, size=SIZE, positive=True)
    field = check(model)
    fields = receptive_fields(model)
    assert field.size[0] > max(fields["b0_l0"].size[0], fields["b1_l0"].size[0]) - 1
    assert fields["b0_l0"] != fields["b1_l0"]


def test_concat_of_branches_with_different_depths():
    model = merged_stacks([[conv(3, p=1), conv(3, p=1)], [pool("MaxPool", 3, p=1)]], size=SIZE, positive=True)
    field = check(model)
    assert field == ReceptiveField(size=(5, 5), jump=(1, 1), start=(0.0, 0.0))


def test_nhwc_input_through_transpose():
    layers = [conv((3, 5), s=2, p=[1, 2, 1, 2]), pool("MaxPool", 2, s=2)]
    model = stack(layers, size=SIZE, positive=True, layout="NHWC")
    field = check(model, layout="NHWC")
    assert field.size == (3 + 2, 5 + 2)  # H and W told apart through the Transpose
    assert field.jump == (4, 4)


def _channels_last_linear(contract_width: bool = False):
    """ConvNeXt's pointwise layer: conv 3x3 s2, permute to NHWC, MatMul by a (C, C') weight,
    permute back, conv 3x3. With ``contract_width`` the MatMul sums over W instead."""
    b = GraphBuilder(seed=0, positive=True)
    x = b.node("Conv", ["x", b.weight("c0_w", [4, 1, 3, 3]), b.bias("c0_b", 4)], "c0",
               kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    if contract_width:  # (N, 4, 16, 16) @ (16, 16): row h of each channel mixes all of W
        y = b.node("MatMul", [x, b.weight("mm_w", [16, 16])], "mm")
    else:
        nhwc = b.node("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])
        y = b.node("Transpose", [b.node("MatMul", [nhwc, b.weight("mm_w", [4, 6])], "mm")], "back",
                   perm=[0, 3, 1, 2])
    out = b.node("Conv", [y, b.weight("c1_w", [2, 16 if contract_width else 6, 3, 3]), b.bias("c1_b", 2)],
                 "c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return b.model([image("x", channels=1, height=SIZE)], [out], 17)


def test_channels_last_matmul_is_pointwise():
    field = check(_channels_last_linear())
    assert field == ReceptiveField(size=(7, 7), jump=(2, 2), start=(0.0, 0.0))
    assert "mm" in receptive_fields(_channels_last_linear())


def test_matmul_over_a_spatial_axis_stops():
    fields = receptive_fields(_channels_last_linear(contract_width=True))
    assert "c0" in fields and "mm" not in fields and "c1" not in fields


def test_hand_computed_values():
    # conv 3x3 s2 p1: size 3, jump 2, start 1 - 1 = 0; then maxpool 2 s2: size 3 + 2 = 5, jump 4, start 0 + 0.5*2 = 1
    model = stack([conv(3, s=2, p=1), pool("MaxPool", 2, s=2)], size=SIZE)
    fields = receptive_fields(model)
    assert fields["x"] == ReceptiveField((1, 1), (1, 1), (0.0, 0.0))
    assert fields["l0"] == ReceptiveField((3, 3), (2, 2), (0.0, 0.0))
    assert fields["l1"] == ReceptiveField((5, 5), (4, 4), (1.0, 1.0))


def test_align_corners_jump():
    # 15 -> 30 elements with the corners aligned: output o samples input o * 14 / 29
    layers = [conv(3, s=2), resize(2, "linear", coordinate_transformation_mode="align_corners")]
    field = receptive_fields(stack(layers, size=SIZE))["l1"]
    assert field.jump == (2 * 14 / 29,) * 2
    assert field.size == (3 + 2, 3 + 2)  # two taps 2 pixels apart


def test_upsampling_gives_fractional_jump():
    model = stack([resize(2, "nearest")], size=8)
    field = receptive_fields(model)["l0"]
    assert field.jump == (0.5, 0.5)
    assert field.size == (1, 1)
    assert field.start == (-0.25, -0.25)  # output o reads input (o + 0.5) / 2 - 0.5 on average


@pytest.mark.parametrize("builder", [gap_gemm, vgg_like, two_branch_concat, nhwc_model])
def test_stops_where_spatial_layout_ends(builder):
    model = builder()
    fields = receptive_fields(model)
    for name in ("gap", "flat", "logits", "fc1", "prob"):
        assert name not in fields
    spatial = {"gap_gemm": "relu2", "vgg_like": "pool2", "two_branch_concat": "cat_relu", "nhwc_model": "relu"}
    assert spatial[model.graph.name] in fields


def test_nhwc_fixture_same_upper():
    fields = receptive_fields(nhwc_model(size=16))
    # 3x3 stride 2 SAME_UPPER on 16: total pad 1, begin 0, so window centre of output 0 is pixel 1
    assert fields["nchw"] == ReceptiveField((1, 1), (1, 1), (0.0, 0.0))
    assert fields["conv"] == ReceptiveField((3, 3), (2, 2), (1.0, 1.0))


def test_two_branch_fixture_union():
    fields = receptive_fields(two_branch_concat())
    assert fields["a"].size == (1, 1)
    assert fields["b2"].size == (7, 7)  # 3 then 3 dilated by 2: 1 + 2 + 4
    assert fields["cat"] == fields["b2"]


@st.composite
def chains(draw):
    """Random conv/pool chains with any strides, paddings and dilations."""
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["Conv", "MaxPool", "AveragePool"]))
        k = draw(st.integers(1, 4))
        s = draw(st.integers(1, 2))
        d = draw(st.integers(1, 2)) if op != "AveragePool" else 1
        limit = k - 1 if op != "Conv" else d * (k - 1)  # pooling pads must be smaller than the kernel
        pads = [draw(st.integers(0, limit)) for _ in range(4)]
        if op == "Conv":
            layers.append(conv(k, s=s, p=pads, d=d))
        else:
            layers.append(pool(op, k, s=s, p=pads, **({"dilations": [d, d]} if d > 1 else {})))
    return layers


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains())
def test_random_chains_match_brute_force(layers):
    model = stack(layers, size=SIZE, positive=True)
    field = receptive_fields(model)[model.graph.output[0].name]
    assume(all(field.size[a] + 5 * field.jump[a] <= SIZE - 2 for a in (0, 1)))  # room for interior outputs
    check(model)
