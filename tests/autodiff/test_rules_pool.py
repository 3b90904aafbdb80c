"""Rules of onnxviz/autodiff/rules/pool.py: MaxPool (ScatterElements path at opset 16+, the
polyphase Pad/Sum path below), AveragePool (count_include_pad 0/1, ceil_mode, pads, auto_pad,
dilations), LpPool and the global pools.

MaxPool runs in float64 (onnxruntime has a double MaxPool kernel): eps 1e-6, rtol 1e-6, with
inputs at least 0.1 apart so no window's maximum changes within +-eps. AveragePool, LpPool
and the global average/Lp pools have float kernels only: float32 with the harness's float32
eps and tolerance (AveragePool is linear, so only rounding enters; LpPool is curved, so its
eps is 3e-3). Every windowed case is also compared with torch autograd in float64.

Ties: MaxPool gives a window's whole gradient to its first maximum in row-major kernel order
(torch's rule); checked by hand on tiny inputs and against torch.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxviz.autodiff import driver, gradient_model
from onnxviz.graph.load import make_model
from tests.autodiff.harness import assert_standard_backward, backward_ops, check_op, session, single_op_model
from tests.autodiff.test_rules_elementwise import seeded_rng  # noqa: F401  (autouse fixture)
from tests.autodiff.test_rules_elementwise import away, case, distinct, f32, normal


def maxpool(shape, opset=17, name="", **attrs):
    label = name or f"MaxPool-{shape}" + "".join(f"-{k}{v}" for k, v in attrs.items())
    return case("MaxPool", {"x": distinct(*shape)}, attrs=attrs, opset=opset, id=f"{label}-op{opset}")


def avgpool(shape, name="", **attrs):
    label = name or f"AveragePool-{shape}" + "".join(f"-{k}{v}" for k, v in attrs.items())
    return case("AveragePool", {"x": f32(normal(*shape))}, attrs=attrs, opset=19, id=label)


MAX_ATTRS = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[3, 3]),  # 7x9: a remainder on both axes
    dict(kernel_shape=[3, 2], strides=[2, 3], pads=[0, 1, 2, 0]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1),
    dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 1], dilations=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 1], dilations=[2, 1], pads=[2, 1, 1, 0], ceil_mode=1),
    dict(kernel_shape=[2, 3], strides=[3, 4]),  # gaps between windows
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[4, 4], strides=[2, 2], auto_pad="SAME_LOWER"),
]
MAX_CASES = [maxpool((2, 3, 7, 9), opset=op, **a) for a in MAX_ATTRS for op in (17, 13)] + [
    maxpool((2, 3, 11), kernel_shape=[3], strides=[2], pads=[1, 1], name="MaxPool-1d"),
    maxpool((1, 2, 5, 6, 7), kernel_shape=[2, 3, 2], strides=[2, 2, 1], pads=[0, 1, 1, 1, 1, 0],
            name="MaxPool-3d"),
    maxpool((1, 2, 5, 6, 7), opset=13, kernel_shape=[2, 3, 2], strides=[2, 2, 1],
            dilations=[1, 1, 2], name="MaxPool-3d-dilated"),
]

AVG_CASES = [avgpool((2, 3, 7, 9), count_include_pad=c, **a)
             for c in (0, 1)
             for a in [dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                       dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
                       dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1),
                       dict(kernel_shape=[3, 3], strides=[3, 3], pads=[1, 1, 1, 1], ceil_mode=1)]] + [
    avgpool((2, 3, 8, 8), kernel_shape=[2, 2], strides=[2, 2]),
    avgpool((2, 3, 7, 9), kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    avgpool((2, 3, 7, 9), kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    avgpool((2, 3, 7, 9), kernel_shape=[4, 4], strides=[2, 2], auto_pad="SAME_LOWER", count_include_pad=1),
    avgpool((2, 3, 7, 9), kernel_shape=[3, 3], strides=[2, 1], dilations=[2, 1], pads=[2, 1, 1, 0]),
    avgpool((2, 3, 11), kernel_shape=[3], strides=[2], pads=[1, 0], ceil_mode=1, name="AveragePool-1d"),
    avgpool((1, 2, 5, 6, 7), kernel_shape=[2, 3, 2], strides=[2, 2, 1], pads=[0, 1, 1, 1, 1, 0],
            name="AveragePool-3d"),
]

OTHER_CASES = [
    case("LpPool", {"x": f32(normal(2, 3, 7, 9))}, attrs=dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
         opset=18, id="LpPool-p2"),
    case("LpPool", {"x": f32(normal(2, 3, 7, 9))}, attrs=dict(kernel_shape=[2, 2], strides=[2, 2], p=3),
         opset=18, id="LpPool-p3"),
    case("LpPool", {"x": f32(away(normal(2, 3, 7, 9)))}, attrs=dict(kernel_shape=[3, 2], p=1, strides=[1, 2]),
         opset=18, id="LpPool-p1"),  # |x| sums: inputs kept 0.05 away from the kink at 0
    case("GlobalAveragePool", {"x": f32(normal(2, 3, 5, 6))}),
    case("GlobalMaxPool", {"x": f32(distinct(2, 3, 5, 6))}),
    case("GlobalLpPool", {"x": f32(normal(2, 3, 5, 6))}),
]

CASES = MAX_CASES + AVG_CASES + OTHER_CASES


@pytest.mark.parametrize("op, inputs, wrt, attrs, opset, constants", CASES)
def test_rule_directional_derivative(op, inputs, wrt, attrs, opset, constants) -> None:
    eps = 3e-3 if "Lp" in op else None
    check_op(op, inputs, wrt, attrs, constants=constants, opset=opset, eps=eps, seeds=(0,))


# --- against torch autograd ------------------------------------------------------------------


def torch_pool(torch, op, x, attrs):
    """The op in torch (float64); pads via F.pad (-inf for max) unless count_include_pad=0."""
    F = torch.nn.functional
    n = x.dim() - 2
    k = attrs["kernel_shape"]
    s = attrs.get("strides", [1] * n)
    d = attrs.get("dilations", [1] * n)
    ceil = bool(attrs.get("ceil_mode", 0))
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pairs = []
        for h, kk, ss in zip(x.shape[2:], k, s):
            total = max(0, (-(-h // ss) - 1) * ss + kk - h)
            head = total - total // 2 if auto == "SAME_LOWER" else total // 2
            pairs.append((head, total - head))
    else:
        pads = attrs.get("pads", [0] * 2 * n)
        pairs = [(pads[i], pads[n + i]) for i in range(n)]
    if op == "MaxPool":
        padded = F.pad(x, [p for pair in reversed(pairs) for p in pair], value=-float("inf"))
        pool = [F.max_pool1d, F.max_pool2d, F.max_pool3d][n - 1]
        y = pool(padded, k, s, 0, d, ceil_mode=ceil)
        # onnxruntime (and torch with symmetric pads) drop a ceil-mode window starting in the end padding
        keep = [min(o, (h + pb - 1) // ss + 1) if ceil else o
                for o, h, (pb, _), ss in zip(y.shape[2:], x.shape[2:], pairs, s)]
        return y[(Ellipsis, *(slice(0, o) for o in keep))]
    if op == "AveragePool":
        assert all(a == b for a, b in pairs) and all(dd == 1 for dd in d), "torch needs symmetric pads"
        pool = [F.avg_pool1d, F.avg_pool2d, F.avg_pool3d][n - 1]
        return pool(x, k, s, [a for a, _ in pairs], ceil_mode=ceil,
                    count_include_pad=bool(attrs.get("count_include_pad", 0)))
    raise AssertionError(op)


def _torch_cases():
    good = []
    for c in MAX_CASES + AVG_CASES:
        op, inputs, wrt, attrs, opset, constants = c.values
        pads = attrs.get("pads")
        n = len(attrs["kernel_shape"])
        if op == "AveragePool" and (attrs.get("dilations") or attrs.get("auto_pad") or
                                    (pads and pads[:n] != pads[n:])):
            continue
        good.append(c)
    return good


@pytest.mark.parametrize("op, inputs, wrt, attrs, opset, constants", _torch_cases())
def test_matches_torch_autograd(op, inputs, wrt, attrs, opset, constants) -> None:
    torch = pytest.importorskip("torch")
    model = single_op_model(op, inputs, attrs, opset=opset)
    y = session(model).run(["y0"], inputs)[0]
    v = np.random.default_rng(4).standard_normal(y.shape).astype(y.dtype)
    gg = gradient_model(model, wrt=["x"])
    (got,) = session(gg.model).run([gg.gradients["x"]], {**inputs, gg.seed: v})
    x = torch.tensor(inputs["x"], dtype=torch.float64, requires_grad=True)
    ty = torch_pool(torch, op, x, attrs)
    np.testing.assert_allclose(ty.detach().numpy(), y, rtol=1e-6, atol=1e-6)
    ty.backward(torch.from_numpy(v.astype(np.float64)))
    want = x.grad.numpy()
    # float64 MaxPool only moves dY values (sums of a few): exact to rounding
    atol = 1e-12 if inputs["x"].dtype == np.float64 else 1e-5 * np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)


# --- ties -------------------------------------------------------------------------------------

TIES_X = np.array([[[[1.0, 3.0, 3.0, 0.0],
                     [3.0, 2.0, 3.0, 1.0],
                     [0.0, 3.0, 1.0, 1.0]]]])
TIES_DY = np.array([[[[1.0, 2.0, 3.0],
                      [4.0, 5.0, 6.0]]]])
# 2x2 windows, stride 1: the first 3 of each window in row-major order gets its dY
TIES_DX = np.array([[[[0.0, 3.0, 3.0, 0.0],
                      [4.0, 0.0, 11.0, 0.0],
                      [0.0, 0.0, 0.0, 0.0]]]])


def _vjp(model, x, dy):
    gg = gradient_model(model, wrt=["x"])
    return session(gg.model).run([gg.gradients["x"]], {"x": x, gg.seed: dy})[0]


@pytest.mark.parametrize("opset", [17, 13])
def test_max_pool_ties_go_to_the_first_maximum(opset) -> None:
    model = single_op_model("MaxPool", {"x": TIES_X}, {"kernel_shape": [2, 2]}, opset=opset)
    np.testing.assert_array_equal(_vjp(model, TIES_X, TIES_DY), TIES_DX)


@pytest.mark.parametrize("x, attrs", [
    (TIES_X, {"kernel_shape": [2, 2]}),
    (-np.ones((1, 1, 3, 3)), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),  # padding never wins
    (np.zeros((1, 2, 5, 5)), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    (np.round(np.random.default_rng(0).standard_normal((1, 3, 7, 7))), {"kernel_shape": [3, 3], "strides": [2, 2]}),
])
def test_max_pool_ties_match_torch(x, attrs) -> None:
    torch = pytest.importorskip("torch")
    model = single_op_model("MaxPool", {"x": x}, attrs)
    y = session(model).run(["y0"], {"x": x})[0]
    dy = np.arange(1.0, y.size + 1).reshape(y.shape)
    tx = torch.tensor(x, requires_grad=True)
    torch_pool(torch, "MaxPool", tx, attrs).backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(_vjp(model, x, dy), tx.grad.numpy())


def test_global_max_pool_ties_go_to_the_first_maximum() -> None:
    x = f32([[[[1, 5, 5], [5, 0, 2]], [[0, 0, 0], [0, 0, 0]]]])
    model = single_op_model("GlobalMaxPool", {"x": x})
    dx = _vjp(model, x, f32([[[[2.0]], [[3.0]]]]))
    np.testing.assert_array_equal(dx, f32([[[[0, 2, 0], [0, 0, 0]], [[3, 0, 0], [0, 0, 0]]]]))


# --- structure ----------------------------------------------------------------------------------


def test_max_pool_backward_has_no_indices_output() -> None:
    """A MaxPool with an Indices output loses onnxruntime's NCHWc kernel (10-30x slower)."""
    for opset in (17, 13):
        model = single_op_model("MaxPool", {"x": f32(distinct(1, 4, 9, 9))},
                                {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, opset=opset)
        nodes = backward_ops(model, ["x"])
        assert not any(n.op_type == "MaxPool" and len(n.output) > 1 for n in nodes)
        assert all(n.domain in ("", "ai.onnx") and not n.op_type.endswith("Grad") for n in nodes)


def test_backward_graphs_use_standard_ops_only() -> None:
    assert_standard_backward(CASES)


def test_average_pool_float32_gradient_is_one_depthwise_conv() -> None:
    """Static channels: dY/count spread onto the input grid and one all-ones depthwise Conv."""
    model = single_op_model("AveragePool", {"x": f32(normal(1, 4, 8, 8))},
                            {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    ops = [n.op_type for n in backward_ops(model, ["x"])]
    assert ops.count("Conv") == 1 and "ConvTranspose" not in ops


# --- run-time shapes --------------------------------------------------------------------------


def _conv_pool_flatten(channels="C") -> onnx.ModelProto:
    """x (N, 2, 8, 8) -> Conv 3x3 -> AveragePool 2x2 -> MaxPool 3x3 s2 p1 -> Flatten -> y."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["c"], ["a"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("MaxPool", ["a"], ["m"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["m"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "conv_pool", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=[w])
    return make_model(graph, opset=17)


def test_dynamic_batch_gradient_is_per_sample() -> None:
    model = _conv_pool_flatten()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    y = session(model).run(None, {"x": x})[0]
    dy = rng.standard_normal(y.shape).astype(np.float32)
    batched = _vjp(model, x, dy)
    assert batched.shape == x.shape
    for i in range(3):
        single = _vjp(model, x[i:i + 1], dy[i:i + 1])
        np.testing.assert_allclose(batched[i:i + 1], single, rtol=1e-6, atol=1e-6)


def test_average_pool_with_unknown_channels_uses_the_polyphase_path() -> None:
    """No static channel count: the gradient is spread with Pads and a Sum (any dtype)."""
    x = f32(normal(2, 3, 7, 9))
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 0}
    node = helper.make_node("AveragePool", ["x"], ["y"], **attrs)
    graph = helper.make_graph(
        [node], "avg", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, "C", 7, 9])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    model = make_model(graph, opset=17)
    assert "Conv" not in [n.op_type for n in backward_ops(model, ["x"])]
    reference = single_op_model("AveragePool", {"x": x}, attrs)
    dy = f32(normal(2, 3, 4, 5))
    np.testing.assert_allclose(_vjp(model, x, dy), _vjp(reference, x, dy), rtol=1e-6, atol=1e-6)


@pytest.fixture
def seed_without_static_dims(monkeypatch):
    """Emulates the driver fix reported to the lead: onnx 1.23's shape inference keeps a
    ceil-mode window that starts in the end padding (onnxruntime drops it, as torch does), so
    a seed declared with the inferred static shape conflicts with the real one at session
    creation. Declared with unknown dims, it does not."""
    monkeypatch.setattr(driver, "_dims", lambda shape: None if shape is None else [None] * len(shape))


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_ceil_mode_window_starting_in_the_padding_is_dropped(op, seed_without_static_dims) -> None:
    attrs = {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 2, 1], "ceil_mode": 1}
    x = distinct(2, 3, 7, 9) if op == "MaxPool" else f32(normal(2, 3, 7, 9))
    model = single_op_model(op, {"x": x}, attrs, opset=19)
    assert session(model).run(None, {"x": x})[0].shape == (2, 3, 4, 5)  # onnx infers (2, 3, 5, 5)
    check_op(op, {"x": x}, ["x"], attrs, opset=19, seeds=(0,))
