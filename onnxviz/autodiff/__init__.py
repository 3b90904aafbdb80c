"""Reverse-mode autodiff that appends the backward graph to a model in standard ONNX ops."""

from onnxviz.autodiff.driver import (
    GRAD_PREFIX,
    MODES,
    SEED_NAME,
    GradientGraph,
    blocking_ops,
    gradient_model,
)
from onnxviz.autodiff.registry import RULES, RuleContext, register

__all__ = [
    "GRAD_PREFIX",
    "MODES",
    "RULES",
    "SEED_NAME",
    "GradientGraph",
    "RuleContext",
    "blocking_ops",
    "gradient_model",
    "register",
]
