"""Rules of onnxviz/autodiff/rules/normalization.py. BatchNormalization and LayerNormalization in
float64 (onnxruntime has double kernels); InstanceNormalization and LRN in float32 with the
harness's float32 tolerance (float kernels only); LRN's even sizes and 3-D inputs (which
onnxruntime refuses) in onnx's reference evaluator against a numpy forward, and odd sizes
against torch autograd in float64.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from onnxviz.autodiff import gradient_model
from onnxviz.errors import GradientError
from onnxviz.graph.load import make_model
from tests.autodiff.harness import check_op, single_op_model
from tests.autodiff.test_rules_elementwise import seeded_rng  # noqa: F401  (autouse fixture)
from tests.autodiff.test_rules_elementwise import case, f32, normal, run_vjp, uniform


def batch_norm(x_shape, **attrs):
    c = x_shape[1]
    inputs = {"x": normal(*x_shape), "s": normal(c), "b": normal(c), "m": normal(c), "v": uniform(0.5, 2, c)}
    return case("BatchNormalization", inputs, wrt=["x", "s", "b"], attrs=attrs, constants=["m", "v"],
                id=f"BatchNormalization-{x_shape}")


CASES = [
    batch_norm((2, 3, 4, 4)),
    batch_norm((2, 3), epsilon=0.1),
    batch_norm((2, 3, 5)),
    case("BatchNormalization", {"x": normal(2, 3, 4, 4), "s": normal(3), "b": normal(3), "m": normal(3),
                                "v": uniform(0.5, 2, 3)}, wrt=["x"], constants=["s", "b", "m", "v"],
         id="BatchNormalization-x-only"),
    case("LayerNormalization", {"x": normal(2, 3, 4), "s": normal(4), "b": normal(4)}),
    case("LayerNormalization", {"x": normal(2, 3, 4), "s": normal(3, 4), "b": normal(4)}, attrs={"axis": 1},
         id="LayerNormalization-axis1"),
    case("LayerNormalization", {"x": normal(2, 3, 4), "s": normal(4)}, attrs={"epsilon": 0.1},
         id="LayerNormalization-no-bias"),
    case("InstanceNormalization", {"x": f32(normal(2, 3, 4, 5)), "s": f32(normal(3)), "b": f32(normal(3))},
         id="InstanceNormalization-f32"),
    case("LRN", {"x": f32(normal(2, 5, 3, 3))}, attrs={"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 1.0},
         id="LRN-size3-f32"),
    case("LRN", {"x": f32(normal(2, 7, 3, 2))}, attrs={"size": 5, "alpha": 0.3, "beta": 0.6, "bias": 2.0},
         id="LRN-size5-f32"),
]


@pytest.mark.parametrize("op, inputs, wrt, attrs, opset, constants", CASES)
def test_rule_directional_derivative(op, inputs, wrt, attrs, opset, constants) -> None:
    check_op(op, inputs, wrt, attrs, constants=constants, opset=opset)


@pytest.mark.parametrize("shape", [(2, 3, 6), (2, 3, 4, 5)])
def test_instance_norm_matches_torch(shape) -> None:
    """float64 reference (the float32 finite difference is poorly conditioned on 6 elements)."""
    torch = pytest.importorskip("torch")
    x, s, b, dy = normal(*shape), normal(3), normal(3), normal(*shape)
    tx, ts, tb = (torch.tensor(v, requires_grad=True) for v in (x, s, b))
    torch.nn.functional.instance_norm(tx, weight=ts, bias=tb, eps=0.01).backward(torch.tensor(dy))
    feeds = {"x": f32(x), "s": f32(s), "b": f32(b)}
    model = single_op_model("InstanceNormalization", feeds, {"epsilon": 0.01})
    grads = run_vjp(model, feeds, ["x", "s", "b"], f32(dy))
    for ours, ref in zip(grads, (tx, ts, tb)):
        np.testing.assert_allclose(ours, ref.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_batch_norm_training_mode_raises() -> None:
    c = 3
    model = single_op_model(
        "BatchNormalization",
        {"x": normal(2, c, 4, 4), "s": normal(c), "b": normal(c), "m": normal(c), "v": uniform(0.5, 2, c)},
        {"training_mode": 1}, constants=["s", "b", "m", "v"], n_outputs=3)
    with pytest.raises(GradientError, match="eval mode"):
        gradient_model(model, output="y0", wrt=["x"])


def lrn_numpy(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """LRN as the ONNX spec writes it: window c - floor((size-1)/2) .. c + ceil((size-1)/2)."""
    before = (size - 1) // 2
    padded = np.pad(x**2, [(0, 0), (before, size - 1 - before)] + [(0, 0)] * (x.ndim - 2))
    window = sum(padded[:, i:i + x.shape[1]] for i in range(size))
    return x / (bias + alpha / size * window) ** beta


class LRN(OpRun):
    """onnx's reference LRN loops over the batch axis instead of the channels; this is the spec."""

    op_domain = ""

    def _run(self, x, alpha=None, beta=None, bias=None, size=None):
        return (lrn_numpy(x, size, alpha, beta, bias).astype(x.dtype),)


@pytest.mark.parametrize("shape, size", [((2, 6, 3, 3), 2), ((2, 6, 3, 3), 4), ((2, 6, 3, 3), 3),
                                         ((2, 7, 5), 4), ((2, 7, 5), 3)])
def test_lrn_against_spec_in_reference_evaluator(shape, size) -> None:
    """Even sizes (onnxruntime refuses them) and 3-D inputs (onnxruntime's LRN is 4-D only): the
    gradient graph runs in onnx's reference evaluator in float64, against a numpy forward."""
    x = normal(*shape)
    alpha, beta, bias = 0.4, 0.75, 1.5
    model = single_op_model("LRN", {"x": f32(x)}, {"size": size, "alpha": alpha, "beta": beta, "bias": bias})
    gg = gradient_model(model, wrt=["x"])
    rng = np.random.default_rng(3)
    v, u = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    ref = ReferenceEvaluator(_as_double(gg.model), new_ops=[LRN])
    (grad,) = ref.run([gg.gradients["x"]], {"x": x, gg.seed: v})
    eps = 1e-6
    f = lambda z: lrn_numpy(z, size, np.float32(alpha), np.float32(beta), np.float32(bias))  # noqa: E731
    numeric = np.sum(v * (f(x + eps * u) - f(x - eps * u))) / (2 * eps)
    # relative to the sum of |terms|: the directional derivative itself may nearly cancel
    assert abs(np.sum(u * grad) - numeric) <= 1e-7 * np.sum(np.abs(u * grad))


def _as_double(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with float32 tensors declared and stored as float64."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for info in [*out.graph.input, *out.graph.output, *out.graph.value_info]:
        if info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            info.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    for i, init in enumerate(out.graph.initializer):
        if init.data_type == onnx.TensorProto.FLOAT:
            out.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    return out


@pytest.mark.parametrize("size", [3, 5])
def test_lrn_matches_torch(size) -> None:
    """Odd sizes: torch's local_response_norm pads the same way as ONNX."""
    torch = pytest.importorskip("torch")
    x = normal(2, 7, 4, 4)
    dy = normal(2, 7, 4, 4)
    attrs = {"size": size, "alpha": 0.4, "beta": 0.75, "bias": 1.5}
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.local_response_norm(tx, size, 0.4, 0.75, 1.5).backward(torch.tensor(dy))
    model = single_op_model("LRN", {"x": f32(x)}, attrs)
    (dx,) = run_vjp(model, {"x": f32(x)}, ["x"], f32(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)


def _dynamic_norm_model() -> onnx.ModelProto:
    """x (N, 4, H, W) float32 -> LRN -> InstanceNormalization -> PRelu -> ReduceMax(2,3) -> Gemm."""
    f = onnx.TensorProto.FLOAT
    rng = np.random.default_rng(9)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in [
        ("s", (4,)), ("b", (4,)), ("slope", (4, 1, 1)), ("w", (3, 4)), ("c", (3,))]]
    nodes = [
        helper.make_node("LRN", ["x"], ["l"], size=3, alpha=0.3),
        helper.make_node("InstanceNormalization", ["l", "s", "b"], ["n"]),
        helper.make_node("PRelu", ["n", "slope"], ["p"]),
        helper.make_node("ReduceMax", ["p"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["m", "w", "c"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", f, ["N", 4, "H", "W"])],
                              [helper.make_tensor_value_info("y", f, None)], initializer=inits)
    return make_model(graph, opset=17)


def test_dynamic_batch_and_spatial_size() -> None:
    """Per-sample gradients with a symbolic batch and spatial size (instance-norm counts at run time)."""
    model = _dynamic_norm_model()
    x = f32(normal(3, 4, 5, 5))
    dy = f32(normal(3, 3))
    (batched,) = run_vjp(model, {"x": x}, ["x"], dy)
    for i in range(3):
        (single,) = run_vjp(model, {"x": x[i:i + 1]}, ["x"], dy[i:i + 1])
        np.testing.assert_allclose(batched[i:i + 1], single, rtol=1e-5, atol=1e-6)
    from tests.autodiff.harness import directional_check

    analytic, numeric = directional_check(model, {"x": f32(normal(2, 4, 3, 6))}, ["x"], eps=1e-2)
    assert abs(analytic - numeric) <= 5e-3 * abs(numeric)


def test_layer_norm_dynamic_sequence() -> None:
    """LayerNormalization + batched MatMul with symbolic batch and sequence length, float64."""
    d = onnx.TensorProto.DOUBLE
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(rng.standard_normal(s), n) for n, s in [
        ("s", (4,)), ("b", (4,)), ("w", (4, 6))]]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "s", "b"], ["n"]),
        helper.make_node("MatMul", ["n", "w"], ["h"]),
        helper.make_node("LogSoftmax", ["h"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", d, ["N", "T", 4])],
                              [helper.make_tensor_value_info("y", d, None)], initializer=inits)
    model = make_model(graph, opset=17)
    x, dy = normal(3, 5, 4), normal(3, 5, 6)
    (batched,) = run_vjp(model, {"x": x}, ["x"], dy)
    for i in range(3):
        (single,) = run_vjp(model, {"x": x[i:i + 1]}, ["x"], dy[i:i + 1])
        np.testing.assert_allclose(batched[i:i + 1], single, rtol=1e-10, atol=1e-12)
    from tests.autodiff.harness import directional_check

    analytic, numeric = directional_check(model, {"x": x}, ["x"])
    assert abs(analytic - numeric) <= 1e-6 * abs(numeric)
