"""Model: how a class named on the command line (--target) becomes an index; which sessions
run in which order."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

import onnxviz
from onnxviz.errors import OnnxvizError
from tests.fixtures import gap_gemm

LABELS = ["tabby cat", "tiger cat", "Tabby", "oystercatcher", "espresso", "espresso maker", "Cardigan",
          "cardigan"]


@pytest.fixture(scope="module")
def model() -> onnxviz.Model:
    proto = gap_gemm(classes=len(LABELS))
    proto.metadata_props.add(key="onnxviz.labels", value=json.dumps(LABELS))
    return onnxviz.Model(proto, provider="cpu")


@pytest.mark.parametrize("target, index", [
    (3, 3), ("4", 4), (" 5 ", 5),        # indices, as numbers or text
    ("espresso", 4),                      # the label itself wins over the labels containing it
    ("TABBY", 2),                         # exact, ignoring case, though two other labels contain it
    ("oyster", 3), ("Maker", 5),          # the one label that contains the text
    ("Cardigan", 6), ("cardigan", 7),     # ImageNet's corgi and sweater differ only in case
])
def test_targets_resolve(model, target, index):
    assert model.class_index(target) == index


def test_text_in_several_labels_lists_them(model):
    with pytest.raises(OnnxvizError) as caught:
        model.class_index("cat")
    message = str(caught.value)
    assert "matches 3 labels" in message
    assert "'tabby cat' (0)" in message and "'oystercatcher' (3)" in message
    assert "give one label exactly as written or its class index" in message


def test_labels_equal_but_for_case_are_ambiguous(model):
    with pytest.raises(OnnxvizError, match=r"matches 2 labels: 'Cardigan' \(6\), 'cardigan' \(7\)"):
        model.class_index("CARDIGAN")


def test_text_in_no_label_suggests_close_ones(model):
    with pytest.raises(OnnxvizError) as caught:
        model.class_index("tabbby cat")
    message = str(caught.value)
    assert "no class label contains 'tabbby cat'" in message
    assert "close: 'tabby cat' (0)" in message
    assert "onnxviz inspect --json" in message
    with pytest.raises(OnnxvizError, match=r"close: 'Cardigan' \(6\), 'cardigan' \(7\);"):
        model.class_index("cardigun")  # labels equal but for case are both suggested, once each


def test_names_need_labels():
    with pytest.raises(OnnxvizError, match="no class labels"):
        onnxviz.Model(gap_gemm(), provider="cpu").class_index("cat")
    assert onnxviz.Model(gap_gemm(), provider="cpu").class_index("2") == 2


def test_activations_run_in_priority_order_and_the_rest_in_the_default(model):
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    model.activations(x, ["relu1", "relu2"])
    model.gradient(x, target=0)
    orders = {key[0]: session._session.get_session_options().execution_order
              for key, session in model._fixed_batch.items()}
    assert orders == {"expose": ort.ExecutionOrder.PRIORITY_BASED, "grad": ort.ExecutionOrder.DEFAULT}
    forward = model.session(model.proto)._session.get_session_options()
    assert forward.execution_order == ort.ExecutionOrder.DEFAULT


def test_a_grey_model_gets_the_luma_of_its_images():
    """A one-channel input: the preset's convention in GRAY (luma-weighted mean and std),
    the picture shown grey, and an RGB convention refused with what to do."""
    from onnxviz.errors import ImageError
    from onnxviz.preprocess import PRESETS, Preprocessing

    grey = onnxviz.Model(gap_gemm(channels=1), provider="cpu")
    pre = grey.preprocessing
    assert pre.channel_order == "GRAY" and pre.mean == PRESETS["torchvision"].to_grey().mean
    pre = grey.preprocessing = pre.replace(resize=None)  # 16x16 photos as they are
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    x = grey.preprocess(photo)
    assert x.shape == (1, 1, 16, 16)
    luma = np.rint(photo.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_allclose(x[0, 0], (luma / 255 - pre.mean[0]) / pre.std[0], rtol=1e-5, atol=1e-6)
    assert grey.run(x).shape == (1, 5)
    shown = grey.display_image(photo)
    assert shown.shape == (16, 16, 3) and (shown == shown[..., :1]).all()
    np.testing.assert_allclose(shown[..., 0], luma, atol=0)
    rgb = onnxviz.Model(gap_gemm(channels=1), provider="cpu", preprocessing=Preprocessing(size=(16, 16)))
    with pytest.raises(ImageError, match="takes 1 channel.* makes 3 .channel_order RGB.*GRAY"):
        rgb.preprocess(photo)
    four = onnxviz.Model(gap_gemm(channels=4), provider="cpu")
    with pytest.raises(ImageError, match="takes 4 channel.*feed the model arrays of your own"):
        four.preprocess(photo)


def test_an_output_that_is_not_class_scores_is_refused_by_the_class_methods():
    """A map output (segmentation) was read as 8192 classes; one with no batch axis gave
    'got 10 targets for a batch of 1'."""
    from onnx import TensorProto, helper, numpy_helper

    from onnxviz.errors import MethodError
    from onnxviz.graph.load import make_model

    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    maps = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "maps",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 8, 8])], [w])
    model = onnxviz.Model(make_model(maps, opset=17), provider="cpu")
    x = np.ones((1, 3, 8, 8), np.float32)
    assert model.run(x).shape == (1, 2, 8, 8)  # the output itself is fine
    with pytest.raises(MethodError, match=r"'y' has shape \(1, 2, 8, 8\): a map, not one score per class"):
        model.logits(x)
    with pytest.raises(MethodError, match="a map, not one score per class"):
        model.one_hot(x, np.array([3]))
    shape = numpy_helper.from_array(np.array([3], np.int64), "shape")
    flat = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Reshape", ["g", "shape"], ["y"])],
        "no_batch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], [shape])
    with pytest.raises(MethodError, match=r"'y' has shape \(3,\) for a batch of 1: no batch axis"):
        onnxviz.Model(make_model(flat, opset=17), provider="cpu").logits(x)


def test_what_is_not_a_batch_or_a_class_is_refused_in_words(model):
    from onnxviz.errors import ImageError

    x = np.zeros((2, 3, 16, 16), np.float32)
    with pytest.raises(ImageError, match="empty batch"):
        model.gradient(x[:0], target=1)
    with pytest.raises(ImageError, match="batch of numbers, got an array of <U"):
        model.run("cat.jpg")
    with pytest.raises(ImageError, match="got one sample of shape"):
        onnxviz.grad_cam(model, x[0])
    for bad in (3.7, True):
        with pytest.raises(OnnxvizError, match="a class is an index .an integer. or a label, got"):
            model.targets(x, bad)
    assert model.targets(x, np.array(2)).tolist() == [2, 2]
    assert model.targets(x, [1, "oyster"]).tolist() == [1, 3]
    with pytest.raises(OnnxvizError, match="no tensor names given"):
        model.activations(x, [])
    assert list(model.activations(x, "logits")) == ["logits"]  # one name as a string


def test_a_model_with_inputs_besides_the_image_says_so():
    from onnx import TensorProto, helper

    from onnxviz.graph.load import make_model

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
         helper.make_node("Add", ["m", "s"], ["y"])], "two_inputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    model = onnxviz.Model(make_model(graph, opset=13), provider="cpu")
    with pytest.raises(OnnxvizError, match="needs model input.s. besides the image 'x': 's'; onnxviz feeds the image alone"):
        model.run(np.zeros((1, 3, 8, 8), np.float32))


def test_labels_that_cannot_name_the_classes_are_refused():
    """5 names for 10 classes were taken silently ('class 7' for class 7); a label written
    twice picked the first of its classes."""
    from onnxviz.errors import ModelLoadError

    proto = gap_gemm(classes=10)
    proto.metadata_props.add(key="onnxviz.labels", value=json.dumps(LABELS[:5]))
    with pytest.raises(ModelLoadError, match="has 5 class names but 'logits' scores 10 classes"):
        onnxviz.Model(proto, provider="cpu")
    proto = gap_gemm(classes=3)
    proto.metadata_props.add(key="onnxviz.labels", value=json.dumps(["cat", "cat", "dog"]))
    model = onnxviz.Model(proto, provider="cpu")
    with pytest.raises(OnnxvizError, match=r"'cat' is the label of 2 classes: 'cat' \(0\), 'cat' \(1\)"):
        model.class_index("cat")
    assert model.class_index("dog") == 2
