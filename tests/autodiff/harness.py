"""Finite-difference checks of gradient graphs: <u, J^T v> against a central difference of <v, f>.

Never a full Jacobian: one random direction u over all differentiated inputs and one
random seed v over the output, as in JAX's and autograd's test suites.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from onnxviz.autodiff import gradient_model
from onnxviz.graph.load import make_model

_ELEM = {np.dtype(np.float32): onnx.TensorProto.FLOAT, np.dtype(np.float64): onnx.TensorProto.DOUBLE}


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def single_op_model(
    op_type: str,
    inputs: Mapping[str, np.ndarray | None],
    attrs: Mapping | None = None,
    constants: Sequence[str] = (),
    n_outputs: int = 1,
    opset: int = 17,
) -> onnx.ModelProto:
    """One-node model; ``inputs`` in order (None = skipped optional input), names in
    ``constants`` become initializers, the rest graph inputs with static shapes."""
    graph_inputs, inits, names = [], [], []
    for name, value in inputs.items():
        if value is None:
            names.append("")
            continue
        names.append(name)
        value = np.asarray(value)
        if name in constants:
            inits.append(numpy_helper.from_array(value, name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, _ELEM[value.dtype], value.shape))
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, name=f"the_{op_type}", **(attrs or {}))
    graph = helper.make_graph(
        [node], f"single_{op_type}", graph_inputs,
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outs],
        initializer=inits,
    )
    # Let shape inference fill the outputs' types.
    model = make_model(graph, opset=opset)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for out, info in zip(model.graph.output, inferred.graph.output):
        out.CopyFrom(info)
    return model


def directional_check(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    wrt: Sequence[str],
    output: str | None = None,
    eps: float = 1e-6,
    seed: int = 0,
    mode: str = "plain",
) -> tuple[float, float]:
    """Return (analytic, numeric) directional derivatives of <v, output> along u.

    analytic = sum_i <u_i, grad_i> from the gradient graph with seed v;
    numeric = (<v, f(x + eps u)> - <v, f(x - eps u)>) / (2 eps) from the forward model.
    """
    rng = np.random.default_rng(seed)
    gg = gradient_model(model, output=output, wrt=wrt, mode=mode)
    fwd = session(model)
    out_name = gg.output
    base = _run(fwd, model, feeds, out_name)
    v = rng.standard_normal(base.shape).astype(base.dtype)
    grads = session(gg.model).run(
        [gg.gradients[w] for w in wrt], {**feeds, gg.seed: v}
    )
    u = {w: rng.standard_normal(np.shape(feeds[w])).astype(feeds[w].dtype) for w in wrt}
    analytic = float(sum(np.sum(u[w].astype(np.float64) * g) for w, g in zip(wrt, grads)))
    plus = {**feeds, **{w: np.asarray(feeds[w] + eps * u[w]) for w in wrt}}
    minus = {**feeds, **{w: np.asarray(feeds[w] - eps * u[w]) for w in wrt}}
    f_plus = _run(fwd, model, plus, out_name).astype(np.float64)
    f_minus = _run(fwd, model, minus, out_name).astype(np.float64)
    numeric = float(np.sum(v * (f_plus - f_minus)) / (2 * eps))
    return analytic, numeric


def _run(sess: ort.InferenceSession, model: onnx.ModelProto, feeds, name: str) -> np.ndarray:
    if name not in {o.name for o in model.graph.output}:
        raise ValueError(f"{name} is not an output of the forward model")
    return sess.run([name], dict(feeds))[0]


def check_op(
    op_type: str,
    inputs: Mapping[str, np.ndarray | None],
    wrt: Sequence[str],
    attrs: Mapping | None = None,
    constants: Sequence[str] = (),
    n_outputs: int = 1,
    output: str = "y0",
    opset: int = 17,
    mode: str = "plain",
    eps: float | None = None,
    rtol: float | None = None,
    seeds: Sequence[int] = (0, 1),
) -> None:
    """Assert the rule for ``op_type`` passes the directional check for several (u, v).

    float64 inputs: eps 1e-6, rtol 1e-6. float32 (ops onnxruntime has no double kernel
    for): eps 1e-2 and rtol 2e-3, since the float32 central difference error is about
    eps^2 * f''' + ulp(f) / eps.
    """
    model = single_op_model(op_type, inputs, attrs, constants, n_outputs, opset)
    feeds = {k: v for k, v in inputs.items() if v is not None and k not in constants}
    is64 = all(np.asarray(v).dtype == np.float64 for v in feeds.values())
    eps = eps if eps is not None else (1e-6 if is64 else 1e-2)
    rtol = rtol if rtol is not None else (1e-6 if is64 else 2e-3)
    for seed in seeds:
        analytic, numeric = directional_check(model, feeds, wrt, output, eps, seed, mode)
        scale = max(abs(numeric), 1e-3)
        assert abs(analytic - numeric) <= rtol * scale + 1e-9, (
            f"{op_type} {dict(attrs or {})}: analytic {analytic!r} vs numeric {numeric!r}"
        )


def backward_ops(model: onnx.ModelProto, wrt: Sequence[str], output: str | None = None,
                 mode: str = "plain") -> list[onnx.NodeProto]:
    """The nodes the driver appended (for structure checks)."""
    gg = gradient_model(model, output=output, wrt=wrt, mode=mode)
    return [n for n in gg.model.graph.node if n.name.startswith("vjp/")]


def assert_standard_backward(cases, forbidden: Sequence[str] = ()) -> None:
    """Every case's backward graph uses default-domain ops only: no framework ``*Grad`` ops,
    none of ``forbidden``. A case is a pytest param of (op, inputs, wrt, attrs, opset,
    constants); Split cases differentiate their second of three outputs."""
    for c in cases:
        op, inputs, wrt, attrs, opset, constants = c.values
        split = op == "Split"
        model = single_op_model(op, inputs, attrs, constants, n_outputs=3 if split else 1, opset=opset)
        for node in backward_ops(model, wrt, output="y1" if split else None):
            assert node.domain in ("", "ai.onnx"), (op, node.op_type, node.domain)
            assert not node.op_type.endswith("Grad") and node.op_type not in forbidden, (op, node.op_type)
