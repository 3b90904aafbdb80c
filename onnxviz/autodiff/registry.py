"""The gradient-rule table and the context a rule receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from onnxviz.autodiff.emitter import Emitter

Shape = tuple

#: op type -> rule. Filled by the modules under ``onnxviz.autodiff.rules``.
RULES: dict[str, Callable[["RuleContext"], list[str | None]]] = {}

#: Ops whose outputs never carry a gradient (integer, boolean or piecewise-constant
#: results). The driver stops forward reachability at them, so shape plumbing such as
#: ``Shape -> Gather -> Concat -> Reshape`` is left alone.
NON_DIFFERENTIABLE: frozenset[str] = frozenset(
    {
        "Shape", "Size", "ConstantOfShape", "NonZero", "ArgMax", "ArgMin", "Equal",
        "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor",
        "IsNaN", "IsInf", "Floor", "Ceil", "Round", "Sign", "EyeLike", "RandomNormalLike",
        "RandomUniformLike", "Multinomial", "Range", "OneHot", "Constant",
    }
)

#: Ops whose integer outputs still carry a gradient (the straight-through estimator of
#: quantization, ``rules/quantize.py``); other integer tensors end a differentiable path.
STRAIGHT_THROUGH: frozenset[str] = frozenset({"QuantizeLinear"})


def register(*op_types: str):
    """Decorator adding a rule for one or more op types to :data:`RULES`."""

    def wrap(fn: Callable[["RuleContext"], list[str | None]]):
        for op_type in op_types:
            if op_type in RULES:
                raise ValueError(f"duplicate gradient rule for {op_type}")
            RULES[op_type] = fn
        return fn

    return wrap


@dataclass
class RuleContext:
    """Everything a rule may look at; rules emit nodes through ``e`` only."""

    node: onnx.NodeProto
    e: Emitter
    dy: list[str | None]
    needed: list[bool]
    shapes: dict[str, Shape]
    dtypes: dict[str, int]
    constants: dict[str, np.ndarray]
    opset: int
    mode: str = "plain"
    attrs: dict = field(init=False)

    def __post_init__(self) -> None:
        self.attrs = {a.name: helper.get_attribute_value(a) for a in self.node.attribute}
        for key, value in list(self.attrs.items()):
            if isinstance(value, bytes):
                self.attrs[key] = value.decode()

    @property
    def inputs(self) -> list[str]:
        return list(self.node.input)

    @property
    def outputs(self) -> list[str]:
        return list(self.node.output)

    def needs(self, i: int) -> bool:
        """Whether input ``i`` needs a gradient."""
        return i < len(self.needed) and self.needed[i]

    def shape(self, name: str) -> Shape | None:
        """Static shape (ints; symbolic or unknown dims as str/None), or None if unknown."""
        return self.shapes.get(name)

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return None if shape is None else len(shape)

    def dtype(self, name: str) -> np.dtype:
        """numpy dtype of a forward tensor (float32 when unknown)."""
        elem = self.dtypes.get(name, onnx.TensorProto.FLOAT)
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem))

    def const_like(self, value, like: str) -> str:
        """A constant with the element type of tensor ``like``."""
        return self.e.const(value, dtype=self.dtype(like))

    def value(self, name: str) -> np.ndarray | None:
        """The value of a constant input (initializer or Constant node), else None."""
        return self.constants.get(name)

    def attr(self, key: str, default=None):
        return self.attrs.get(key, default)
