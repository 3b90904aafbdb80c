"""Rules of onnxviz/autodiff/rules/linalg.py: Gemm's transA/transB/alpha/beta/C forms, MatMul
with batch broadcasting and 1-D operands, Einsum. float64 (double kernels exist for all three).
"""

from __future__ import annotations

import pytest

from onnxviz.autodiff import gradient_model
from onnxviz.errors import GradientError
from tests.autodiff.harness import check_op, single_op_model
from tests.autodiff.test_rules_elementwise import seeded_rng  # noqa: F401  (autouse fixture)
from tests.autodiff.test_rules_elementwise import case, normal


def gemm(a, b, c=None, **attrs):
    inputs = {"a": normal(*a), "b": normal(*b)}
    if c is not None:
        inputs["c"] = normal(*c)
    name = f"Gemm-{a}x{b}" + (f"+{c}" if c is not None else "")
    name += "".join(f"-{k}{v}" for k, v in attrs.items())
    return case("Gemm", inputs, attrs=attrs, id=name)


def matmul(a, b):
    return case("MatMul", {"a": normal(*a), "b": normal(*b)}, id=f"MatMul-{a}@{b}")


GEMM_CASES = [
    gemm((3, 4), (4, 5), (5,)),
    gemm((4, 3), (4, 5), (3, 5), transA=1),
    gemm((3, 4), (5, 4), (1, 5), transB=1),
    gemm((4, 3), (5, 4), (3, 1), transA=1, transB=1),
    gemm((3, 4), (4, 5), (1,), alpha=0.5, beta=2.0),
    gemm((4, 3), (5, 4), (3, 5), transA=1, transB=1, alpha=-1.5, beta=0.25),
    gemm((3, 4), (4, 5)),
    case("Gemm", {"a": normal(3, 4), "w": normal(5, 4), "c": normal(5)}, wrt=["a"], attrs={"transB": 1},
         constants=["w", "c"], id="Gemm-const-weights"),
]
MATMUL_CASES = [
    matmul((3, 4), (4, 5)),
    matmul((2, 1, 3, 4), (5, 4, 6)),
    matmul((2, 3, 4), (4, 5)),
    matmul((3, 4), (2, 4, 5)),
    matmul((4,), (2, 4, 5)),
    matmul((2, 3, 4), (4,)),
    matmul((4,), (4,)),
    matmul((4,), (4, 5)),
    matmul((3, 1), (1, 5)),
]
EINSUM_CASES = [
    case("Einsum", {"a": normal(3, 4), "b": normal(4, 5)}, attrs={"equation": "ij,jk->ik"},
         id="Einsum-matmul"),
    case("Einsum", {"a": normal(2, 3, 4), "b": normal(2, 4, 5)}, attrs={"equation": "bij,bjk->bik"},
         id="Einsum-batched"),
    case("Einsum", {"a": normal(3, 4)}, attrs={"equation": "ij->ji"}, id="Einsum-transpose"),
    case("Einsum", {"a": normal(3, 4), "b": normal(3, 4)}, attrs={"equation": "ij,ij->i"},
         id="Einsum-rowdot"),
]

CASES = GEMM_CASES + MATMUL_CASES + EINSUM_CASES


@pytest.mark.parametrize("op, inputs, wrt, attrs, opset, constants", CASES)
def test_rule_directional_derivative(op, inputs, wrt, attrs, opset, constants) -> None:
    check_op(op, inputs, wrt, attrs, constants=constants, opset=opset)


@pytest.mark.parametrize("equation", ["ii->i", "ij->i", "...ij,...jk->...ik"])
def test_einsum_unsupported_equations_raise(equation) -> None:
    model = single_op_model("Einsum", {"a": normal(3, 3)} if equation != "...ij,...jk->...ik"
                            else {"a": normal(2, 3, 3), "b": normal(2, 3, 3)}, {"equation": equation})
    with pytest.raises(GradientError, match="Einsum"):
        gradient_model(model, wrt=["a"])
