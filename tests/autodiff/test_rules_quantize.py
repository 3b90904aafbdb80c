"""QuantizeLinear / DequantizeLinear (QDQ int8 models): the straight-through estimator.

References: torch's fake-quantize autograd (the clipped straight-through estimator of
quantization-aware training) for Q -> DQ pairs and a small QDQ network, a hand computation
for a pair with two different scales. Finite differences do not apply: rounding is flat
almost everywhere.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxviz.autodiff import blocking_ops, gradient_model
from onnxviz.errors import GradientError
from onnxviz.graph.load import make_model
from tests.autodiff.harness import session

RNG_SEED = 0


def _qdq_model(scale: np.ndarray, zero: np.ndarray, shape=(2, 3, 4, 5), axis: int = 1,
               out_scale: np.ndarray | None = None, opset: int = 17) -> onnx.ModelProto:
    """x -> QuantizeLinear(scale, zero) -> DequantizeLinear(out_scale or scale, zero) -> y."""
    attrs = {"axis": axis} if scale.ndim else {}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q", **attrs),
             helper.make_node("DequantizeLinear", ["q", "s2", "zp"], ["y"], name="dq", **attrs)]
    inits = [numpy_helper.from_array(scale.astype(np.float32), "s"), numpy_helper.from_array(zero, "zp"),
             numpy_helper.from_array((scale if out_scale is None else out_scale).astype(np.float32), "s2")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], initializer=inits)
    return make_model(graph, opset=opset)


def _vjp(model: onnx.ModelProto, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gg = gradient_model(model, wrt=["x"])
    y, dx = session(gg.model).run([gg.output, gg.gradients["x"]], {"x": x, gg.seed: dy})
    return y, dx


def _inputs(shape=(2, 3, 4, 5)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(RNG_SEED)
    # wide enough that a good share of values saturate at each end
    return (rng.standard_normal(shape) * 3).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def _assert_same_straight_through(dx: np.ndarray, ref: np.ndarray) -> None:
    """The same values stopped, and the passed ones equal up to float32 rounding (dy / s * s)."""
    np.testing.assert_array_equal(dx == 0, ref == 0)
    np.testing.assert_allclose(dx, ref, rtol=1e-6)


@pytest.mark.parametrize("dtype, zero, lo, hi", [
    (np.uint8, 128, 0, 255),
    (np.uint8, 20, 0, 255),
    (np.int8, 0, -128, 127),
    (np.int8, -30, -128, 127),
])
def test_per_tensor_pair_matches_torch_fake_quantize(dtype, zero, lo, hi) -> None:
    torch = pytest.importorskip("torch")
    x, dy = _inputs()
    scale = 0.02
    y, dx = _vjp(_qdq_model(np.array(scale), np.array(zero, dtype)), x, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.fake_quantize_per_tensor_affine(tx, scale, zero, lo, hi)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-6)
    saturated = (tx.grad.numpy() == 0).mean()
    assert 0.2 < saturated < 0.9, saturated  # the case exercises both the pass and the stop
    _assert_same_straight_through(dx, tx.grad.numpy())


def test_per_channel_pair_matches_torch_fake_quantize() -> None:
    torch = pytest.importorskip("torch")
    x, dy = _inputs()
    scale = np.array([0.01, 0.02, 0.05], np.float32)
    zero = np.array([-5, 0, 7], np.int8)
    y, dx = _vjp(_qdq_model(scale, zero, axis=1), x, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.fake_quantize_per_channel_affine(tx, torch.from_numpy(scale), torch.from_numpy(zero).int(), 1, -128, 127)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-6)
    _assert_same_straight_through(dx, tx.grad.numpy())


@pytest.mark.parametrize("opset", [13, 17])
def test_pair_with_two_scales_hand_computation(opset) -> None:
    """Q by s1, DQ by s2: dx = dy * s2 / s1 where round(x / s1) + zp is representable."""
    x, dy = _inputs()
    s1, s2, zero = 0.03, 0.05, 10
    model = _qdq_model(np.array(s1), np.array(zero, np.uint8), out_scale=np.array(s2), opset=opset)
    _, dx = _vjp(model, x, dy)
    level = np.round(x / np.float32(s1)) + zero
    expected = dy * np.float32(s2) / np.float32(s1) * ((level >= 0) & (level <= 255))
    np.testing.assert_allclose(dx, expected, rtol=1e-6)


def test_small_qdq_network_matches_torch_fake_quant_net() -> None:
    """x -> QDQ -> Conv (dequantized int8 weights) -> Relu -> QDQ -> GlobalAveragePool ->
    Gemm, against the same net in torch with fake-quantized activations."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    wq = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    w_scale = np.array([0.004, 0.006, 0.003, 0.005], np.float32)
    fc = rng.standard_normal((5, 4)).astype(np.float32)
    f, i8, u8 = TensorProto.FLOAT, np.int8, np.uint8
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
        helper.make_node("Conv", ["xd", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "rs", "rz"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "rs", "rz"], ["rd"]),
        helper.make_node("GlobalAveragePool", ["rd"], ["g"]),
        helper.make_node("Flatten", ["g"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc"], ["logits"], transB=1),
    ]
    inits = {"xs": np.float32(0.02), "xz": u8(128), "wq": wq, "ws": w_scale, "wz": np.zeros(4, i8),
             "rs": np.float32(0.01), "rz": u8(0), "fc": fc}
    graph = helper.make_graph(nodes, "qdq_net", [helper.make_tensor_value_info("x", f, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", f, ["N", 5])],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = make_model(graph, opset=17)
    x = (rng.standard_normal((2, 3, 8, 8)) * 1.5).astype(np.float32)
    seed = rng.standard_normal((2, 5)).astype(np.float32)
    logits, dx = _vjp(model, x, seed)

    tx = torch.tensor(x, requires_grad=True)
    w = torch.from_numpy(wq.astype(np.float32) * w_scale[:, None, None, None])
    a = torch.fake_quantize_per_tensor_affine(tx, 0.02, 128, 0, 255)
    r = torch.relu(torch.nn.functional.conv2d(a, w, padding=1))
    r = torch.fake_quantize_per_tensor_affine(r, 0.01, 0, 0, 255)
    out = r.mean(dim=(2, 3)) @ torch.from_numpy(fc).T
    out.backward(torch.from_numpy(seed))
    np.testing.assert_allclose(logits, out.detach().numpy(), rtol=1e-4, atol=1e-5)
    ref = tx.grad.numpy()
    assert np.abs(ref).max() > 0 and (ref == 0).mean() > 0.01  # some input values saturate
    np.testing.assert_allclose(dx, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


def _through_int_cast() -> onnx.ModelProto:
    """y = Cast(Cast(x, int32), float): the output depends on x only through integers."""
    nodes = [helper.make_node("Cast", ["x"], ["i"], name="to_int", to=TensorProto.INT32),
             helper.make_node("Cast", ["i"], ["y"], name="to_float", to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "int_path", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    return make_model(graph, opset=17)


def test_a_path_through_integers_only_is_an_error_not_a_zero_gradient() -> None:
    model = _through_int_cast()
    with pytest.raises(GradientError, match="only through ops that pass no gradient.*Cast 'to_int'"):
        gradient_model(model, wrt=["x"])
    assert blocking_ops(model) == [("Cast", "to_int")]


def test_quantize_to_float8_has_no_rule() -> None:
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="fp8"),
         helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])],
        "fp8", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[numpy_helper.from_array(np.float32(0.1), "s"),
                     helper.make_tensor("zp", TensorProto.FLOAT8E4M3FN, [], [0])])
    with pytest.raises(GradientError, match="FLOAT8E4M3FN.*integer types only"):
        gradient_model(make_model(graph, opset=19), wrt=["x"])
