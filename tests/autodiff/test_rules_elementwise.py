"""Rules of onnxviz/autodiff/rules/elementwise.py and activation.py, and the checks shared by
every rule test: one line per (op, shapes, attrs) case, checked by the harness's directional
derivative <u, J^T v> against a central finite difference of <v, f(x + eps u)>.

float64 wherever onnxruntime CPU has a double kernel for the forward op; float32 (with the
harness's float32 eps and tolerance) for Mean, Erf, Gelu, Celu and the opset-10 Clip, which
have float kernels only. HardSigmoid, HardSwish, Elu, Selu, ThresholdedRelu, Softplus,
Softsign and Mish run in double only from opset 18 (onnxruntime expands their function
bodies), so their rows use opset 18. Inputs stay away from kinks (|x| > 0.05 for Relu, away from Clip's
bounds, distinct values for Max/Min); ties and modes are checked by hand computations.
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxviz.autodiff import RULES, gradient_model
from onnxviz.autodiff import driver
from onnxviz.graph.load import make_model
from tests.autodiff.harness import assert_standard_backward, backward_ops, check_op, session, single_op_model

RNG = np.random.default_rng(20240601)
SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


# --- inputs ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def seeded_rng(request):
    """Draws made while a test runs depend on that test alone, not on which tests ran before.

    (The tables are drawn once, at import.) Other rule test modules import this fixture.
    """
    global RNG
    saved = RNG
    RNG = np.random.default_rng(zlib.crc32(request.node.name.encode()))
    yield
    RNG = saved



def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
    return np.asarray(RNG.standard_normal(shape) * scale)


def uniform(lo: float, hi: float, *shape: int) -> np.ndarray:
    return RNG.uniform(lo, hi, shape)


def away(x: np.ndarray, points=(0.0,), gap: float = 0.05) -> np.ndarray:
    """Push values within ``gap`` of any of ``points`` out to distance ``gap``."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap)
    return x


def distinct(*shape: int) -> np.ndarray:
    """Values at least 0.1 apart, shuffled (no ties for Max/Min/ReduceMax)."""
    n = int(np.prod(shape))
    return RNG.permutation(np.arange(n) * 0.1 - n * 0.05).reshape(shape) + RNG.uniform(0, 0.02)


def f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def case(op: str, inputs: dict, wrt=None, attrs=None, opset: int = 17, constants=(), id: str = ""):
    """One table row; ``wrt`` defaults to every non-constant input."""
    wrt = [k for k, v in inputs.items() if v is not None and k not in constants] if wrt is None else wrt
    return pytest.param(op, inputs, list(wrt), dict(attrs or {}), opset, tuple(constants), id=id or op)


def run_vjp(model: onnx.ModelProto, feeds: dict, wrt: list[str], seed: np.ndarray,
            mode: str = "plain", output: str | None = None) -> list[np.ndarray]:
    """The gradients of <seed, output> from the appended backward graph."""
    gg = gradient_model(model, output=output, wrt=wrt, mode=mode)
    return session(gg.model).run([gg.gradients[w] for w in wrt], {**feeds, gg.seed: seed})


# --- the table -------------------------------------------------------------------------

ELEMENTWISE_CASES = [
    case("Add", {"a": normal(3, 1, 5), "b": normal(4, 1)}, id="Add-(3,1,5)+(4,1)"),
    case("Add", {"a": normal(2, 3, 4, 4), "b": normal(3, 1, 1)}, id="Add-bias(3,1,1)"),
    case("Add", {"a": normal(3), "b": normal(2, 3)}, wrt=["a"], id="Add-only-a"),
    case("Sub", {"a": normal(4, 1), "b": normal(3, 1, 5)}, id="Sub-(4,1)-(3,1,5)"),
    case("Mul", {"a": normal(3, 1, 5), "b": normal(4, 1)}, id="Mul-(3,1,5)*(4,1)"),
    # (1,) rather than a 0-D scalar: the harness's x + eps * u turns 0-D arrays into numpy
    # scalars, which onnxruntime refuses; the 0-D case is in test_scalar_operand_gradient.
    case("Mul", {"a": normal(1), "b": normal(2, 3)}, id="Mul-(1,)"),
    case("Mul", {"a": normal(2, 3), "w": normal(3)}, wrt=["a"], constants=["w"], id="Mul-const"),
    case("Div", {"a": normal(3, 4), "b": away(normal(4), gap=0.5)}, id="Div-(3,4)/(4,)"),
    case("Div", {"a": normal(4), "b": away(normal(3, 4), gap=0.5)}, id="Div-(4,)/(3,4)"),
    case("Sum", {"a": normal(2, 3), "b": normal(3), "c": normal(2, 1)}, id="Sum-3"),
    # Mean: onnxruntime CPU has no double kernel
    case("Mean", {"a": f32(normal(2, 3)), "b": f32(normal(3)), "c": f32(normal(2, 1))}, id="Mean-3-f32"),
    case("Max", {"a": distinct(2, 3), "b": distinct(3) + 0.03, "c": distinct(2, 1) + 0.06}, id="Max-3"),
    case("Min", {"a": distinct(4, 1), "b": distinct(3, 1, 5) + 0.05}, id="Min-2"),
    case("Max", {"a": normal(2, 3)}, id="Max-1"),
    case("Where", {"c": RNG.random((2, 3)) > 0.5, "a": normal(2, 3), "b": normal(3)},
         wrt=["a", "b"], constants=["c"], id="Where"),
    case("Where", {"c": RNG.random((2, 1)) > 0.5, "a": normal(3), "b": normal(2, 3)},
         wrt=["a", "b"], constants=["c"], id="Where-broadcast-cond"),
    case("Expand", {"x": normal(3, 1), "s": np.array([2, 3, 4], np.int64)}, wrt=["x"],
         constants=["s"], id="Expand"),
]

CLIP_X = away(uniform(-3, 9, 3, 4, 5), points=(0.0, 6.0))
ACTIVATION_CASES = [
    case("Relu", {"x": away(normal(3, 4, 5))}),
    case("LeakyRelu", {"x": away(normal(3, 4))}, attrs={"alpha": 0.1}),
    case("LeakyRelu", {"x": away(normal(3, 4))}, attrs={"alpha": -0.3}, id="LeakyRelu-negative-alpha"),
    case("PRelu", {"x": away(normal(2, 3, 4)), "s": normal(3, 1)}, id="PRelu-(3,1)"),
    case("PRelu", {"x": away(normal(2, 3, 4)), "s": normal(4)}, id="PRelu-(4,)"),
    case("PRelu", {"x": away(normal(2, 3, 4)), "s": normal(3, 1)}, wrt=["x"], constants=["s"],
         id="PRelu-const-slope"),
    case("Clip", {"x": CLIP_X, "lo": np.array(0.0), "hi": np.array(6.0)}, wrt=["x"],
         constants=["lo", "hi"], id="Clip-relu6"),
    case("Clip", {"x": CLIP_X, "lo": None, "hi": np.array(6.0)}, wrt=["x"], constants=["hi"],
         id="Clip-max-only"),
    case("Clip", {"x": CLIP_X, "lo": np.array(0.0)}, wrt=["x"], constants=["lo"], id="Clip-min-only"),
    case("Clip", {"x": CLIP_X}, id="Clip-no-bounds"),
    case("Clip", {"x": CLIP_X, "lo": np.array(0.0), "hi": np.array(6.0)}, wrt=["x"], id="Clip-bound-inputs"),
    # opset 10: attribute form; Clip-6 has a float kernel only. The driver converts it to 17.
    case("Clip", {"x": f32(CLIP_X)}, attrs={"min": 0.0, "max": 6.0}, opset=10, id="Clip-attr-opset10"),
    case("Sigmoid", {"x": normal(3, 4, scale=2)}),
    case("HardSigmoid", {"x": away(uniform(-4, 4, 3, 4), points=(-2.5, 2.5))}, opset=18),
    case("HardSigmoid", {"x": away(uniform(-4, 4, 3, 4), points=(-4.0, 1.0))},
         attrs={"alpha": 0.3, "beta": 0.2}, opset=18,
         id="HardSigmoid-attrs"),
    case("HardSwish", {"x": away(uniform(-5, 5, 4, 5), points=(-3.0, 3.0))}, opset=18),
    case("Tanh", {"x": normal(3, 4)}),
    case("Elu", {"x": away(normal(3, 4))}, opset=18),
    case("Elu", {"x": away(normal(3, 4))}, attrs={"alpha": 0.5}, opset=18, id="Elu-0.5"),
    case("Selu", {"x": away(normal(3, 4))}, opset=18),
    case("Selu", {"x": away(normal(3, 4))}, attrs={"alpha": 1.2, "gamma": 2.0}, opset=18, id="Selu-attrs"),
    # Celu: float only in onnxruntime
    case("Celu", {"x": f32(away(normal(3, 4)))}, attrs={"alpha": 0.7}, id="Celu-f32"),
    case("ThresholdedRelu", {"x": away(normal(3, 4), points=(0.5,))}, attrs={"alpha": 0.5}, opset=18),
    case("Softplus", {"x": normal(3, 4, scale=2)}, opset=18),
    case("Softsign", {"x": away(normal(3, 4))}, opset=18),
    case("Erf", {"x": f32(normal(3, 4))}, id="Erf-f32"),
    case("Gelu", {"x": f32(normal(3, 4, scale=2))}, opset=20, id="Gelu-none-f32"),
    case("Gelu", {"x": f32(normal(3, 4, scale=2))}, attrs={"approximate": "tanh"}, opset=20,
         id="Gelu-tanh-f32"),
    case("Mish", {"x": normal(3, 4, scale=2)}, opset=18),
    case("Exp", {"x": normal(3, 4)}),
    case("Log", {"x": uniform(0.5, 2, 3, 4)}),
    case("Sqrt", {"x": uniform(0.5, 2, 3, 4)}),
    case("Reciprocal", {"x": away(normal(3, 4), gap=0.5)}),
    case("Neg", {"x": normal(3, 4)}),
    case("Abs", {"x": away(normal(3, 4))}),
    case("Pow", {"x": uniform(0.5, 2, 2, 3), "p": normal(3)}, id="Pow-both"),
    case("Pow", {"x": uniform(0.5, 2, 3, 1), "p": normal(2, 1, 4)}, id="Pow-broadcast-both"),
    case("Pow", {"x": normal(2, 3), "p": np.array(2.0)}, wrt=["x"], constants=["p"], id="Pow-square"),
    case("Pow", {"x": normal(2, 3), "p": np.array(3.0)}, wrt=["x"], constants=["p"], id="Pow-cube"),
    case("Pow", {"x": uniform(0.5, 2, 2, 3), "p": np.array(0.5)}, wrt=["x"], constants=["p"], id="Pow-sqrt"),
    case("Pow", {"x": normal(2, 3), "p": np.array(1.0)}, wrt=["x"], constants=["p"], id="Pow-one"),
    case("Pow", {"x": normal(2, 3), "p": np.array(3, np.int64)}, wrt=["x"], constants=["p"],
         id="Pow-int-exp"),
    case("Pow", {"x": uniform(0.5, 2, 2, 3), "p": np.array([1.5, 2.5, -1.0])}, wrt=["x"],
         constants=["p"], id="Pow-const-vector"),
]

CASES = ELEMENTWISE_CASES + ACTIVATION_CASES


@pytest.mark.parametrize("op, inputs, wrt, attrs, opset, constants", CASES)
def test_rule_directional_derivative(op, inputs, wrt, attrs, opset, constants) -> None:
    check_op(op, inputs, wrt, attrs, constants=constants, opset=opset)


# --- structure: standard ops only, masks from outputs ----------------------------------

OWN_MODULES = {f"onnxviz.autodiff.rules.{m}" for m in
               ("activation", "elementwise", "reduce", "softmax", "normalization", "linalg")}


def _all_cases():
    from tests.autodiff import test_rules_linalg, test_rules_normalization, test_rules_reduce

    return (CASES + test_rules_reduce.CASES + test_rules_linalg.CASES
            + test_rules_normalization.CASES)


def test_every_rule_has_a_case() -> None:
    own = {op for op, rule in RULES.items() if rule.__module__ in OWN_MODULES}
    covered = {c.values[0] for c in _all_cases()}
    assert own - covered == set()


def test_backward_graphs_use_standard_ops_only() -> None:
    """Default domain, no *Grad framework ops, no Where (a multiply by a mask is faster)."""
    assert_standard_backward(_all_cases(), forbidden=["Where"])


@pytest.mark.parametrize("mode", ["plain", "guided", "deconvnet"])
@pytest.mark.parametrize("op, inputs", [
    ("Relu", {"x": normal(2, 3)}),
    ("Clip", {"x": normal(2, 3), "lo": np.array(0.0), "hi": np.array(6.0)}),
    ("LeakyRelu", {"x": normal(2, 3)}),
    ("HardSigmoid", {"x": normal(2, 3)}),
    ("Elu", {"x": normal(2, 3)}),
    ("Selu", {"x": normal(2, 3)}),
])
def test_mask_read_from_output(op, inputs, mode) -> None:
    """The backward never reads the activation's input, so Conv+activation fusion survives."""
    model = single_op_model(op, inputs, constants=["lo", "hi"])
    for node in backward_ops(model, ["x"], mode=mode):
        assert "x" not in node.input, (op, mode, node.op_type)


# --- modes ------------------------------------------------------------------------------

def _pos(dy):
    return np.maximum(dy, 0)


def _sigmoid_slope(x):
    s = 1 / (1 + np.exp(-x))
    return s * (1 - s)


def _hard_swish_slope(x):
    return np.where(x >= 3, 1.0, np.where(x > -3, x / 3 + 0.5, 0.0))


#: op, inputs, attrs, {mode: dx(x, dy)}
MODE_CASES = [
    ("Relu", {}, {
        "plain": lambda x, dy: dy * (x > 0),
        "guided": lambda x, dy: _pos(dy) * (x > 0),
        "deconvnet": lambda x, dy: _pos(dy)}),
    ("Clip", {"lo": np.array(0.0), "hi": np.array(6.0)}, {
        "plain": lambda x, dy: dy * ((x > 0) & (x < 6)),
        "guided": lambda x, dy: _pos(dy) * ((x > 0) & (x < 6)),
        "deconvnet": lambda x, dy: _pos(dy)}),
    ("LeakyRelu", {"alpha": 0.1}, {  # attributes are float32
        "plain": lambda x, dy: dy * np.where(x > 0, 1.0, float(np.float32(0.1))),
        "guided": lambda x, dy: _pos(dy) * (x > 0),
        "deconvnet": lambda x, dy: _pos(dy)}),
    ("PRelu", {"s": np.array([0.2, -0.3, 0.5])}, {
        "plain": lambda x, dy: dy * np.where(x > 0, 1.0, np.array([[0.2], [-0.3], [0.5]])),
        "guided": lambda x, dy: _pos(dy) * (x > 0),
        "deconvnet": lambda x, dy: _pos(dy)}),
    ("ThresholdedRelu", {"alpha": 0.5}, {
        "plain": lambda x, dy: dy * (x > 0.5),
        "guided": lambda x, dy: _pos(dy) * (x > 0.5),
        "deconvnet": lambda x, dy: _pos(dy)}),
    ("HardSigmoid", {}, {
        "plain": lambda x, dy: dy * 0.2 * (np.abs(x) < 2.5),
        "guided": lambda x, dy: _pos(dy) * 0.2 * (np.abs(x) < 2.5),
        "deconvnet": lambda x, dy: 0.2 * _pos(dy)}),
    ("HardSwish", {}, {
        "plain": lambda x, dy: dy * _hard_swish_slope(x),
        "guided": lambda x, dy: _pos(dy) * np.maximum(_hard_swish_slope(x), 0),
        "deconvnet": lambda x, dy: _pos(dy)}),
    ("Elu", {"alpha": 0.5}, {
        "plain": lambda x, dy: dy * np.where(x > 0, 1.0, 0.5 * np.exp(x)),
        "guided": lambda x, dy: _pos(dy) * (x > 0),
        "deconvnet": lambda x, dy: _pos(dy)}),
    ("Selu", {}, {
        "plain": lambda x, dy: dy * np.where(x > 0, SELU_GAMMA, SELU_GAMMA * SELU_ALPHA * np.exp(x)),
        "guided": lambda x, dy: SELU_GAMMA * _pos(dy) * (x > 0),
        "deconvnet": lambda x, dy: SELU_GAMMA * _pos(dy)}),
    ("Sigmoid", {}, {
        mode: (lambda x, dy: dy * _sigmoid_slope(x)) for mode in ("plain", "guided", "deconvnet")}),
    ("Tanh", {}, {
        mode: (lambda x, dy: dy * (1 - np.tanh(x) ** 2)) for mode in ("plain", "guided", "deconvnet")}),
]


@pytest.mark.parametrize("mode", ["plain", "guided", "deconvnet"])
@pytest.mark.parametrize("op, extra, expected", MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_modes_match_hand_computation(op, extra, expected, mode) -> None:
    x = away(uniform(-5, 8, 2, 3, 4), points=(-3.0, -2.5, 0.0, 0.5, 2.5, 3.0, 6.0))
    x[0, 0, :4] = [0.3, -0.4, 7.0, 2.0]  # make sure every region is hit
    dy = normal(2, 3, 4)
    inputs = {"x": x}
    attrs = {}
    for key, value in extra.items():
        if isinstance(value, np.ndarray):
            inputs[key] = value.reshape(-1, 1) if op == "PRelu" else value
        else:
            attrs[key] = value
    model = single_op_model(op, inputs, attrs, constants=[k for k in inputs if k != "x"], opset=18)
    (dx,) = run_vjp(model, {"x": x}, ["x"], dy, mode=mode)
    np.testing.assert_allclose(dx, expected[mode](x, dy), rtol=1e-12, atol=1e-14)


def test_clip_attribute_form_without_conversion(monkeypatch) -> None:
    """The rule reads Clip's opset < 11 attributes when the driver did not convert the model."""
    monkeypatch.setattr(driver, "upgrade_opset", lambda model: model)
    x = f32(CLIP_X)
    model = single_op_model("Clip", {"x": x}, {"min": 0.0, "max": 6.0}, opset=10)
    assert [n.op_type for n in backward_ops(model, ["x"])][-1] == "Identity"
    dy = f32(normal(*x.shape))
    for mode, expected in [("plain", dy * ((x > 0) & (x < 6))), ("guided", _pos(dy) * ((x > 0) & (x < 6))),
                           ("deconvnet", _pos(dy))]:
        (dx,) = run_vjp(model, {"x": x}, ["x"], dy, mode=mode)
        np.testing.assert_array_equal(dx, expected)


# --- ties and kinks ---------------------------------------------------------------------


def test_relu_and_clip_kinks_pass_nothing() -> None:
    """Relu'(0) = 0 and Clip passes the gradient only strictly inside (min, max), as torch's ReLU6."""
    x = np.array([-1.0, 0.0, 0.5, 6.0, 7.0])
    dy = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    relu = single_op_model("Relu", {"x": x})
    np.testing.assert_array_equal(run_vjp(relu, {"x": x}, ["x"], dy)[0], [0, 0, 3, 4, 5])
    clip = single_op_model("Clip", {"x": x, "lo": np.array(0.0), "hi": np.array(6.0)},
                           constants=["lo", "hi"])
    np.testing.assert_array_equal(run_vjp(clip, {"x": x}, ["x"], dy)[0], [0, 0, 3, 0, 0])


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_ties_split_equally(op) -> None:
    """As torch.maximum: tied inputs share the gradient equally (n-ary: 1/#tied each)."""
    a = np.array([1.0, 2.0, 3.0, 5.0])
    b = np.array([1.0, 0.0, 3.0, 5.0])
    c = np.array([1.0, 9.0, -9.0, 5.0])
    if op == "Min":
        a, b, c = -a, -b, -c
    dy = np.array([6.0, 1.0, 2.0, 3.0])
    model = single_op_model(op, {"a": a, "b": b, "c": c})
    da, db, dc = run_vjp(model, {"a": a, "b": b, "c": c}, ["a", "b", "c"], dy)
    np.testing.assert_allclose(da, [2.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(db, [2.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(dc, [2.0, 1.0, 0.0, 1.0])


def test_max_tie_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, 2.0], [3.0, 3.0]])
    b = np.array([1.0, 3.0])
    dy = np.array([[1.0, 2.0], [3.0, 4.0]])
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    torch.maximum(ta, tb).backward(torch.tensor(dy))
    model = single_op_model("Max", {"a": a, "b": b})
    da, db = run_vjp(model, {"a": a, "b": b}, ["a", "b"], dy)
    np.testing.assert_allclose(da, ta.grad.numpy())
    np.testing.assert_allclose(db, tb.grad.numpy())


# --- dynamic batch -----------------------------------------------------------------------


def _dynamic_model() -> onnx.ModelProto:
    """x (N, 3, H, W) -> +bias -> Relu -> *bias -> Clip -> ReduceMean(2, 3) -> Gemm -> Softmax -> *scale."""
    d = onnx.TensorProto.DOUBLE
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(rng.standard_normal((3, 1, 1)), "bias"),
        numpy_helper.from_array(rng.standard_normal((3, 5)), "w"),
        numpy_helper.from_array(rng.standard_normal(5), "c"),
        numpy_helper.from_array(np.array(0.0), "lo"),
        numpy_helper.from_array(np.array(1.5), "hi"),
        numpy_helper.from_array(rng.standard_normal((1, 5)), "scale"),
    ]
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        # (Relu straight into a double Clip trips onnxruntime's FuseReluClip, which expects float)
        helper.make_node("Mul", ["r", "bias"], ["rb"]),
        helper.make_node("Clip", ["rb", "lo", "hi"], ["k"]),
        helper.make_node("ReduceMean", ["k"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["m", "w", "c"], ["g"]),
        helper.make_node("Softmax", ["g"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "dynamic", [helper.make_tensor_value_info("x", d, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", d, None)], initializer=inits)
    return make_model(graph, opset=17)


@pytest.mark.parametrize("mode", ["plain", "guided"])
def test_dynamic_batch_gradient_is_per_sample(mode) -> None:
    model = _dynamic_model()
    x = normal(3, 3, 4, 4)
    dy = normal(3, 5)
    (batched,) = run_vjp(model, {"x": x}, ["x"], dy, mode=mode)
    for i in range(3):
        (single,) = run_vjp(model, {"x": x[i:i + 1]}, ["x"], dy[i:i + 1], mode=mode)
        np.testing.assert_allclose(batched[i:i + 1], single, rtol=1e-12, atol=1e-15)
    # other spatial sizes work too (the mean's count is read at run time)
    (other,) = run_vjp(model, {"x": normal(2, 3, 5, 6)}, ["x"], normal(2, 5), mode=mode)
    assert other.shape == (2, 3, 5, 6)


def test_dynamic_batch_directional_derivative() -> None:
    from tests.autodiff.harness import directional_check

    model = _dynamic_model()
    x = away(normal(3, 3, 4, 4))
    analytic, numeric = directional_check(model, {"x": x}, ["x"])
    assert abs(analytic - numeric) <= 1e-6 * max(abs(numeric), 1e-3)


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
def test_scalar_operand_gradient(op) -> None:
    """A 0-D operand gets the sum over every axis (hand computation)."""
    a, b = np.asarray(1.5), away(normal(2, 3), gap=0.5)
    dy = normal(2, 3)
    model = single_op_model(op, {"a": a, "b": b})
    da, db = run_vjp(model, {"a": a, "b": b}, ["a", "b"], dy)
    expected = {
        "Add": (dy.sum(), dy), "Sub": (dy.sum(), -dy), "Mul": ((dy * b).sum(), dy * a),
        "Div": ((dy / b).sum(), -dy * a / b**2),
    }[op]
    assert da.shape == () and db.shape == (2, 3)
    np.testing.assert_allclose(da, expected[0], rtol=1e-12)
    np.testing.assert_allclose(db, expected[1], rtol=1e-12)


@pytest.mark.parametrize("rows_a", [1, 4])
def test_unrelated_symbolic_dims_are_unbroadcast_at_run_time(rows_a) -> None:
    """Operands whose dims are different symbols (onnx names the batch of a Resize by
    scales ``unk__0``, the image's is ``N``: an FPN's upsample + lateral Add) may or may
    not have been broadcast; the rule decides at run time (hand computation)."""
    d = onnx.TensorProto.DOUBLE
    graph = helper.make_graph(
        [helper.make_node("Mul", ["a", "b"], ["y"])], "symbols",
        [helper.make_tensor_value_info("a", d, ["A", 3]), helper.make_tensor_value_info("b", d, ["B", 3])],
        [helper.make_tensor_value_info("y", d, None)])
    a, b, dy = normal(rows_a, 3), normal(4, 3), normal(4, 3)
    da, db = run_vjp(make_model(graph, opset=17), {"a": a, "b": b}, ["a", "b"], dy)
    np.testing.assert_allclose(da, (dy * b).sum(axis=0, keepdims=True) if rows_a == 1 else dy * b, rtol=1e-12)
    np.testing.assert_allclose(db, dy * a, rtol=1e-12)


def test_hard_swish_kinks_match_torch() -> None:
    torch = pytest.importorskip("torch")
    x = np.array([-4.0, -3.0, -1.5, 0.0, 3.0, 4.0])
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.hardswish(tx).backward(torch.ones(6, dtype=torch.float64))
    model = single_op_model("HardSwish", {"x": x}, opset=18)
    (dx,) = run_vjp(model, {"x": x}, ["x"], np.ones(6))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("op, attrs, torch_fn", [
    ("Relu", {}, lambda t, F: F.relu(t)),
    ("LeakyRelu", {"alpha": 0.25}, lambda t, F: F.leaky_relu(t, 0.25)),
    ("Elu", {"alpha": 0.5}, lambda t, F: F.elu(t, 0.5)),
    ("HardSigmoid", {"alpha": 1 / 8, "beta": 0.5}, lambda t, F: F.hardtanh(t / 8 + 0.5, 0, 1)),
])
def test_kinks_match_torch(op, attrs, torch_fn) -> None:
    """At the kinks themselves (x = 0, y = 0, y = 1) the rules give torch's values."""
    torch = pytest.importorskip("torch")
    x = np.array([-5.0, -4.0, -1.0, 0.0, 1.0, 4.0, 5.0])
    tx = torch.tensor(x, requires_grad=True)
    torch_fn(tx, torch.nn.functional).backward(torch.ones(7, dtype=torch.float64))
    model = single_op_model(op, {"x": x}, attrs, opset=18)
    (dx,) = run_vjp(model, {"x": x}, ["x"], np.ones(7))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12)


# --- float32 step masks -----------------------------------------------------------------


def _float32_edges(lo: float | None, hi: float | None) -> np.ndarray:
    """Values at, just inside and just outside each bound, plus tiny and huge ones.

    "Just inside" is the next float32, or 1e-36 from a bound of 0: the steps are exact
    from 2**-120 (7.5e-37) of a bound of 0 on, not for the denormals below it.
    """
    values = [0.0, -0.0, 1e-36, -1e-36, 1e-30, -1e-30, 0.5, -0.5, 3.0, 1e30, -1e30]
    for bound in (lo, hi):
        if bound is not None:
            b = np.float32(bound)
            values += [b] if b == 0 else [b, np.nextafter(b, np.float32(np.inf)),
                                          np.nextafter(b, np.float32(-np.inf))]
    return np.asarray(values, dtype=np.float32)


@pytest.mark.parametrize("lo, hi", [(0.0, 6.0), (0.0, None), (None, 6.0), (-2.5, 3.25), (-1e30, 1e30), (1.0, 1.0)])
@pytest.mark.parametrize("mode", ["plain", "guided"])
def test_float32_clip_mask_is_exact_at_its_bounds(lo, hi, mode) -> None:
    """float32 masks are HardSigmoid steps (see rules.elementwise.between): exact 0/1,
    including values on a bound and one float32 step either side of it."""
    x = _float32_edges(lo, hi)
    inputs = {"x": x, "lo": None if lo is None else np.array(lo, np.float32),
              "hi": None if hi is None else np.array(hi, np.float32)}
    model = single_op_model("Clip", inputs, constants=["lo", "hi"])
    ops = [n.op_type for n in backward_ops(model, ["x"], mode=mode)]
    assert "Greater" not in ops and "Cast" not in ops and "HardSigmoid" in ops
    y = np.clip(x, -np.inf if lo is None else np.float32(lo), np.inf if hi is None else np.float32(hi))
    inside = np.ones(x.shape, bool)
    if lo is not None:
        inside &= y > np.float32(lo)
    if hi is not None:
        inside &= y < np.float32(hi)
    dy = f32(normal(*x.shape))
    up = dy if mode == "plain" else _pos(dy)
    (dx,) = run_vjp(model, {"x": x}, ["x"], dy, mode=mode)
    np.testing.assert_array_equal(dx, up * inside)


def test_float32_relu_mask_is_exact() -> None:
    x = _float32_edges(0.0, None)
    dy = f32(normal(*x.shape))
    model = single_op_model("Relu", {"x": x})
    assert [n.op_type for n in backward_ops(model, ["x"])][:2] == ["HardSigmoid", "Mul"]
    np.testing.assert_array_equal(run_vjp(model, {"x": x}, ["x"], dy)[0], dy * (x > 0))
