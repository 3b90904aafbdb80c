"""Rules of onnxviz/autodiff/rules/reduce.py and softmax.py: directional derivatives for every
axes form (attribute before opset 13/18, input after), keepdims 0/1, all axes and
noop_with_empty_axes; ReduceMax/Min ties checked by hand. All float64 (onnxruntime has
double kernels for every op here).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxviz.autodiff import RULES
from onnxviz.autodiff.emitter import Emitter
from onnxviz.autodiff.registry import RuleContext
from onnxviz.autodiff.rules.softmax import softmax_axes
from tests.autodiff.harness import check_op, single_op_model
from tests.autodiff.test_rules_elementwise import seeded_rng  # noqa: F401  (autouse fixture)
from tests.autodiff.test_rules_elementwise import away, case, distinct, normal, run_vjp


def axes(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


X = normal(2, 3, 4)
REDUCE_CASES = [
    case("ReduceSum", {"x": X}, attrs={"axes": [1], "keepdims": 0}, opset=11, id="ReduceSum-attr-opset11"),
    case("ReduceSum", {"x": X, "a": axes(-1)}, wrt=["x"], constants=["a"], opset=13,
         id="ReduceSum-input-opset13"),
    case("ReduceSum", {"x": X, "a": axes(0, 2)}, wrt=["x"], attrs={"keepdims": 0}, constants=["a"],
         id="ReduceSum-input-keepdims0"),
    case("ReduceSum", {"x": X}, attrs={"keepdims": 0}, id="ReduceSum-all"),
    case("ReduceSum", {"x": X}, attrs={"keepdims": 1}, id="ReduceSum-all-keepdims"),
    case("ReduceSum", {"x": X}, attrs={"noop_with_empty_axes": 1}, id="ReduceSum-noop"),
    case("ReduceMean", {"x": X}, attrs={"axes": [0, 2], "keepdims": 0}, opset=17,
         id="ReduceMean-attr-opset17"),
    case("ReduceMean", {"x": X, "a": axes(1)}, wrt=["x"], constants=["a"], opset=18,
         id="ReduceMean-input-opset18"),
    case("ReduceMean", {"x": X}, attrs={"keepdims": 0}, id="ReduceMean-all"),
    case("ReduceMean", {"x": X}, attrs={"axes": [-1]}, opset=11, id="ReduceMean-attr-opset11"),
    case("ReduceMax", {"x": distinct(2, 3, 4)}, attrs={"axes": [1]}, id="ReduceMax-attr"),
    case("ReduceMax", {"x": distinct(2, 3, 4), "a": axes(0, -1)}, wrt=["x"], attrs={"keepdims": 0},
         constants=["a"], opset=18, id="ReduceMax-input-keepdims0"),
    case("ReduceMax", {"x": distinct(2, 3, 4)}, attrs={"keepdims": 0}, id="ReduceMax-all"),
    case("ReduceMin", {"x": distinct(2, 3, 4)}, attrs={"axes": [2], "keepdims": 0}, id="ReduceMin"),
    case("ReduceMin", {"x": distinct(2, 3, 4), "a": axes(1)}, wrt=["x"], constants=["a"], opset=18,
         id="ReduceMin-input"),
    case("ReduceL1", {"x": away(X)}, attrs={"axes": [1], "keepdims": 0}),
    case("ReduceL2", {"x": X}, attrs={"axes": [1, 2]}),
    case("ReduceL2", {"x": X, "a": axes(0)}, wrt=["x"], attrs={"keepdims": 0}, constants=["a"], opset=18,
         id="ReduceL2-input"),
    case("ReduceSumSquare", {"x": X}, attrs={"axes": [0], "keepdims": 0}),
    case("ReduceSumSquare", {"x": X}, attrs={"noop_with_empty_axes": 1}, opset=18, id="ReduceSumSquare-noop"),
    case("ReduceLogSumExp", {"x": X}, attrs={"axes": [2]}),
    case("ReduceLogSumExp", {"x": X}, attrs={"keepdims": 0}, id="ReduceLogSumExp-all"),
]

SOFTMAX_CASES = [
    case("Softmax", {"x": normal(2, 3, 4)}, id="Softmax-default-axis"),
    case("Softmax", {"x": normal(2, 3, 4)}, attrs={"axis": 1}, id="Softmax-axis1"),
    case("Softmax", {"x": normal(2, 3, 4)}, attrs={"axis": -3}, id="Softmax-axis-3"),
    case("LogSoftmax", {"x": normal(2, 3, 4)}, id="LogSoftmax-default-axis"),
    case("LogSoftmax", {"x": normal(2, 3, 4)}, attrs={"axis": 0}, id="LogSoftmax-axis0"),
]

CASES = REDUCE_CASES + SOFTMAX_CASES


@pytest.mark.parametrize("op, inputs, wrt, attrs, opset, constants", CASES)
def test_rule_directional_derivative(op, inputs, wrt, attrs, opset, constants) -> None:
    check_op(op, inputs, wrt, attrs, constants=constants, opset=opset)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [None, 1, 2])
def test_softmax_before_opset13_flattens(op, axis) -> None:
    """Opset 11: normalised over all axes from ``axis`` (default 1) on; converted by the driver
    (into Flatten/Reshape + Softmax, so this needs the shape rules)."""
    if not {"Flatten", "Reshape"} <= set(RULES):
        pytest.skip("the Flatten/Reshape rules are not registered yet")
    attrs = {} if axis is None else {"axis": axis}
    check_op(op, {"x": normal(2, 3, 4)}, ["x"], attrs, opset=11)


@pytest.mark.parametrize("opset, attrs, expected", [
    (11, {}, [1, 2]), (11, {"axis": 2}, [2]), (11, {"axis": -2}, [1, 2]), (11, {"axis": 0}, [0, 1, 2]),
    (13, {}, [-1]), (17, {"axis": 1}, [1]),
])
def test_softmax_axes_per_opset(opset, attrs, expected) -> None:
    """Without conversion, the rule itself reads the pre-13 flattening semantics."""
    node = helper.make_node("Softmax", ["x"], ["y"], **attrs)
    ctx = RuleContext(node, Emitter(), ["dy"], [True], {"x": (2, 3, 4)}, {}, {}, opset)
    assert softmax_axes(ctx) == expected


@pytest.mark.parametrize("op, sign", [("ReduceMax", 1.0), ("ReduceMin", -1.0)])
def test_reduce_ties_split_equally(op, sign) -> None:
    """As torch.amax: every tied extreme gets dy / (number of ties)."""
    x = sign * np.array([[1.0, 3.0, 3.0, 3.0], [2.0, 0.0, -1.0, 2.0]])
    dy = np.array([6.0, 4.0])
    model = single_op_model(op, {"x": x}, {"axes": [1], "keepdims": 0})
    (dx,) = run_vjp(model, {"x": x}, ["x"], dy)
    np.testing.assert_allclose(dx, [[0, 2, 2, 2], [2, 0, 0, 2]])


def test_reduce_max_tie_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    tx = torch.tensor(x, requires_grad=True)
    torch.amax(tx, dim=1).backward(torch.tensor([1.0, 3.0], dtype=torch.float64))
    model = single_op_model("ReduceMax", {"x": x}, {"axes": [1], "keepdims": 0})
    (dx,) = run_vjp(model, {"x": x}, ["x"], np.array([1.0, 3.0]))
    np.testing.assert_allclose(dx, tx.grad.numpy())
