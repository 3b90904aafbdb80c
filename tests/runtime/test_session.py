"""Sessions: the cache, batched runs against one big run, input checks and their messages."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fixtures import FLOAT, GraphBuilder, add_layer, gap_gemm, image, ort_run
from onnx import helper, numpy_helper

from onnxviz.errors import ImageError, ModelLoadError, OnnxvizError, UnknownTensorError
from onnxviz.graph.load import make_model
from onnxviz.runtime import session as session_module
from onnxviz.runtime.providers import CPU
from onnxviz.runtime.session import Session, clear_cache, get_session, session_options


@pytest.fixture(autouse=True)
def empty_cache():
    clear_cache()
    yield
    clear_cache()


def conv_net(batch: int | str = "N", size: int = 8, seed: int = 0) -> onnx.ModelProto:
    """Conv 3x3 -> Relu -> GAP -> Flatten -> Gemm ``logits`` on ``x`` (batch, 3, size, size).

    The same seed gives the same weights whatever the batch dimension, so a
    static-batch model has a dynamic twin to compare against.
    """
    b = GraphBuilder(seed)
    x, c = add_layer(b, "x", 3, ("Conv", {"kernel_shape": [3, 3], "pads": [1] * 4}), "conv", 4)
    x = b.node("Relu", [x], "relu")
    x = b.node("GlobalAveragePool", [x], "gap")
    x = b.node("Flatten", [x], "flat", axis=1)
    x = b.node("Gemm", [x, b.weight("w", [5, 4]), b.bias("bias", 5)], "logits", transB=1)
    inp = helper.make_tensor_value_info("x", FLOAT, [batch, 3, size, size])
    return b.model([inp], [x, "relu"], name=f"conv_net_{batch}")


def two_input_net() -> onnx.ModelProto:
    """``y = x * s + shift``: x and s (N, 2) are per-sample, shift (2,) is shared."""
    nodes = [helper.make_node("Mul", ["x", "s"], ["xs"]), helper.make_node("Add", ["xs", "shift"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "two_inputs",
        [
            helper.make_tensor_value_info("x", FLOAT, ["N", 2]),
            helper.make_tensor_value_info("s", FLOAT, ["N", 2]),
            helper.make_tensor_value_info("shift", FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", FLOAT, ["N", 2])],
    )
    return make_model(graph, opset=17)


def tensor(name: str, shape, elem_type: int = FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def batch_of(n: int, size: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


# --------------------------------------------------------------------------- the session itself
def test_session_describes_the_model():
    s = Session(conv_net(), [CPU], threads=1)
    assert s.input_names == ["x"]
    assert s.output_names == ["logits", "relu"]
    assert s.providers == [CPU]
    assert s.input_batch_sizes == {"x": None}
    assert Session(conv_net(batch=1), [CPU]).input_batch_sizes == {"x": 1}


def test_run_matches_plain_onnxruntime():
    model = conv_net()
    x = batch_of(3)
    out = get_session(model, "cpu").run({"x": x})
    logits, relu = ort_run(model, x)
    np.testing.assert_array_equal(out["logits"], logits)
    np.testing.assert_array_equal(out["relu"], relu)
    assert list(get_session(model, "cpu").run({"x": x}, ["relu"])) == ["relu"]


def test_session_options():
    options = session_options(3)
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1
    assert options.log_severity_level == 4
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session_options().intra_op_num_threads == 0  # onnxruntime's default
    with pytest.raises(OnnxvizError, match="threads must be a positive integer"):
        session_options(0)
    assert options.execution_order == ort.ExecutionOrder.DEFAULT
    assert session_options(order="priority").execution_order == ort.ExecutionOrder.PRIORITY_BASED
    with pytest.raises(OnnxvizError, match="order must be one of"):
        session_options(order="fastest")


def test_a_failing_run_is_one_error_without_onnxruntime_log_lines(capfd):
    """onnxruntime printed its own coloured [E:onnxruntime...] line before the exception."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "bad_reshape",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 4])], [helper.make_tensor_value_info("y", FLOAT, [3])],
        [numpy_helper.from_array(np.array([3], np.int64), "shape")])
    session = get_session(make_model(graph, opset=17), "cpu")
    capfd.readouterr()
    with pytest.raises(OnnxvizError, match="onnxruntime could not run the model"):
        session.run({"x": np.ones((1, 4), np.float32)})
    assert "onnxruntime" not in capfd.readouterr().err


def test_priority_order_gives_the_same_values():
    model = conv_net()
    x = batch_of(3)
    session = get_session(model, "cpu", order="priority")
    assert session._session.get_session_options().execution_order == ort.ExecutionOrder.PRIORITY_BASED
    for got, want in zip(session.run({"x": x}).values(), ort_run(model, x)):
        np.testing.assert_array_equal(got, want)


def test_unloadable_model_is_a_model_error():
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example.unknown")
    graph = helper.make_graph(
        [node], "custom", [tensor("x", [1])], [tensor("y", [1])]
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example.unknown", 1)]
    model = make_model(graph, opset_imports=opsets)
    with pytest.raises(ModelLoadError, match="onnxruntime .* cannot load the model .*Frobnicate"):
        get_session(model, "cpu")


# --------------------------------------------------------------------------- the cache
def test_same_model_bytes_give_the_same_session():
    model = conv_net()
    first = get_session(model, "cpu")
    assert get_session(model, "cpu") is first
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    assert get_session(copy, "cpu") is first  # keyed by content, not by object
    assert get_session(model.SerializeToString(), "cpu") is first


def test_different_model_or_threads_give_another_session():
    first = get_session(conv_net(seed=0), "cpu")
    assert get_session(conv_net(seed=1), "cpu") is not first
    assert get_session(conv_net(seed=0), "cpu", threads=1) is not first
    assert get_session(conv_net(seed=0), "cpu", order="priority") is not first


def test_cache_keeps_the_most_recent(monkeypatch):
    monkeypatch.setattr(session_module, "CACHE_SIZE", 2)
    a, b, c = (conv_net(seed=i) for i in range(3))
    sa = get_session(a, "cpu")
    sb = get_session(b, "cpu")
    assert get_session(a, "cpu") is sa  # a is now the most recent
    get_session(c, "cpu")  # evicts b, the least recent
    assert get_session(a, "cpu") is sa
    assert get_session(b, "cpu") is not sb


def test_clear_cache_forgets_sessions():
    model = conv_net()
    first = get_session(model, "cpu")
    clear_cache()
    assert get_session(model, "cpu") is not first


def big_net(seed: int = 0) -> onnx.ModelProto:
    """Conv 3 -> 64 -> Relu -> Conv 64 -> 32 (73 KB of weights) -> GAP -> Flatten -> Gemm."""
    b = GraphBuilder(seed)
    x, c = add_layer(b, "x", 3, ("Conv", {"kernel_shape": [3, 3], "pads": [1] * 4}), "conv1", 64)
    x = b.node("Relu", [x], "relu1")
    x, c = add_layer(b, x, c, ("Conv", {"kernel_shape": [3, 3], "pads": [1] * 4}), "conv2", 32)
    x = b.node("GlobalAveragePool", [x], "gap")
    x = b.node("Flatten", [x], "flat", axis=1)
    x = b.node("Gemm", [x, b.weight("w", [5, 32]), b.bias("bias", 5)], "logits", transB=1)
    return b.model([image("x", 3, 8)], [x], name="big_net")


def test_large_weights_travel_beside_the_model_bytes():
    """Initializers of 16 KB and more go to onnxruntime as arrays, not inside the bytes:
    same outputs as the whole model's bytes, and the cache still tells weights apart."""
    model = big_net()
    packed = session_module.pack(model)
    assert packed.names == ["conv2_w"]  # 64 * 32 * 9 floats; conv1_w (6.9 KB) stays inside
    np.testing.assert_array_equal(packed.arrays[0], numpy_helper.to_array(model.graph.initializer[2]))
    assert len(packed.data) < 16 * 1024 < len(model.SerializeToString())
    x = batch_of(2)
    whole = ort.InferenceSession(model.SerializeToString(), providers=[CPU]).run(None, {"x": x})[0]
    session = get_session(model, "cpu")
    np.testing.assert_array_equal(session.run({"x": x})["logits"], whole)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    assert get_session(copy, "cpu") is session
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    weight = numpy_helper.to_array(changed.graph.initializer[2]).copy()
    weight[0, 0, 0, 0] += 1.0
    changed.graph.initializer[2].CopyFrom(numpy_helper.from_array(weight, "conv2_w"))
    other = get_session(changed, "cpu")
    assert other is not session
    assert not np.array_equal(other.run({"x": x})["logits"], whole)


def test_weights_not_in_raw_data_stay_inside():
    model = big_net()
    init = model.graph.initializer[2]
    values = numpy_helper.to_array(init).ravel().tolist()
    init.ClearField("raw_data")
    init.float_data.extend(values)
    assert session_module.pack(model).names == []
    x = batch_of(1)
    np.testing.assert_allclose(get_session(model, "cpu").run({"x": x})["logits"], ort_run(big_net(), x)[0], rtol=1e-6)


# --------------------------------------------------------------------------- batched runs
@pytest.mark.parametrize("batch_size", [1, 3, 7, None])
def test_run_batched_equals_one_big_run(batch_size):
    model = conv_net()
    x = batch_of(10)
    logits, relu = ort_run(model, x)  # one onnxruntime call on all 10
    out = get_session(model, "cpu").run_batched({"x": x}, batch_size=batch_size)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["relu"], relu, rtol=1e-5, atol=1e-6)
    assert out["logits"].dtype == np.float32 and out["logits"].shape == (10, 5)


@pytest.mark.parametrize("batch_size", [1, 3, 7, None])
def test_static_batch_one_runs_one_sample_at_a_time(batch_size):
    static = get_session(conv_net(batch=1), "cpu")
    x = batch_of(6)
    (logits, _) = ort_run(conv_net(), x)  # the dynamic twin, one big run
    out = static.run_batched({"x": x}, outputs=["logits"], batch_size=batch_size)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 4, 9])
def test_static_batch_above_one_is_padded_and_cut(n):
    static = get_session(conv_net(batch=4), "cpu")
    x = batch_of(n)
    (logits, _) = ort_run(conv_net(), x)
    out = static.run_batched({"x": x}, outputs=["logits"], batch_size=2)
    assert out["logits"].shape == (n, 5)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-6)


def test_unbatched_inputs_go_whole_to_every_chunk():
    model = two_input_net()
    rng = np.random.default_rng(0)
    x, s = rng.standard_normal((2, 5, 2)).astype(np.float32)
    shift = np.array([10.0, -3.0], np.float32)
    out = get_session(model, "cpu").run_batched(
        {"x": x, "s": s, "shift": shift}, batch_size=2, batched=["x", "s"]
    )
    np.testing.assert_allclose(out["y"], x * s + shift, rtol=1e-6)


def test_batched_inputs_must_agree_in_length():
    feeds = {"x": np.ones((5, 2), np.float32), "s": np.ones((4, 2), np.float32), "shift": np.zeros(2, np.float32)}
    with pytest.raises(ImageError, match="same number of samples, got x: 5, s: 4"):
        get_session(two_input_net(), "cpu").run_batched(feeds, batch_size=2, batched=["x", "s"])


def test_batched_names_must_be_fed():
    with pytest.raises(ImageError, match=r"batched input\(s\) \['seed'\] are not in the feeds"):
        get_session(conv_net(), "cpu").run_batched({"x": batch_of(2)}, batched=["seed"])


def test_empty_batch_is_refused():
    with pytest.raises(ImageError, match="empty batch"):
        get_session(conv_net(), "cpu").run_batched({"x": batch_of(0)})


def test_output_without_batch_axis_is_refused_across_chunks():
    nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0)]
    graph = helper.make_graph(
        nodes, "sum", [tensor("x", ["N", 2])], [tensor("total", [])]
    )
    s = get_session(make_model(graph, opset=17), "cpu")
    x = np.ones((4, 2), np.float32)
    assert s.run_batched({"x": x}, batch_size=8)["total"] == 8.0  # one chunk: returned as is
    with pytest.raises(OnnxvizError, match="axis 0 is not the batch; run it unbatched"):
        s.run_batched({"x": x}, batch_size=3)


def test_batch_size_must_be_positive():
    with pytest.raises(OnnxvizError, match="batch size must be a positive integer"):
        get_session(conv_net(), "cpu").run_batched({"x": batch_of(2)}, batch_size=0)


def test_progress_bar_goes_to_stderr_only(capsys):
    s = get_session(conv_net(), "cpu")
    s.run_batched({"x": batch_of(5)}, batch_size=2, progress="scoring crops")
    out, err = capsys.readouterr()
    assert out == "" and "scoring crops" in err
    s.run_batched({"x": batch_of(5)}, batch_size=2, progress=False)
    assert capsys.readouterr() == ("", "")
    s.run_batched({"x": batch_of(2)}, batch_size=2, progress="one chunk")  # a single call still shows it
    out, err = capsys.readouterr()
    assert out == "" and "one chunk" in err


# --------------------------------------------------------------------------- input checks
def test_wrong_spatial_size_says_what_to_do():
    s = get_session(gap_gemm(size=16), "cpu")
    with pytest.raises(ImageError) as info:
        s.run({"x": np.zeros((1, 3, 20, 20), np.float32)})
    assert str(info.value) == (
        "model input 'x' expects (N, 3, 16, 16), got (1, 3, 20, 20): preprocess the image with "
        "the model's preprocessing, e.g. Model.preprocess(path)"
    )


def test_missing_batch_axis_suggests_adding_one():
    message = r"expects \(N, 3, 16, 16\), got \(3, 16, 16\): add a batch axis \(x\[None\]\)"
    with pytest.raises(ImageError, match=message):
        get_session(gap_gemm(size=16), "cpu").run({"x": np.zeros((3, 16, 16), np.float32)})


def test_nhwc_array_for_nchw_model_suggests_transpose():
    message = r"looks NHWC but the model wants NCHW: transpose it \(x.transpose\(0, 3, 1, 2\)\)"
    with pytest.raises(ImageError, match=message):
        get_session(gap_gemm(size=16), "cpu").run({"x": np.zeros((2, 16, 16, 3), np.float32)})


def test_nchw_array_for_nhwc_model_suggests_transpose():
    from fixtures import nhwc_model

    with pytest.raises(ImageError, match=r"looks NCHW but the model wants NHWC"):
        get_session(nhwc_model(size=16), "cpu").run({"x": np.zeros((2, 3, 16, 16), np.float32)})


def test_missing_input_is_named():
    message = r"no array given for model input\(s\) 'shift' of shape \(2,\); feed every input by name"
    with pytest.raises(ImageError, match=message):
        get_session(two_input_net(), "cpu").run({"x": np.ones((1, 2), np.float32), "s": np.ones((1, 2), np.float32)})


def test_unknown_input_and_output_names():
    s = get_session(conv_net(), "cpu")
    with pytest.raises(UnknownTensorError, match=r"no input\(s\) \['image'\]; its inputs are \['x'\]"):
        s.run({"x": batch_of(1), "image": batch_of(1)})
    with pytest.raises(UnknownTensorError, match=r"no output\(s\) \['conv'\]; its outputs are \['logits', 'relu'\]"):
        s.run({"x": batch_of(1)}, ["conv"])


def test_static_batch_in_plain_run_points_to_run_batched():
    with pytest.raises(ImageError, match="fixed at batch 1, got 3 sample.*use Session.run_batched"):
        get_session(conv_net(batch=1), "cpu").run({"x": batch_of(3)})


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.uint8, np.int64])
def test_numeric_arrays_are_converted_to_float32(dtype):
    s = get_session(conv_net(), "cpu")
    x = (batch_of(2) * 10).astype(dtype)
    expected = ort_run(conv_net(), x.astype(np.float32))[0]
    np.testing.assert_array_equal(s.run({"x": x})["logits"], expected)


def test_non_numeric_array_is_refused():
    with pytest.raises(ImageError, match=r"takes tensor\(float\), got an array of <U1"):
        get_session(conv_net(), "cpu").run({"x": np.full((1, 3, 8, 8), "a")})


def test_runtime_failure_is_an_onnxviz_error():
    """A Reshape whose target does not fit the data fails inside onnxruntime."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "bad_reshape",
        [tensor("x", ["N", 4]), tensor("shape", [2], onnx.TensorProto.INT64)],
        [helper.make_tensor_value_info("y", FLOAT, None)],
    )
    s = get_session(make_model(graph, opset=17), "cpu")
    message = r"onnxruntime could not run the model on inputs \(x: \(2, 4\), shape: \(2,\)\)"
    with pytest.raises(OnnxvizError, match=message):
        s.run({"x": np.ones((2, 4), np.float32), "shape": np.array([3, 3], np.int64)})


def test_image_helper_matches_fixture_layout():
    """The fixtures' image input is dynamic in N: sessions report no static batch."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu", [image("x", 3, 4)], [tensor("y", None)]
    )
    assert get_session(make_model(graph, opset=17), "cpu").input_batch_sizes == {"x": None}
