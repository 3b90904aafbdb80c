"""The driver's graph canonicalisation: Mul(x, HardSigmoid(x)) as one HardSwish."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxviz.autodiff.driver import fuse_hard_swish
from onnxviz.graph.load import make_model
from tests.autodiff.harness import session


def decomposed(alpha: float = 1 / 6, swap: bool = False, opset: int = 13) -> onnx.ModelProto:
    """y = Relu(x * HardSigmoid(x; alpha, 1/2)), torch's opset-13 Hardswish."""
    mul_inputs = ["h", "x"] if swap else ["x", "h"]
    nodes = [helper.make_node("HardSigmoid", ["x"], ["h"], alpha=alpha, beta=0.5, name="hs"),
             helper.make_node("Mul", mul_inputs, ["m"], name="mul"),
             helper.make_node("Relu", ["m"], ["y"])]
    graph = helper.make_graph(nodes, "hswish", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 50])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 50])])
    return make_model(graph, opset=opset)


def ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def test_fused_into_one_hardswish_with_the_same_values() -> None:
    x = np.linspace(-5, 5, 100, dtype=np.float32).reshape(2, 50)
    for swap in (False, True):
        model = decomposed(swap=swap)
        fused = fuse_hard_swish(model)
        assert ops(fused) == ["HardSwish", "Relu"] and fused.graph.node[0].output == ["m"]
        assert fused.opset_import[0].version == 14 and model.opset_import[0].version == 13
        onnx.checker.check_model(fused)
        np.testing.assert_allclose(session(fused).run(None, {"x": x})[0], session(model).run(None, {"x": x})[0],
                                   rtol=1e-6, atol=1e-7)


def test_left_alone_when_not_hardswish_or_its_half_is_wanted() -> None:
    other = decomposed(alpha=0.2)
    assert fuse_hard_swish(other) is other
    model = decomposed()
    assert fuse_hard_swish(model, keep=["h"]) is model


def test_gradient_model_leaves_its_argument_alone(monkeypatch) -> None:
    """The backward graph is added to a copy: to the driver's own copy when a step made one
    (shape inference does), to a new one when every step handed the argument back."""
    import onnxviz.autodiff.driver as driver
    from onnxviz.graph.load import infer_shapes

    model = infer_shapes(decomposed())  # shapes already in: the steps below may give up
    before = model.SerializeToString()
    x = np.linspace(-5, 5, 100, dtype=np.float32).reshape(2, 50)
    h = np.clip(x / 6 + 0.5, 0, 1)  # d/dx relu(x * hardsigmoid(x)), away from the kinks
    want = np.where(x * h > 0, h + x * np.where((x > -3) & (x < 3), 1 / 6, 0), 0)
    for inference in (infer_shapes, lambda m, copy=True: m):  # the second gives up: nothing copies
        monkeypatch.setattr(driver, "infer_shapes", inference)
        gg = driver.gradient_model(model, "y", ["x"])
        assert model.SerializeToString() == before and gg.model is not model
        out = session(gg.model).run([gg.gradients["x"]], {"x": x, gg.seed: np.ones((2, 50), np.float32)})[0]
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_a_tensor_the_output_does_not_depend_on_is_refused() -> None:
    """A second output's tensor has no gradient to give; it was a silent array of zeros."""
    import pytest

    from onnxviz.autodiff.driver import gradient_model
    from onnxviz.errors import GradientError

    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"]),
             helper.make_node("Neg", ["a"], ["y"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 3])])
    model = make_model(graph, opset=17)
    with pytest.raises(GradientError, match="'y' does not depend on 'b'.*zero everywhere"):
        gradient_model(model, "y", ["b"])
    with pytest.raises(GradientError, match="'y' does not depend on 'b'"):
        gradient_model(model, "y", ["x", "b"])
    gg = gradient_model(model, "y", ["a"])  # on the path: d(-a)/da = -1
    x = np.array([[-1, 2, 3], [4, -5, 6]], np.float32)
    seed = np.ones((2, 3), np.float32)
    out = session(gg.model).run([gg.gradients["a"]], {"x": x, gg.seed: seed})[0]
    np.testing.assert_array_equal(out, -seed)
