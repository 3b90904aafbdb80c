"""graph.load: loading, checking, IR fixing, shape inference, shapes and types."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fixtures import conv_relu_pool, gap_gemm, ort_run, random_image, vgg_like
import onnxviz.graph.load as load_module
from onnxviz.errors import ModelLoadError
from onnxviz.graph.load import (
    MAX_IR_VERSION,
    fix_ir_version,
    infer_shapes,
    load_model,
    make_model,
    skeleton,
    tensor_dtypes,
    tensor_shapes,
    with_weights,
)


def test_load_from_path_bytes_and_proto_agree(tmp_path):
    model = conv_relu_pool()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    loaded = [load_model(str(path)), load_model(path), load_model(path.read_bytes()), load_model(model)]
    x = random_image(model)
    expected = ort_run(model, x)[0]
    for m in loaded:
        np.testing.assert_array_equal(ort_run(m, x)[0], expected)
        assert m.ir_version <= MAX_IR_VERSION


def test_load_proto_is_copied_not_mutated():
    model = conv_relu_pool()
    model.ir_version = 14
    del model.graph.value_info[:]
    before = model.SerializeToString()
    loaded = load_model(model)
    assert model.SerializeToString() == before
    assert loaded.ir_version == MAX_IR_VERSION
    assert loaded.graph.value_info  # shapes were inferred on the copy


def test_load_infers_shapes():
    model = vgg_like(size=16, filters=4)
    del model.graph.value_info[:]
    shapes = tensor_shapes(load_model(model))
    assert shapes["conv1"] == ("N", 4, 16, 16)
    assert shapes["pool2"] == ("N", 4, 4, 4)
    assert shapes["flat"] == ("N", 64)
    assert shapes["prob"] == ("N", 5)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelLoadError, match=r"nope\.onnx.*does not exist; check the path"):
        load_model(path)
    with pytest.raises(ModelLoadError, match="is a folder; give the .onnx file in it"):
        load_model(tmp_path)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(ModelLoadError, match=r"garbage\.onnx.*not an ONNX model") as info:
        load_model(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelLoadError, match="model bytes .*not an ONNX model"):
        load_model(b"hello, this is not a model")


def test_text_file(tmp_path):
    path = tmp_path / "readme.onnx"
    path.write_text("# not a model\n" * 20)
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        load_model(path)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated_file(tmp_path, fraction):
    data = gap_gemm().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelLoadError, match=r"cut\.onnx") as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_checker_failure_names_the_problem(tmp_path):
    model = conv_relu_pool()
    model.graph.node[1].input[0] = "no_such_tensor"  # Relu reads an undefined tensor
    path = tmp_path / "broken.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelLoadError, match=r"broken\.onnx.*fails the ONNX checker: .*no_such_tensor") as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_external_data_round_trip(tmp_path):
    model = gap_gemm(filters=32)
    folder = tmp_path / "ext"
    folder.mkdir()
    path = folder / "model.onnx"
    saved = onnx.ModelProto()
    saved.CopyFrom(model)  # onnx.save moves the data of the proto it saves out to the file
    onnx.save(saved, path, save_as_external_data=True, location="weights.bin", size_threshold=64)
    assert (folder / "weights.bin").stat().st_size > 32 * 32 * 9 * 4
    assert os.path.getsize(path) < 4096
    loaded = load_model(path)
    x = random_image(model)
    np.testing.assert_array_equal(ort_run(loaded, x)[0], ort_run(model, x)[0])
    (folder / "weights.bin").unlink()
    with pytest.raises(ModelLoadError, match=r"model\.onnx.*external data.*next to the \.onnx file"):
        load_model(path)


@pytest.mark.parametrize(
    "ir,opset,expected",
    [
        (14, 17, MAX_IR_VERSION),  # onnx 1.23's default, too new for onnxruntime
        (10, 17, 10),
        (8, 17, 8),  # already readable: kept
        (3, 9, 4),  # opset 9 needs IR 4
        (3, 7, 3),
        (0, 13, 7),  # unset
    ],
)
def test_fix_ir_version(ir, opset, expected):
    model = conv_relu_pool(opset=max(opset, 7))
    model.ir_version = ir
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", opset))
    assert fix_ir_version(model) is model
    assert model.ir_version == expected


def test_fix_ir_version_keeps_what_a_new_opset_needs():
    model = conv_relu_pool()
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 23))
    model.opset_import.append(helper.make_opsetid("com.example.custom", 1))  # unknown domains are ignored
    model.ir_version = 14
    needed = helper.find_min_ir_version_for([helper.make_opsetid("", 23)])
    assert fix_ir_version(model).ir_version == max(min(14, MAX_IR_VERSION), needed)


def test_make_model_sets_opset_and_ir():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = make_model(graph, opset=13, producer_name="test")
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    assert model.ir_version == 10
    assert model.producer_name == "test"
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(ort_run(model, np.array([-1, 2], np.float32))[0], [0, 2])


def test_infer_shapes_passes_unknown_ops_through():
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["m"], domain="com.example"), helper.make_node("Relu", ["m"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    model = make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    result = infer_shapes(model)
    assert tensor_shapes(result)["y"] == (3,)
    assert "m" not in tensor_shapes(result)


def test_infer_shapes_in_place_writes_the_same_shapes_into_the_model():
    model = conv_relu_pool()
    del model.graph.value_info[:]
    copied = infer_shapes(model)
    assert copied is not model and not model.graph.value_info
    assert infer_shapes(model, copy=False) is model
    assert model.graph.value_info and tensor_shapes(model) == tensor_shapes(copied)


def test_infer_shapes_returns_the_model_when_inference_raises(monkeypatch):
    # onnx raises for models over 2 GiB and on internal errors; simulate one
    def boom(*args, **kwargs):
        raise onnx.shape_inference.InferenceError("[ShapeInferenceError] simulated")

    model = conv_relu_pool()
    expected = {k: v for k, v in tensor_shapes(infer_shapes(model)).items() if k in ("conv", "relu", "pool")}
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", boom)
    shapes = tensor_shapes(infer_shapes(model))  # onnxruntime's symbolic inference stands in
    assert {k: shapes[k] for k in expected} == expected and len(expected) == 3
    monkeypatch.setattr(load_module, "_symbolic_inferred", lambda skeleton: None)
    assert infer_shapes(model) is model
    assert load_model(model).graph.node  # loading still works, without new shapes


def _chunk_then_strided_conv() -> onnx.ModelProto:
    """torch's ``x.chunk(2, dim=1)[0]`` (Slice ends = Shape(x)[1] / 2, as the classic exporter
    writes it), then a 3x3 stride-2 Conv: onnx's data propagation stops at the Div."""
    f, i = TensorProto.FLOAT, TensorProto.INT64
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["c"], axis=0),
        helper.make_node("Div", ["c", "two"], ["half"]),
        helper.make_node("Unsqueeze", ["half", "zero"], ["end"]),
        helper.make_node("Slice", ["x", "zero", "end", "one1"], ["y"]),
        helper.make_node("Conv", ["y", "w"], ["z"], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    inits = [
        helper.make_tensor("one", i, [], [1]), helper.make_tensor("two", i, [], [2]),
        helper.make_tensor("zero", i, [1], [0]), helper.make_tensor("one1", i, [1], [1]),
        numpy_helper.from_array(np.ones((3, 2, 3, 3), np.float32), "w"),
    ]
    graph = helper.make_graph(nodes, "chunk", [helper.make_tensor_value_info("x", f, ["N", 4, 8, 8])],
                              [helper.make_tensor_value_info("z", f, None)], initializer=inits)
    return make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_infer_shapes_follows_shape_subgraphs_onnx_cannot():
    model = _chunk_then_strided_conv()
    plain = onnx.shape_inference.infer_shapes(model, data_prop=True)
    assert tensor_shapes(plain)["z"][2:] != (4, 4)  # the reason for the fallback
    shapes = tensor_shapes(infer_shapes(model))
    assert shapes["y"] == ("N", 2, 8, 8) and shapes["z"] == ("N", 3, 4, 4)
    x = np.random.default_rng(0).standard_normal((2, 4, 8, 8)).astype(np.float32)
    assert ort_run(model, x)[0].shape == (2, 3, 4, 4)  # the shapes onnxruntime computes


def test_infer_shapes_does_not_touch_its_argument():
    model = vgg_like()
    del model.graph.value_info[:]
    before = model.SerializeToString()
    result = infer_shapes(model)
    assert model.SerializeToString() == before
    assert result is not model and len(result.graph.value_info) > 5
    # the weights were hidden from inference, not dropped
    assert len(result.graph.initializer) == len(model.graph.initializer)
    assert all("_w" not in v.name for v in result.graph.value_info)


def test_tensor_shapes_and_dtypes():
    model = vgg_like(size=16, filters=4, hidden=16)
    shapes = tensor_shapes(model)
    assert shapes["x"] == ("N", 3, 16, 16)
    assert shapes["conv1_w"] == (4, 3, 3, 3)
    assert shapes["fc1"] == ("N", 16)
    dtypes = tensor_dtypes(model)
    assert dtypes["x"] == dtypes["fc1_w"] == dtypes["prob"] == TensorProto.FLOAT


def test_tensor_shapes_unknown_dims_are_none():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    shapes = tensor_shapes(make_model(graph))
    assert shapes["x"] == ("batch", None, 3)
    assert "y" not in shapes  # rank unknown


def test_infer_shapes_never_equates_unrelated_free_dims():
    """(A, 3) * (B, 3): A or B may be a broadcast 1, so the product's first dim is neither
    symbol (onnxruntime's auto-merging inference would call it one of them)."""
    d = TensorProto.FLOAT
    graph = helper.make_graph([helper.make_node("Mul", ["a", "b"], ["y"])], "free",
                              [helper.make_tensor_value_info("a", d, ["A", 3]), helper.make_tensor_value_info("b", d, ["B", 3])],
                              [helper.make_tensor_value_info("y", d, None)])
    assert tensor_shapes(infer_shapes(make_model(graph, opset_imports=[helper.make_opsetid("", 17)])))["y"][0] not in ("A", "B")


def test_infer_shapes_writes_no_files(monkeypatch, tmp_path):
    """onnxruntime's symbolic inference, when it cannot finish (an op it does not know),
    dumps the model into the working folder; onnxviz must not leave files behind."""
    monkeypatch.chdir(tmp_path)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mystery", ["r"], ["m"], domain="com.example"),
         helper.make_node("Relu", ["m"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    assert tensor_shapes(infer_shapes(model))["r"] == ("N", 2)
    assert list(tmp_path.iterdir()) == []


def test_a_file_newer_than_this_onnx_is_checked_in_memory(tmp_path):
    """The checker reads a file by path only when it knows the file's IR version; a newer
    one is checked after its IR version is lowered, as before."""
    model = conv_relu_pool()
    model.ir_version = onnx.IR_VERSION + 1
    path = tmp_path / "new.onnx"
    onnx.save(model, path)
    loaded = load_model(path)
    assert loaded.ir_version <= MAX_IR_VERSION
    x = random_image(model)
    np.testing.assert_array_equal(ort_run(loaded, x)[0], ort_run(conv_relu_pool(), x)[0])


def test_skeleton_hides_large_weights_and_with_weights_puts_them_back():
    model = gap_gemm(filters=32)
    model.metadata_props.add(key="onnxviz.labels", value='["a", "b", "c", "d", "e"]')
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    large = {name for name, size in sizes.items() if size > 1024}
    assert large == {"conv2_w"} and len(sizes) > 1
    bare = skeleton(model)
    onnx.checker.check_model(bare)
    assert {init.name for init in bare.graph.initializer} == set(sizes) - large
    hidden = {info.name: info for info in bare.graph.input if info.name in large}
    assert [d.dim_value for d in hidden["conv2_w"].type.tensor_type.shape.dim] == [32, 32, 3, 3]
    assert bare.metadata_props == model.metadata_props and bare.opset_import == model.opset_import
    restored = with_weights(bare, model)
    assert [info.name for info in restored.graph.input] == ["x"]
    onnx.checker.check_model(restored)
    x = random_image(model)
    np.testing.assert_array_equal(ort_run(restored, x)[0], ort_run(model, x)[0])
    assert len(model.graph.initializer) == len(sizes)  # the argument is untouched


def test_opset_upgrade_through_the_skeleton_matches_converting_everything():
    from onnx import version_converter

    from onnxviz.autodiff.driver import CONVERT_TO, upgrade_opset

    model = gap_gemm(filters=32, opset=9)
    fast = upgrade_opset(model)
    whole = version_converter.convert_version(model, CONVERT_TO)
    assert [n.op_type for n in fast.graph.node] == [n.op_type for n in whole.graph.node]
    assert [i.name for i in fast.graph.input] == ["x"]
    assert sorted(i.name for i in fast.graph.initializer) == sorted(i.name for i in whole.graph.initializer)
    x = random_image(model)
    np.testing.assert_array_equal(ort_run(fast, x)[0], ort_run(whole, x)[0])
