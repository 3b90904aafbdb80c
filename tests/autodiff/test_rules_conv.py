"""Rules of onnxviz/autodiff/rules/conv.py: Conv and ConvTranspose over strides (with a
remainder), asymmetric pads, dilation, groups (depthwise too), auto_pad, 1-D/2-D/3-D and an
absent kernel_shape.

onnxruntime CPU has no double kernel for Conv or ConvTranspose, so the directional checks run
in float32 with the harness's float32 eps (1e-2) and tolerance (2e-3; convolutions are
linear in each input, so the central difference has only rounding error). Each case is
also compared with torch autograd in float64 (the same float32 inputs): a float32 gradient
must agree to 1e-4 of the gradient's largest magnitude.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxviz.autodiff import gradient_model
from tests.autodiff.harness import assert_standard_backward, backward_ops, check_op, session, single_op_model
from tests.autodiff.test_rules_elementwise import seeded_rng  # noqa: F401  (autouse fixture)
from tests.autodiff.test_rules_elementwise import case, f32, normal

TORCH_RTOL = 1e-4


def conv(x, w, bias=True, wrt=None, constants=(), name="", **attrs):
    inputs = {"x": f32(normal(*x)), "w": f32(normal(*w))}
    if bias:
        inputs["b"] = f32(normal(w[0]))
    label = name or f"Conv-x{x}-w{w}" + "".join(f"-{k}{v}" for k, v in attrs.items())
    return case("Conv", inputs, wrt=wrt, attrs=attrs, constants=constants, id=label)


def conv_t(x, w, bias=True, name="", **attrs):
    group = attrs.get("group", 1)
    inputs = {"x": f32(normal(*x)), "w": f32(normal(*w))}
    if bias:
        inputs["b"] = f32(normal(w[1] * group))
    label = name or f"ConvTranspose-x{x}-w{w}" + "".join(f"-{k}{v}" for k, v in attrs.items())
    return case("ConvTranspose", inputs, attrs=attrs, id=label)


CONV_CASES = [
    conv((2, 3, 6, 7), (4, 3, 3, 3), pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
    conv((1, 3, 6, 7), (4, 3, 3, 3), name="Conv-no-kernel_shape-no-pads"),
    conv((1, 2, 7, 9), (3, 2, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
    conv((1, 2, 7, 9), (3, 2, 3, 3), strides=[3, 3], name="Conv-7x9-k3-s3-remainder"),
    conv((1, 2, 8, 10), (3, 2, 3, 3), strides=[3, 3], pads=[1, 0, 0, 2], name="Conv-s3-asym-pads"),
    conv((1, 2, 7, 8), (3, 2, 3, 2), strides=[2, 1], pads=[0, 1, 2, 0], name="Conv-asym-pads-s(2,1)"),
    conv((1, 2, 9, 9), (3, 2, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2]),
    conv((1, 2, 11, 10), (3, 2, 3, 3), dilations=[2, 2], strides=[2, 3], pads=[1, 2, 0, 1],
         name="Conv-dilation2-s(2,3)-asym"),
    conv((1, 4, 6, 6), (6, 2, 3, 3), group=2, pads=[1, 1, 1, 1]),
    conv((1, 4, 7, 7), (6, 2, 3, 3), group=2, strides=[2, 2], name="Conv-group2-s2"),
    conv((1, 3, 7, 7), (3, 1, 3, 3), group=3, pads=[1, 1, 1, 1], name="Conv-depthwise-s1"),
    conv((1, 3, 9, 8), (3, 1, 3, 3), group=3, strides=[2, 2], pads=[1, 1, 1, 1], name="Conv-depthwise-s2"),
    conv((1, 3, 9, 9), (3, 1, 5, 5), group=3, strides=[2, 2], pads=[2, 2, 2, 2], name="Conv-depthwise-5x5-s2"),
    conv((1, 3, 6, 6), (6, 1, 3, 3), group=3, pads=[1, 1, 1, 1], name="Conv-depthwise-multiplier2"),
    conv((2, 4, 5, 5), (6, 4, 1, 1), name="Conv-pointwise"),
    conv((1, 2, 7, 9), (3, 2, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2], name="Conv-SAME_UPPER-s2"),
    conv((1, 2, 7, 9), (3, 2, 4, 4), auto_pad="SAME_LOWER", strides=[2, 2], name="Conv-SAME_LOWER-k4-s2"),
    conv((1, 2, 6, 7), (3, 2, 4, 4), auto_pad="SAME_UPPER", name="Conv-SAME_UPPER-k4-s1"),
    conv((1, 2, 6, 7), (3, 2, 4, 4), auto_pad="SAME_LOWER", name="Conv-SAME_LOWER-k4-s1"),
    conv((1, 2, 7, 9), (3, 2, 3, 3), auto_pad="VALID", strides=[2, 2], name="Conv-VALID-s2"),
    conv((1, 2, 5, 5), (3, 2, 1, 1), pads=[1, 2, 1, 0], name="Conv-pads-beyond-kernel"),
    conv((2, 3, 10), (4, 3, 3), strides=[2], pads=[1, 0], name="Conv-1d-s2"),
    conv((1, 2, 4, 5, 6), (3, 2, 2, 3, 3), strides=[1, 2, 1], pads=[0, 1, 1, 1, 0, 1], name="Conv-3d"),
    conv((1, 3, 7, 7), (3, 1, 3, 3), group=3, wrt=["x"], constants=["w", "b"], pads=[1, 1, 1, 1],
         name="Conv-const-weight-depthwise"),
    conv((1, 4, 7, 7), (6, 2, 3, 3), group=2, wrt=["x"], constants=["w", "b"], pads=[1, 0, 1, 2],
         name="Conv-const-weight-group2-asym"),
]

CONV_T_CASES = [
    conv_t((1, 3, 4, 5), (3, 2, 3, 3)),
    conv_t((1, 3, 4, 5), (3, 2, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    conv_t((1, 2, 3, 4), (2, 2, 3, 3), strides=[3, 2], pads=[1, 2, 0, 1], name="ConvTranspose-asym-s(3,2)"),
    conv_t((1, 2, 3, 3), (2, 2, 3, 3), strides=[3, 2], output_shape=[10, 8], name="ConvTranspose-output_shape"),
    conv_t((1, 2, 3, 3), (2, 2, 3, 3), strides=[2, 2], output_shape=[6, 7], auto_pad="SAME_UPPER",
           name="ConvTranspose-output_shape-SAME_UPPER"),
    conv_t((1, 4, 3, 4), (4, 3, 3, 3), group=2, strides=[2, 2], dilations=[2, 1], pads=[0, 1, 1, 0],
           name="ConvTranspose-group2-dilation"),
    conv_t((1, 3, 4, 4), (3, 1, 3, 3), group=3, strides=[2, 2], pads=[1, 1, 1, 1],
           name="ConvTranspose-depthwise"),
    conv_t((1, 2, 3, 4), (2, 3, 3, 3), strides=[2, 2], auto_pad="SAME_UPPER", name="ConvTranspose-SAME_UPPER"),
    conv_t((1, 2, 3, 4), (2, 3, 3, 3), strides=[2, 2], auto_pad="SAME_LOWER", name="ConvTranspose-SAME_LOWER"),
    conv_t((2, 3, 5), (3, 2, 4), strides=[3], pads=[2, 1], output_padding=[2], name="ConvTranspose-1d"),
]

CASES = CONV_CASES + CONV_T_CASES


@pytest.mark.parametrize("op, inputs, wrt, attrs, opset, constants", CASES)
def test_rule_directional_derivative(op, inputs, wrt, attrs, opset, constants) -> None:
    check_op(op, inputs, wrt, attrs, constants=constants, opset=opset, seeds=(0,))


# --- against torch autograd -----------------------------------------------------------


def _same_pads(size, k, s, d, lower):
    total = max(0, (-(-size // s) - 1) * s + d * (k - 1) + 1 - size)
    head = total - total // 2 if lower else total // 2
    return head, total - head


def torch_conv(torch, op, inputs, attrs):
    """The forward op in torch (float64), pads applied with F.pad so they may be asymmetric."""
    F = torch.nn.functional
    x, w = inputs["x"], inputs["w"]
    b = inputs.get("b")
    n = x.dim() - 2
    kernel = list(w.shape[2:])
    strides = attrs.get("strides", [1] * n)
    dil = attrs.get("dilations", [1] * n)
    group = attrs.get("group", 1)
    conv_fn = [F.conv1d, F.conv2d, F.conv3d][n - 1]
    if op == "Conv":
        auto = attrs.get("auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pairs = [_same_pads(x.shape[2 + i], kernel[i], strides[i], dil[i], auto == "SAME_LOWER")
                     for i in range(n)]
        else:
            pads = attrs.get("pads", [0] * 2 * n)
            pairs = [(pads[i], pads[n + i]) for i in range(n)]
        flat = [p for pair in reversed(pairs) for p in pair]  # F.pad: last axis first
        return conv_fn(F.pad(x, flat), w, b, stride=strides, dilation=dil, groups=group)
    # ConvTranspose: the full transposed convolution, cropped by the pads onnxruntime uses
    tconv = [F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d][n - 1]
    op_pad = attrs.get("output_padding", [0] * n)
    full = tconv(x, w, None, stride=strides, dilation=dil, groups=group)
    full = F.pad(full, [p for i in reversed(range(n)) for p in (0, op_pad[i])])
    lengths = [s * (h - 1) + o + d * (k - 1) + 1
               for h, s, o, d, k in zip(x.shape[2:], strides, op_pad, dil, kernel)]
    if "output_shape" in attrs or attrs.get("auto_pad") in ("SAME_UPPER", "SAME_LOWER"):
        target = attrs.get("output_shape") or [h * s for h, s in zip(x.shape[2:], strides)]
        totals = [max(0, f - t) for f, t in zip(lengths, target)]
        begin = [t // 2 if attrs.get("auto_pad") == "SAME_UPPER" else t - t // 2 for t in totals]
        end = [t - b_ for t, b_ in zip(totals, begin)]
    else:
        pads = attrs.get("pads", [0] * 2 * n)
        begin, end = pads[:n], pads[n:]
    out = attrs.get("output_shape") or [f - b_ - e for f, b_, e in zip(lengths, begin, end)]
    # a longer output_shape appends zeros
    full = F.pad(full, [p for i in reversed(range(n)) for p in (0, max(0, begin[i] + out[i] - lengths[i]))])
    y = full[(Ellipsis, *(slice(b_, b_ + o) for b_, o in zip(begin, out)))]
    if b is not None:
        y = y + b.reshape(1, -1, *[1] * n)
    return y


@pytest.mark.parametrize("op, inputs, wrt, attrs, opset, constants", CASES)
def test_matches_torch_autograd(op, inputs, wrt, attrs, opset, constants) -> None:
    torch = pytest.importorskip("torch")
    model = single_op_model(op, inputs, attrs, constants, opset=opset)
    feeds = {k: v for k, v in inputs.items() if k not in constants}
    y = session(model).run(["y0"], feeds)[0]
    v = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    gg = gradient_model(model, wrt=wrt)
    got = session(gg.model).run([gg.gradients[k] for k in wrt], {**feeds, gg.seed: v})
    tin = {k: torch.tensor(val, dtype=torch.float64, requires_grad=True) for k, val in inputs.items()}
    ty = torch_conv(torch, op, tin, attrs)
    assert tuple(ty.shape) == y.shape
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=1e-4 * np.abs(y).max())
    ty.backward(torch.from_numpy(v.astype(np.float64)))
    for name, g in zip(wrt, got):
        want = tin[name].grad.numpy()
        np.testing.assert_allclose(g, want, rtol=0, atol=TORCH_RTOL * np.abs(want).max(), err_msg=name)


# --- structure ----------------------------------------------------------------------------


def test_backward_graphs_use_standard_ops_only() -> None:
    assert_standard_backward(CASES)


def test_stride1_input_gradient_is_a_conv_with_a_precomputed_kernel() -> None:
    """Constant weights: dX is one Conv reading a new flipped-kernel initializer."""
    model = single_op_model("Conv", {"x": f32(normal(1, 3, 7, 7)), "w": f32(normal(3, 1, 3, 3))},
                            {"group": 3, "pads": [1, 1, 1, 1]}, constants=["w"])
    ops = [n.op_type for n in backward_ops(model, ["x"])]
    assert ops == ["Conv", "Identity"]


def test_strided_input_gradient_is_a_conv_transpose_with_explicit_pads() -> None:
    model = single_op_model("Conv", {"x": f32(normal(1, 2, 7, 9)), "w": f32(normal(3, 2, 3, 3))},
                            {"strides": [3, 3], "pads": [1, 0, 0, 2]}, constants=["w"])
    (node, _) = backward_ops(model, ["x"])
    attrs = {a.name: list(a.ints) for a in node.attribute if a.ints}
    assert node.op_type == "ConvTranspose"
    assert "output_shape" not in attrs
    # H=7: O=(7+1+0-3)//3+1=2, R=7+1-3-3=2 -> pads end 0, output_padding 2;
    # W=9: O=(9+0+2-3)//3+1=3, R=9+0-6-3=0 -> pads end 0, output_padding 0
    assert attrs["pads"] == [1, 0, 0, 0] and attrs["output_padding"] == [2, 0]


def test_strided_depthwise_input_gradient_is_a_stride1_conv() -> None:
    """Depthwise, stride 2: dY spread onto the input grid (Resize + 0/1 mask), then a plain
    stride-1 Conv: 3-5x faster on onnxruntime CPU than a depthwise ConvTranspose."""
    model = single_op_model("Conv", {"x": f32(normal(1, 4, 9, 9)), "w": f32(normal(4, 1, 5, 5))},
                            {"group": 4, "strides": [2, 2], "pads": [2, 2, 2, 2]}, constants=["w"])
    ops = [n.op_type for n in backward_ops(model, ["x"])]
    assert ops == ["Resize", "Mul", "Conv", "Identity"]
