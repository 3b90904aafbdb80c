"""The backward driver: prune to the differentiated path, walk it in reverse, sum fan-out.

Rules only map upstream gradients to input gradients for one node; everything else
(which nodes to visit, accumulation, zeros, the seed input, the outputs) lives here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxviz.autodiff import rules as _rules  # noqa: F401  (fills RULES)
from onnxviz.autodiff.emitter import Emitter
from onnxviz.autodiff.registry import NON_DIFFERENTIABLE, RULES, STRAIGHT_THROUGH, RuleContext
from onnxviz.errors import GradientError, NoGradientRuleError
from onnxviz.graph._nodes import ancestors, attrs
from onnxviz.graph.info import FLOAT_TYPES
from onnxviz.graph.load import (
    copy_model, fix_ir_version, infer_shapes, skeleton, tensor_dtypes, tensor_shapes, with_weights,
)
from onnxviz.graph.rewrite import fold_pads, require_known

MODES = ("plain", "guided", "deconvnet")
SEED_NAME = "onnxviz_seed"
GRAD_PREFIX = "onnxviz_grad:"
#: Models below this opset are converted first, so rules see the modern op forms.
MIN_OPSET = 13
CONVERT_TO = 17


@dataclass(frozen=True)
class GradientGraph:
    """A model with a backward subgraph appended.

    Attributes:
        model: the new model; inputs are the original ones plus ``seed``.
        output: the differentiated forward tensor (also a model output).
        seed: name of the input holding the upstream gradient (shape of ``output``).
        gradients: requested tensor -> name of the output holding its gradient.
    """

    model: onnx.ModelProto
    output: str
    seed: str
    gradients: dict[str, str]


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise GradientError("the model imports no default ONNX opset")


def upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convert models older than opset 13 so rules only meet modern op forms.

    ``onnx.version_converter`` turns Upsample (opsets 7-9) and Resize-10 into a Resize
    with the default half-pixel coordinates, which changes linear upsampling; both old
    ops map output pixel x to input x / scale, so the converted Resize nodes get
    ``coordinate_transformation_mode="asymmetric"`` (and ``nearest_mode="floor"``) back.
    """
    opset = default_opset(model)
    if opset >= MIN_OPSET:
        return model
    from onnx import version_converter

    old_resizes = {
        node.output[0] for node in model.graph.node
        if node.op_type == "Upsample" or (node.op_type == "Resize" and opset < 11)
    }
    try:  # the converter serialises its input: give it the graph without the weights
        converted = with_weights(version_converter.convert_version(skeleton(model), CONVERT_TO), model)
    except Exception as exc:  # the converter raises bare RuntimeErrors
        raise GradientError(
            f"could not convert the opset-{opset} model to opset {CONVERT_TO} "
            f"for differentiation ({str(exc).splitlines()[0]}); re-export it at opset >= 13"
        ) from exc
    for node in converted.graph.node:
        if node.op_type == "Resize" and node.output[0] in old_resizes:
            kept = [a for a in node.attribute if a.name not in ("coordinate_transformation_mode", "nearest_mode")]
            del node.attribute[:]
            node.attribute.extend(kept)
            node.attribute.extend([helper.make_attribute("coordinate_transformation_mode", "asymmetric"),
                                   helper.make_attribute("nearest_mode", "floor")])
    return fix_ir_version(converted)


def fuse_hard_swish(model: onnx.ModelProto, keep: Sequence[str] = ()) -> onnx.ModelProto:
    """``Mul(x, HardSigmoid(x; 1/6, 1/2))`` as one HardSwish node (a copy; ``model`` itself
    when there is none).

    Exporters write Hardswish that way below opset 14 (torch) or always (some Keras
    converters). Guided and deconvnet rules treat an activation as one unit, so without
    this the same network gets different maps from two exports. The forward values are
    the same expression. The model's opset is raised to 14 (HardSwish's) when below;
    nothing in 13 -> 14 changes an inference graph. HardSigmoid outputs named in ``keep``
    (or read by anything else) are left alone.
    """
    nodes = list(model.graph.node)
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            readers.setdefault(name, []).append(i)
    outputs = {o.name for o in model.graph.output} | set(keep)
    fused: dict[int, onnx.NodeProto] = {}  # index of the Mul -> its HardSwish
    dropped: set[int] = set()  # indices of the HardSigmoids
    for i, node in enumerate(nodes):
        if node.op_type != "HardSigmoid" or node.output[0] in outputs:
            continue
        a = attrs(node)
        if not (math.isclose(a.get("alpha", 0.2), 1 / 6, rel_tol=1e-6) and a.get("beta", 0.5) == 0.5):
            continue
        x, h = node.input[0], node.output[0]
        users = readers.get(h, [])
        mul = nodes[users[0]] if len(users) == 1 else None
        if mul is None or mul.op_type != "Mul" or sorted(mul.input) != sorted([x, h]):
            continue
        fused[users[0]] = helper.make_node("HardSwish", [x], list(mul.output), name=mul.name)
        dropped.add(i)
    if not fused:
        return model
    result = copy_model(model)
    nodes = [fused.get(i, node) for i, node in enumerate(result.graph.node) if i not in dropped]
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    for opset in result.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < 14:
            opset.version = 14
    return result


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            attr = node.attribute[0]
            if attr.name == "value":
                values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _active_tensors(
    graph: onnx.GraphProto, wrt: Sequence[str], dtypes: dict[str, int]
) -> set[str]:
    """Float tensors that depend differentiably on any of ``wrt`` (and the integer outputs
    of straight-through ops)."""
    active = set(wrt)
    for node in graph.node:
        if node.op_type in NON_DIFFERENTIABLE:
            continue
        if any(name in active for name in node.input if name):
            for out in node.output:
                if out and (dtypes.get(out, onnx.TensorProto.FLOAT) in FLOAT_TYPES
                            or node.op_type in STRAIGHT_THROUGH):
                    active.add(out)
    return active


def _dead_ends(graph: onnx.GraphProto, active: set[str], needed: set[str]) -> list[onnx.NodeProto]:
    """Nodes the output needs that read a differentiable tensor but pass no gradient on
    (integer results, comparisons, ArgMax...), in graph order."""
    return [
        node for node in graph.node
        if any(name in active for name in node.input if name)
        and any(out in needed for out in node.output)
        and not any(out in active for out in node.output)
    ]


def path_nodes(
    graph: onnx.GraphProto, output: str, wrt: Sequence[str], dtypes: dict[str, int]
) -> tuple[list[onnx.NodeProto], set[str]]:
    """Nodes on a differentiable path from ``wrt`` to ``output``, in topological order.

    Raises:
        GradientError: ``output`` does not depend on a ``wrt`` tensor at all (a second output,
            a branch beside the path), or only through ops that pass no gradient (an
            integer-only path such as QLinearConv, ArgMax): its gradient would be zero,
            which is never what was asked.
    """
    active = _active_tensors(graph, wrt, dtypes)
    needed = ancestors(graph, output)
    unused = [name for name in wrt if name not in needed]
    if unused:
        raise GradientError(
            f"{output!r} does not depend on {unused[0]!r}, so its gradient would be zero "
            f"everywhere; pick a tensor on the way from the input to {output!r} "
            f"(`onnxviz inspect` lists them in graph order)"
        )
    on_path = active & needed
    cut = [name for name in wrt if name != output
           and output not in (active if len(wrt) == 1 else _active_tensors(graph, [name], dtypes))]
    if cut:
        ends = _dead_ends(graph, _active_tensors(graph, cut[:1], dtypes), needed)
        where = ", ".join(f"{n.op_type} {n.name!r}" for n in ends[:3]) or "none found"
        raise GradientError(
            f"{output!r} depends on {cut[0]!r} only through ops that pass no gradient "
            f"(integer tensors, comparisons; first: {where}); no gradient flows, so there is "
            f"nothing to show: use a float model, or occlusion, which needs no gradients"
        )
    nodes = [
        node
        for node in graph.node
        if node.op_type not in NON_DIFFERENTIABLE
        and any(out in on_path for out in node.output)
        and any(name in on_path for name in node.input if name)
    ]
    return nodes, on_path


def blocking_ops(
    model: onnx.ModelProto, output: str | None = None, wrt: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """(op type, node name) of every node on the path that has no gradient rule; when no
    differentiable path reaches ``output`` at all, the nodes where the paths end."""
    output, wrt = _resolve_names(model, output, wrt)  # before the skeleton makes weights inputs
    model = infer_shapes(upgrade_opset(skeleton(model)))  # the graph is enough: no weights copied
    graph, dtypes = model.graph, tensor_dtypes(model)
    active = _active_tensors(graph, wrt, dtypes)
    if output not in active:
        return [(n.op_type, n.name) for n in _dead_ends(graph, active, ancestors(graph, output))]
    nodes, _ = path_nodes(graph, output, wrt, dtypes)
    return [(n.op_type, n.name) for n in nodes if not _has_rule(n)]


def _has_rule(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx") and node.op_type in RULES


def _all_tensor_names(graph: onnx.GraphProto) -> set[str]:
    names = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    for node in graph.node:
        names.update(node.output)
    return names


def _resolve_names(
    model: onnx.ModelProto, output: str | None, wrt: Sequence[str] | None
) -> tuple[str, list[str]]:
    graph = model.graph
    if output is None:
        output = graph.output[0].name
    if wrt is None:
        initializers = {init.name for init in graph.initializer}
        wrt = [i.name for i in graph.input if i.name not in initializers][:1]
    require_known(graph, [output, *wrt])
    return output, list(wrt)


class _Accumulator:
    """Gradient contributions per forward tensor, summed once when first read."""

    def __init__(self, e: Emitter) -> None:
        self._parts: dict[str, list[str]] = {}
        self._e = e

    def add(self, name: str, grad: str) -> None:
        self._parts.setdefault(name, []).append(grad)

    def get(self, name: str) -> str | None:
        parts = self._parts.get(name)
        if not parts:
            return None
        if len(parts) > 1:
            parts[:] = [self._e.op("Sum", *parts)]
        return parts[0]


def gradient_model(
    model: onnx.ModelProto,
    output: str | None = None,
    wrt: Sequence[str] | None = None,
    mode: str = "plain",
    expose: Sequence[str] = (),
) -> GradientGraph:
    """Append the vector-Jacobian product of ``output`` to the model, in standard ONNX ops.

    Args:
        model: a forward model (not modified). Opsets below 13 are converted to 17, and
            zero Pads feeding only convolutions are folded into them
            (:func:`onnxviz.graph.rewrite.fold_pads`) unless named in ``wrt``/``expose``.
        output: the forward tensor to differentiate (default: the first graph output).
        wrt: tensors to differentiate with respect to (default: the first non-initializer
            graph input); graph inputs or intermediate tensors.
        mode: "plain", "guided" (guided backpropagation) or "deconvnet"; changes only the
            ReLU-family rules.
        expose: extra forward tensors to add as outputs (e.g. the feature map of Grad-CAM).

    Returns:
        A :class:`GradientGraph`: feeding the original inputs plus ``seed`` (any array of
        ``output``'s shape) returns the original outputs, ``output``, the ``expose``
        tensors and one gradient output per ``wrt`` tensor, in one run.

    Raises:
        NoGradientRuleError: an op on the path has no rule (names the op and node).
        UnknownTensorError: ``output`` or a ``wrt`` name is not in the model.
    """
    if mode not in MODES:
        raise GradientError(f"unknown gradient mode {mode!r}; choose one of {', '.join(MODES)}")
    given = model
    model = upgrade_opset(model)
    if mode != "plain":
        model = fuse_hard_swish(model, keep=[*(wrt or ()), *expose, *([output] if output else [])])
    model = infer_shapes(model, copy=model is given)  # the steps above copy only to change
    output, wrt = _resolve_names(model, output, wrt)
    # Explicit zero Pads before convolutions (TF "same" padding) become Conv pads: the
    # Pad and its backward crop would otherwise run in full on the gradient path.
    model = fold_pads(model, keep=[output, *wrt, *expose])
    graph = model.graph
    shapes, dtypes = tensor_shapes(model), tensor_dtypes(model)
    nodes, on_path = path_nodes(graph, output, wrt, dtypes)
    for node in nodes:
        if not _has_rule(node):
            raise NoGradientRuleError(node.op_type, node.name, node.domain)

    taken = _all_tensor_names(graph) | {n.name for n in graph.node}
    e = Emitter(taken)
    seed = SEED_NAME if SEED_NAME not in taken else e.fresh("seed")
    grads = _Accumulator(e)
    grads.add(output, seed)
    constants = _constants(graph)
    opset = default_opset(model)

    for node in reversed(nodes):
        dy = [grads.get(out) if out else None for out in node.output]
        if all(g is None for g in dy):
            continue
        needed = [bool(name) and name in on_path for name in node.input]
        e.scope = f"{node.name or node.op_type}/"
        ctx = RuleContext(node, e, dy, needed, shapes, dtypes, constants, opset, mode)
        input_grads = RULES[node.op_type](ctx)
        for name, grad, need in zip(node.input, input_grads, needed):
            if need and grad is not None:
                grads.add(name, grad)
    e.scope = ""

    grad_outputs = {}
    for name in wrt:
        grad = grads.get(name)
        if grad is None:  # on the path, but its readers' rules pass it none (Clip's bounds)
            grad = e.op("Mul", name, e.const(np.zeros((), dtype=_np_dtype(dtypes, name))))
        out_name = GRAD_PREFIX + name
        e.op("Identity", grad, outputs=[out_name])
        grad_outputs[name] = out_name

    if model is given:  # nothing above copied it (each step copies only when it changes something)
        new = copy_model(model)
    else:  # a copy of this call's own: a VGG's weights are not copied once more
        new = model
    g = new.graph
    g.node.extend(e.nodes)
    g.initializer.extend(e.initializers)
    elem = dtypes.get(output, onnx.TensorProto.FLOAT)
    # The seed's dims are left unknown: onnx's inferred static shape can disagree with
    # onnxruntime's (ceil_mode pools, Resize by scales), which would fail session creation.
    out_shape = shapes.get(output)
    seed_dims = None if out_shape is None else [None] * len(out_shape)
    g.input.append(helper.make_tensor_value_info(seed, elem, seed_dims))
    existing = {o.name for o in g.output}
    for name in [output, *expose]:
        if name not in existing:
            g.output.append(_value_info(name, shapes, dtypes))
            existing.add(name)
    for name, out_name in grad_outputs.items():
        g.output.append(helper.make_tensor_value_info(
            out_name, dtypes.get(name, onnx.TensorProto.FLOAT), _dims(shapes.get(name))))
    fix_ir_version(new)
    try:
        onnx.checker.check_model(skeleton(new))  # the graph; the weights were checked on loading
    except onnx.checker.ValidationError as exc:  # a bug in a rule, not the user's fault
        raise GradientError(f"the backward graph failed the ONNX checker: {exc}") from exc
    return GradientGraph(new, output, seed, grad_outputs)


def _np_dtype(dtypes: dict[str, int], name: str) -> np.dtype:
    return np.dtype(helper.tensor_dtype_to_np_dtype(dtypes.get(name, onnx.TensorProto.FLOAT)))


def _dims(shape: tuple | None) -> list | None:
    if shape is None:
        return None
    return [d if isinstance(d, (int, str)) else None for d in shape]


def _value_info(name: str, shapes: dict, dtypes: dict) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        name, dtypes.get(name, onnx.TensorProto.FLOAT), _dims(shapes.get(name))
    )
