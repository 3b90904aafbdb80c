"""graph.rewrite: expose, cut and prune (structure, numerics against the reference, checker)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from fixtures import GraphBuilder, conv_relu_pool, gap_gemm, image, ort_run, random_image, two_branch_concat, vgg_like
from onnxviz.errors import UnknownTensorError
from onnxviz.graph.load import MAX_IR_VERSION, make_model
from onnxviz.graph.rewrite import cut, expose, fix_batch, fix_input_dims, fold_pads, prune, share_padded


def reference(model: onnx.ModelProto, x: np.ndarray | dict, names) -> list[np.ndarray]:
    """Values of any tensors (intermediate ones too) from onnx's reference evaluator
    (``x``: the first input's value, or all feeds by name)."""
    feeds = x if isinstance(x, dict) else {model.graph.input[0].name: x}
    return ReferenceEvaluator(model).run(list(names), feeds)


def output_names(model: onnx.ModelProto) -> list[str]:
    return [o.name for o in model.graph.output]


def assert_valid(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version <= MAX_IR_VERSION


def test_expose_appends_outputs_with_types_and_matching_values():
    model = vgg_like()
    names = ["conv1", "relu1", "pool2", "flat", "fc1"]
    exposed = expose(model, names)
    assert_valid(exposed)
    assert output_names(exposed) == ["prob", *names]
    assert [i.name for i in exposed.graph.input] == ["x"]
    shapes = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in exposed.graph.output}
    assert shapes["pool2"] == ["N", 4, 4, 4] and shapes["flat"] == ["N", 64]
    x = random_image(model, batch=3)
    got = ort_run(exposed, x)
    np.testing.assert_array_equal(got[0], ort_run(model, x)[0])
    for value, expected in zip(got[1:], reference(model, x, names)):
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5)


def test_expose_keeps_each_output_once_and_leaves_the_argument_alone():
    model = vgg_like()
    before = model.SerializeToString()
    exposed = expose(model, ["relu1", "prob", "relu1", "logits"])
    assert output_names(exposed) == ["prob", "relu1", "logits"]
    assert model.SerializeToString() == before
    assert output_names(expose(model, [])) == ["prob"]


def test_expose_inputs_and_initializers():
    model = conv_relu_pool()
    exposed = expose(model, ["x", "conv_w", "conv_b"])
    assert_valid(exposed)
    x = random_image(model)
    pooled, x_out, w, b = ort_run(exposed, x)
    np.testing.assert_array_equal(x_out, x)
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(w, initializers["conv_w"])
    np.testing.assert_array_equal(b, initializers["conv_b"])
    np.testing.assert_array_equal(pooled, ort_run(model, x)[0])


def test_expose_unknown_name_suggests_close_names():
    with pytest.raises(UnknownTensorError, match=r"no tensor named 'reluu1'; did you mean 'relu1', 'relu2'") as info:
        expose(gap_gemm(), ["relu1", "reluu1"])
    message = str(info.value)
    assert "\n" not in message and message.count("'relu") <= 4  # at most 3 suggestions


def test_expose_unknown_name_without_close_names():
    with pytest.raises(UnknownTensorError, match=r"no tensor named 'zzzzzzzz'; `onnxviz inspect`"):
        cut(gap_gemm(), "zzzzzzzz")


def scaled_two_inputs():
    """x -> Conv ``c`` -> Relu ``r``; ``y = r * t`` for a second input ``t`` (a temperature);
    ``u`` is unread."""
    b = GraphBuilder(3)
    r = b.node("Relu", [b.node("Conv", ["x", b.weight("w", [4, 3, 3, 3])], "c", pads=[1] * 4)], "r")
    b.node("Mul", [r, "t"], "y")
    extra = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("t", "u")]
    return b.model([image("x", 3, 8), *extra], ["y"])


def test_expose_only_makes_the_names_the_outputs_and_prunes():
    model = scaled_two_inputs()
    only = expose(model, ["r", "c"], only=True, inputs=["x"])
    assert_valid(only)
    assert output_names(only) == ["r", "c"]
    assert [i.name for i in only.graph.input] == ["x"]  # t and u are read by nothing kept
    assert [n.op_type for n in only.graph.node] == ["Conv", "Relu"]
    x = random_image(model, batch=2)
    for value, expected in zip(ort_run(only, x), reference(model, {"x": x, "t": np.ones(1, np.float32), "u": np.ones(1, np.float32)}, ["r", "c"])):
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5)
    assert [i.name for i in expose(model, ["y"], only=True, inputs=["x"]).graph.input] == ["x", "t"]
    assert [i.name for i in expose(model, ["r"], only=True).graph.input] == ["x", "t", "u"]  # by default all stay


def test_cut_keeps_only_what_the_tensor_needs():
    model = two_branch_concat()
    truncated = cut(model, "b1_relu")
    assert_valid(truncated)
    assert output_names(truncated) == ["b1_relu"]
    assert [n.op_type for n in truncated.graph.node] == ["Conv", "Relu"]
    assert {i.name for i in truncated.graph.initializer} == {"b1_w", "b1_b"}
    assert {v.name for v in truncated.graph.value_info} <= {"b1"}
    x = random_image(model)
    np.testing.assert_allclose(ort_run(truncated, x)[0], reference(model, x, ["b1_relu"])[0], rtol=1e-5, atol=1e-6)


def test_cut_at_a_merge_keeps_both_branches():
    model = two_branch_concat()
    truncated = cut(model, "cat")
    assert [n.output[0] for n in truncated.graph.node] == ["a", "b1", "b1_relu", "b2", "cat"]
    x = random_image(model)
    np.testing.assert_allclose(ort_run(truncated, x)[0], reference(model, x, ["cat"])[0], rtol=1e-5, atol=1e-6)


def test_cut_at_an_existing_output_and_at_the_input():
    model = gap_gemm()
    same = cut(model, "logits")
    assert len(same.graph.node) == len(model.graph.node)
    assert output_names(same) == ["logits"]
    at_input = cut(model, "x")
    assert_valid(at_input)
    assert len(at_input.graph.node) == 0 and len(at_input.graph.initializer) == 0
    x = random_image(model)
    np.testing.assert_array_equal(ort_run(at_input, x)[0], x)


def test_prune_drops_dead_nodes_initializers_and_shadowing_inputs():
    b_init = numpy_helper.from_array(np.ones(3, np.float32), "unused_w")
    live = numpy_helper.from_array(np.full(3, 2.0, np.float32), "live_w")
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "live_w"], ["y"]),
            helper.make_node("Add", ["x", "unused_w"], ["dead"]),
            helper.make_node("Relu", ["dead"], ["dead2"]),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]),  # an unused real input: kept
            helper.make_tensor_value_info("unused_w", TensorProto.FLOAT, [3]),  # IR 3 style: goes with its initializer
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [b_init, live],
        value_info=[helper.make_tensor_value_info("dead", TensorProto.FLOAT, [3])],
    )
    model = make_model(graph)
    pruned = prune(model)
    assert_valid(pruned)
    assert [n.op_type for n in pruned.graph.node] == ["Mul"]
    assert [i.name for i in pruned.graph.initializer] == ["live_w"]
    assert [i.name for i in pruned.graph.input] == ["x", "extra"]
    assert not pruned.graph.value_info
    assert len(model.graph.node) == 3  # argument untouched


def vector(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [2])


def test_prune_keeps_outer_names_used_by_subgraphs():
    scale = numpy_helper.from_array(np.full(2, 3.0, np.float32), "scale")
    then = helper.make_graph([helper.make_node("Mul", ["x", "scale"], ["t"])], "then", [], [vector("t")])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [vector("e")])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["c"]),
            helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [scale, numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
    )
    pruned = prune(make_model(graph))
    assert {i.name for i in pruned.graph.initializer} == {"scale", "zero"}
    np.testing.assert_array_equal(ort_run(pruned, np.array([1, 2], np.float32))[0], [3, 6])


@pytest.mark.parametrize("builder", [conv_relu_pool, gap_gemm, vgg_like, two_branch_concat])
def test_exposing_everything_changes_nothing(builder):
    model = builder()
    names = [name for node in model.graph.node for name in node.output]
    exposed = expose(model, names)
    assert_valid(exposed)
    x = random_image(model, batch=2, seed=1)
    got = ort_run(exposed, x)
    out = output_names(exposed)
    expected = reference(model, x, out)
    for name, value, ref in zip(out, got, expected):
        np.testing.assert_allclose(value, ref, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(ref).max())), err_msg=name)


# --------------------------------------------------------------------------- fold_pads
def padded_convs(pads=(0, 0, 1, 2, 0, 0, 2, 1), value=None, mode=None, opset=17, extra_reader=None):
    """x -> Pad -> {Conv 3x3 stride 2 with its own pads, Conv 1x1} (+ an optional extra reader)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((2, 3, 1, 1)).astype(np.float32), "w2")]
    kw = {} if mode is None else {"mode": mode}
    if opset >= 11:
        inits.append(numpy_helper.from_array(np.array(pads, np.int64), "pads"))
        inputs = ["x", "pads"]
        if value is not None:
            inits.append(numpy_helper.from_array(np.array(value, np.float32), "value"))
            inputs.append("value")
        pad = helper.make_node("Pad", inputs, ["p"], **kw)
    else:
        pad = helper.make_node("Pad", ["x"], ["p"], pads=list(pads), value=float(value or 0.0), **kw)
    nodes = [pad,
             helper.make_node("Conv", ["p", "w1"], ["c1"], strides=[2, 2], pads=[1, 0, 0, 1]),
             helper.make_node("Conv", ["p", "w2"], ["c2"])]
    unknown = ["N", None, None, None]
    outputs = [helper.make_tensor_value_info("c1", TensorProto.FLOAT, unknown),
               helper.make_tensor_value_info("c2", TensorProto.FLOAT, unknown)]
    if extra_reader:
        nodes.append(helper.make_node(extra_reader, ["p"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, unknown))
    graph = helper.make_graph(nodes, "padded", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 8])],
                              outputs, inits)
    return make_model(graph, opset=opset)


def _conv_pads(model):
    return [list(next(a.ints for a in n.attribute if a.name == "pads") if any(a.name == "pads" for a in n.attribute) else [])
            for n in model.graph.node if n.op_type == "Conv"]


@pytest.mark.parametrize("opset", [10, 17])
def test_fold_pads_moves_zero_padding_into_every_reading_conv(opset):
    model = padded_convs(opset=opset)
    folded = fold_pads(model)
    assert_valid(folded)
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Conv"]
    assert _conv_pads(folded) == [[2, 2, 2, 2], [1, 2, 2, 1]]  # H, W begins then ends: [1, 2, 2, 1] + own
    assert {i.name for i in folded.graph.initializer} == {"w1", "w2"}
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 8)).astype(np.float32)
    for got, want in zip(ort_run(folded, x), ort_run(model, x)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert _conv_pads(model) == [[1, 0, 0, 1], []]  # the argument is left alone


@pytest.mark.parametrize("case", [
    dict(value=1.0), dict(mode="reflect"), dict(pads=(0, 1, 1, 1, 0, 0, 1, 1)), dict(pads=(0, 0, -1, 0, 0, 0, 0, 0)),
    dict(extra_reader="Relu"),
], ids=["non-zero-fill", "reflect", "channel-axis", "negative", "other-reader"])
def test_fold_pads_leaves_other_pads_alone(case):
    model = padded_convs(**case)
    assert fold_pads(model) is model


def test_fold_pads_hands_back_a_model_without_pads_uncopied(monkeypatch):
    import onnxviz.graph.rewrite as rewrite

    folded = fold_pads(padded_convs())
    assert "Pad" not in [n.op_type for n in folded.graph.node]
    monkeypatch.setattr(rewrite, "copy_model", lambda model: pytest.fail("copied a model with no Pad"))
    assert fold_pads(folded) is folded


def test_fold_pads_keeps_named_tensors():
    model = padded_convs()
    assert fold_pads(model, keep=["p"]) is model
    assert [n.op_type for n in fold_pads(model, keep=["c1"]).graph.node] == ["Conv", "Conv"]


# --------------------------------------------------------------------------- fix_batch
def test_fix_batch_fixes_the_symbolic_batch_everywhere():
    model = shape_inferred(padded_convs())
    fixed = fix_batch(model, 3)
    assert_valid(fixed)
    dims = {info.name: [d.dim_value or d.dim_param for d in info.type.tensor_type.shape.dim]
            for info in [*fixed.graph.input, *fixed.graph.output, *fixed.graph.value_info]}
    assert dims["x"] == [3, 3, 9, 8] and dims["c1"][0] == 3 and dims["p"][0] == 3
    x = np.random.default_rng(0).standard_normal((3, 3, 9, 8)).astype(np.float32)
    for got, want in zip(ort_run(fixed, x), ort_run(model, x)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        ort_run(fixed, x[:2])
    assert fix_batch(fixed, 5) is fixed  # a static batch stays, and nothing is copied
    assert fix_batch(model, 3, inputs=[]) is model


def test_fix_input_dims_fixes_free_dims_only():
    """Free H and W (symbols, with the same symbol on an output) get sizes; a static channel
    count and the batch (None) stay; the values are unchanged."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "free",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", None])])
    model = make_model(graph)
    fixed = fix_input_dims(model, {"x": [None, 7, 5, 6]})
    assert_valid(fixed)
    dims = {info.name: [d.dim_value or d.dim_param or None for d in info.type.tensor_type.shape.dim]
            for info in [*fixed.graph.input, *fixed.graph.output]}
    assert dims == {"x": ["N", 3, 5, 6], "y": ["N", 3, 5, None]}
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(ort_run(fixed, x)[0], np.maximum(x, 0))
    assert model.graph.input[0].type.tensor_type.shape.dim[2].dim_param == "H"  # the argument is left alone
    assert fix_input_dims(fixed, {"x": [None, 7, 5, 6]}) is fixed  # nothing free: no copy
    assert fix_input_dims(fixed, {"x": [4]}) is not fixed  # the batch is still free


def shape_inferred(model):
    return onnx.shape_inference.infer_shapes(model)


def test_fold_pads_materialize_recomputes_kept_pads_exactly():
    """A kept Pad is folded too and its output recomputed by a unit depthwise Conv, off the
    main path: the exposed padded tensor and both Conv outputs keep their exact values."""
    model = padded_convs()
    folded = fold_pads(model, keep=["p"], materialize=True)
    assert_valid(folded)
    ops = {n.output[0]: n for n in folded.graph.node}
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Conv", "Conv"]
    assert list(ops["p"].input)[0] == "x" and list(ops["c1"].input)[0] == "x" and list(ops["c2"].input)[0] == "x"
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 8)).astype(np.float32)
    names = ["p", "c1", "c2"]
    got = ort_run(expose(folded, names), x, names)
    want = ort_run(expose(model, names), x, names)
    np.testing.assert_array_equal(got[0], want[0])
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- share_padded
def activated_pad(act="Clip", bounds=(0.0, 6.0), opset=17, extra_reader=False, pads=(0, 0, 0, 0, 0, 0, 1, 1)):
    """x -> Conv -> c -> act -> a -> Pad (default TF "same": bottom/right) -> p -> depthwise Conv -> y."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 3, 1, 1)).astype(np.float32) * 3, "w"),
             numpy_helper.from_array(rng.standard_normal((16, 1, 3, 3)).astype(np.float32), "dw")]
    if act == "Clip" and opset >= 11:
        inits += [numpy_helper.from_array(np.array(b, np.float32), n) for n, b in zip(("lo", "hi"), bounds)]
        activation = helper.make_node("Clip", ["c", "lo", "hi"], ["a"])
    elif act == "Clip":
        activation = helper.make_node("Clip", ["c"], ["a"], min=bounds[0], max=bounds[1])
    else:
        activation = helper.make_node(act, ["c"], ["a"])
    pads = list(pads)
    if opset >= 11:
        inits.append(numpy_helper.from_array(np.array(pads, np.int64), "pads"))
        pad = helper.make_node("Pad", ["a", "pads"], ["p"])
    else:
        pad = helper.make_node("Pad", ["a"], ["p"], pads=pads)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), activation, pad,
             helper.make_node("Conv", ["p", "dw"], ["y"], group=16, strides=[2, 2])]
    unknown = ["N", None, None, None]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, unknown)]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["a"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, unknown))
    graph = helper.make_graph(nodes, "activated_pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 10, 9])],
                              outputs, inits)
    return make_model(graph, opset=opset)


@pytest.mark.parametrize("act,opset", [("Clip", 17), ("Clip", 10), ("Relu", 17), ("LeakyRelu", 17), ("Tanh", 17)])
def test_share_padded_computes_the_padded_copy_only(act, opset):
    """act then Pad becomes a padding unit Conv then act: the padded tensor is exact and
    the unpadded one is its interior, never computed on its own."""
    model = activated_pad(act, opset=opset)
    names = ["c", "a", "p", "y"]
    shared, views = share_padded(model, names)
    assert_valid(shared)
    assert views == {"a": ("p", [0, 0, 1, 1])}
    assert "a" not in {out for node in shared.graph.node for out in node.output}
    assert [n.op_type for n in shared.graph.node] == ["Conv", "Conv", act, "Conv"]
    assert "pads" not in {i.name for i in shared.graph.initializer}
    x = np.random.default_rng(0).standard_normal((2, 3, 10, 9)).astype(np.float32)
    want = dict(zip(names, reference(model, x, names)))
    got = dict(zip(["c", "p", "y"], ort_run(expose(shared, ["c", "p"]), x, ["c", "p", "y"])))
    if act == "Clip":
        assert (want["c"] > 6).any() and (want["c"] < 0).any()  # both bounds are hit
    np.testing.assert_allclose(got["c"], want["c"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got["p"][:, :, -1], 0)
    np.testing.assert_array_equal(got["p"][:, :, :, -1], 0)
    crop = got["p"][:, :, :-1, :-1]
    np.testing.assert_allclose(crop, want["a"], rtol=1e-5, atol=1e-5)
    # exact against the activation of onnxruntime's own c
    activation = {"Clip": lambda v: np.clip(v, 0, 6), "Relu": lambda v: np.maximum(v, 0),
                  "LeakyRelu": lambda v: np.where(v < 0, np.float32(0.01) * v, v), "Tanh": None}[act]
    if activation is not None:
        np.testing.assert_array_equal(crop, activation(got["c"]))
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case,keep", [
    (dict(), ["a", "y"]), (dict(), ["p", "y"]), (dict(extra_reader=True), ["a", "p"]),
], ids=["padded-not-kept", "unpadded-not-kept", "other-reader"])
def test_share_padded_needs_both_kept_and_a_single_reader(case, keep):
    model = activated_pad(**case)
    assert share_padded(model, keep) == (model, {})


@pytest.mark.parametrize("bounds", [(1.0, 6.0), (-6.0, -1.0)])
def test_share_padded_keeps_an_activation_that_moves_zero(bounds):
    """Clip(0) != 0 cannot move behind the padding: the Pad stays, the view still holds."""
    model = activated_pad("Clip", bounds=bounds)
    shared, views = share_padded(model, ["a", "p"])
    assert shared is model and views == {"a": ("p", [0, 0, 1, 1])}


@pytest.mark.parametrize("pads", [(0, 0, 0, 0, 0, 0, 1, 1), (0, 0, 2, 1, 0, 0, 0, 3), (0, 0, 1, 1, 0, 0, 1, 1)])
def test_model_activations_returns_the_view(pads):
    """The unpadded tensor is the padded copy's interior, with padding at the start, the
    end and both ends of an axis."""
    import onnxviz

    model = activated_pad(pads=pads)
    names = ["c", "a", "p", "y"]
    x = np.random.default_rng(2).standard_normal((3, 3, 10, 9)).astype(np.float32)
    acts = onnxviz.Model(model, provider="cpu").activations(x, names)
    assert list(acts) == names
    assert acts["a"].base is not None and np.shares_memory(acts["a"], acts["p"])
    for name, want in zip(names, reference(model, x, names)):
        assert acts[name].shape == want.shape
        np.testing.assert_allclose(acts[name], want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_model_activations_of_padded_tensors():
    import onnxviz

    model = padded_convs()
    x = np.random.default_rng(1).standard_normal((3, 3, 9, 8)).astype(np.float32)
    acts = onnxviz.Model(model, provider="cpu").activations(x, ["p", "c2"])
    want = ort_run(expose(model, ["p", "c2"]), x, ["p", "c2"])
    np.testing.assert_array_equal(acts["p"], want[0])
    np.testing.assert_allclose(acts["c2"], want[1], rtol=1e-6, atol=1e-6)
