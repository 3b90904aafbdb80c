"""CAM family: heads found from the graph, maps against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from fixtures import GraphBuilder, gap_gemm, image, ort_run, vgg_like
from onnxviz.errors import MethodError
from onnxviz.methods import (
    CAM_WEIGHTS,
    cam,
    default_cam_layer,
    find_cam_head,
    grad_cam,
    grad_cam_pp,
    score_cam,
    weighted_sum,
)
from tests.methods.nets import as_model

K, CLASSES, SIZE = 5, 4, 6


def _inits(proto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i).astype(np.float64) for i in proto.graph.initializer}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64) - np.max(z, axis=-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


def head_net(head: str, seed: int = 0):
    """Conv -> Relu ``feat`` (K x SIZE x SIZE) -> one of several GAP + linear heads -> ``logits``."""
    b = GraphBuilder(seed)
    feat = b.node("Conv", ["x", b.weight("conv_w", [K, 3, 3, 3]), b.bias("conv_b", K)], "conv",
                  kernel_shape=[3, 3], pads=[1] * 4)
    feat = b.node("Relu", [feat], "feat")
    opset = 17
    if head == "gemm_transB0":  # GAP -> Flatten -> Gemm(alpha, beta, transB=0) -> Softmax
        x = b.node("GlobalAveragePool", [feat], "pool")
        x = b.node("Flatten", [x], "flat", axis=1)
        x = b.node("Gemm", [x, b.weight("fc_w", [K, CLASSES]), b.bias("fc_b", CLASSES)], "logits",
                   alpha=0.5, beta=2.0)
        out = b.node("Softmax", [x], "prob", axis=1)
    elif head == "reducemean_keepdims":  # ReduceMean(axes attr, keepdims 1) -> Reshape -> Gemm
        x = b.node("ReduceMean", [feat], "pool", axes=[2, 3], keepdims=1)
        x = b.node("Reshape", [x, b.const("shape", np.array([-1, K], np.int64))], "flat")
        out = b.node("Gemm", [x, b.weight("fc_w", [CLASSES, K]), b.bias("fc_b", CLASSES)], "logits", transB=1)
    elif head == "matmul_add":  # ReduceMean(axes input, keepdims 0) -> MatMul -> Add, opset 18
        opset = 18
        x = b.node("ReduceMean", [feat, b.const("axes", np.array([-2, -1], np.int64))], "pool", keepdims=0)
        x = b.node("MatMul", [x, b.weight("fc_w", [K, CLASSES])], "mm")
        out = b.node("Add", [b.bias("fc_b", CLASSES), x], "logits")
    elif head == "squeeze_dropout":  # GAP -> Squeeze -> Dropout -> Identity -> Gemm
        x = b.node("GlobalAveragePool", [feat], "pool")
        x = b.node("Squeeze", [x, b.const("axes", np.array([2, 3], np.int64))], "sq")
        x = b.node("Dropout", [x], "drop")
        x = b.node("Identity", [x], "ident")
        out = b.node("Gemm", [x, b.weight("fc_w", [CLASSES, K]), b.bias("fc_b", CLASSES)], "logits", transB=1)
    elif head == "nhwc":  # Transpose to NHWC -> ReduceMean over (1, 2) -> Gemm
        x = b.node("Transpose", [feat], "feat_nhwc", perm=[0, 2, 3, 1])
        x = b.node("ReduceMean", [x], "pool", axes=[1, 2], keepdims=0)
        out = b.node("Gemm", [x, b.weight("fc_w", [CLASSES, K]), b.bias("fc_b", CLASSES)], "logits", transB=1)
    elif head == "whole_averagepool":  # Caffe2 ResNet/Inception: AveragePool over the whole map -> Dropout -> Reshape -> Gemm
        x = b.node("AveragePool", [feat], "pool", kernel_shape=[SIZE, SIZE], strides=[1, 1])
        x = b.node("Dropout", [x], "drop")
        x = b.node("Reshape", [x, b.const("shape", np.array([-1, K], np.int64))], "flat")
        # the weight stored as a 1x1 kernel and reshaped in the graph (0: keep the dim)
        w = b.node("Reshape", [b.weight("fc_w", [CLASSES, K, 1, 1]), b.const("w_shape", np.array([0, -1], np.int64))], "fc_w2d")
        out = b.node("Gemm", [x, w, b.bias("fc_b", CLASSES)], "logits", transB=1)
    elif head == "padded_averagepool":  # Caffe2 Inception v1: a 7x7 window over 6x6, padded at the end
        x = b.node("AveragePool", [feat], "pool", kernel_shape=[SIZE + 1, SIZE + 1], pads=[0, 0, 1, 1])
        out = b.node("Gemm", [b.node("Flatten", [x], "flat"), b.weight("fc_w", [CLASSES, K]), b.bias("fc_b", CLASSES)],
                     "logits", transB=1)
    elif head == "conv1x1":  # Caffe2 DenseNet: GAP -> 1x1 Conv -> Flatten
        x = b.node("GlobalAveragePool", [feat], "pool")
        x = b.node("Conv", [x, b.weight("fc_w", [CLASSES, K, 1, 1]), b.bias("fc_b", CLASSES)], "fc")
        out = b.node("Flatten", [x], "logits", axis=1)
    elif head == "pooled_logits":  # SqueezeNet: the pooled map is the logits -> Reshape -> Softmax
        x = b.node("GlobalAveragePool", [feat], "pool")
        x = b.node("Reshape", [x, b.const("shape", np.array([-1, K], np.int64))], "logits")
        out = b.node("Softmax", [x], "prob", axis=1)
    else:
        raise ValueError(head)
    return b.model([image("x", 3, SIZE)], [out], opset=opset, name=head)


HEADS = ["gemm_transB0", "reducemean_keepdims", "matmul_add", "squeeze_dropout", "nhwc", "whole_averagepool",
         "padded_averagepool", "conv1x1", "pooled_logits"]


def test_weighted_sum_by_hand():
    a = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    w = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], np.float32)
    expected = np.stack([a[0, 0] - a[0, 2], 0.5 * a[1, 0] + 2 * a[1, 1]])
    np.testing.assert_allclose(weighted_sum(a, w), expected)


def test_cam_weights_table():
    assert set(CAM_WEIGHTS) == {"cam", "gradcam", "gradcam++", "scorecam"}


@pytest.mark.parametrize("head", HEADS)
def test_find_cam_head_variants(head):
    """Each head is found; sum over space of CAM/(h w) + bias = the logits (Zhou et al.'s identity)."""
    proto = head_net(head)
    model = as_model(proto)
    found = find_cam_head(model)
    assert find_cam_head(model) is found and find_cam_head(as_model(proto)) is not found  # once per model
    assert found.features == ("feat_nhwc" if head == "nhwc" else "feat")
    assert found.layout == ("NHWC" if head == "nhwc" else "NCHW")
    w = _inits(proto)
    if head == "gemm_transB0":
        np.testing.assert_allclose(found.weight, 0.5 * w["fc_w"].T, rtol=1e-6)
        np.testing.assert_allclose(found.bias, 2.0 * w["fc_b"], rtol=1e-6)
    elif head == "matmul_add":
        np.testing.assert_allclose(found.weight, w["fc_w"].T, rtol=1e-6)
    elif head in ("conv1x1", "whole_averagepool"):
        np.testing.assert_allclose(found.weight, w["fc_w"][:, :, 0, 0], rtol=1e-6)
    elif head == "pooled_logits":
        np.testing.assert_array_equal(found.weight, np.eye(K))
        np.testing.assert_array_equal(found.bias, 0)
    else:
        np.testing.assert_allclose(found.weight, w["fc_w"], rtol=1e-6)
    x = np.random.default_rng(1).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    targets = np.array([0, 3, 1])
    maps = cam(model, x, targets)
    assert maps.shape == (3, SIZE, SIZE)
    logits = model.logits(x)[np.arange(3), targets]
    np.testing.assert_allclose(maps.mean(axis=(1, 2)) + found.bias[targets], logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool", [dict(kernel_shape=[SIZE - 1, SIZE - 1], strides=[2, 2]),
                                  dict(kernel_shape=[SIZE, SIZE], pads=[1, 1, 0, 0], strides=[SIZE, SIZE]),
                                  dict(kernel_shape=[SIZE + 1, SIZE + 1], pads=[0, 0, 1, 1], count_include_pad=1)])
def test_averagepool_that_is_not_global_is_no_cam_head(pool):
    """A 1x1 pooled map from a window that misses part of the map, or that counts its
    padding in the mean, is not a global average: CAM says so instead of using the
    wrong weights."""
    b = GraphBuilder(0)
    feat = b.node("Relu", [b.node("Conv", ["x", b.weight("conv_w", [K, 3, 3, 3])], "conv", pads=[1] * 4)], "feat")
    x = b.node("AveragePool", [feat], "pool", **pool)
    x = b.node("Flatten", [x], "flat", axis=1)
    out = b.node("Gemm", [x, b.weight("fc_w", [CLASSES, K])], "logits", transB=1)
    model = as_model(b.model([image("x", 3, SIZE)], [out]))
    with pytest.raises(MethodError, match=r"this model has AveragePool -> Flatten -> Gemm: use Grad-CAM"):
        find_cam_head(model)


def test_cam_by_hand_and_grad_cam_identity():
    proto = gap_gemm(size=10, filters=6, classes=5)
    model = as_model(proto)
    x = np.random.default_rng(2).standard_normal((2, 3, 10, 10)).astype(np.float32)
    head = find_cam_head(model)
    assert (head.features, head.pooling) == ("relu2", "gap_node")
    features = ReferenceEvaluator(proto).run(["relu2"], {"x": x})[0]
    weight = _inits(proto)["logits_w"]
    top = ort_run(proto, x)[0].argmax(axis=1)
    expected = np.einsum("nk,nkhw->nhw", weight[top], features)
    np.testing.assert_allclose(cam(model, x), expected, rtol=1e-4, atol=1e-5)  # no ReLU: negatives stay
    assert (expected < 0).any()
    # Grad-CAM on a GAP + FC model: d logit / d A = w / (h w) everywhere, so Grad-CAM = ReLU(CAM) / (h w)
    np.testing.assert_allclose(grad_cam(model, x), np.maximum(expected, 0) / 100, rtol=1e-4, atol=1e-6)
    assert default_cam_layer(model) == "relu2"


@pytest.fixture(scope="module")
def vgg():
    proto = vgg_like(size=16, filters=4, hidden=16, classes=5)
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    return proto, as_model(proto), x


def _vgg_gradient(proto, x, targets):
    """pool2 and d logit / d pool2 by hand: logits = W2 relu(W1 flat + b1) + b2."""
    pool2, fc1 = ReferenceEvaluator(proto).run(["pool2", "fc1"], {"x": x})
    w = _inits(proto)
    dflat = (w["logits_w"][targets] * (fc1 > 0)) @ w["fc1_w"]
    return pool2.astype(np.float64), dflat.reshape(pool2.shape)


def test_vgg_head_grad_cam_and_cam_error(vgg):
    proto, model, x = vgg
    assert default_cam_layer(model) == "pool2"
    targets = np.array([1, 4])
    a, g = _vgg_gradient(proto, x, targets)
    expected = np.maximum(np.einsum("nk,nkhw->nhw", g.mean(axis=(2, 3)), a), 0)
    got = grad_cam(model, x, targets)
    assert got.shape == (2, 4, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(MethodError, match=r"after the last spatial tensor 'pool2' this model has "
                                          r"Flatten -> Gemm -> Relu -> Gemm: use Grad-CAM"):
        cam(model, x)


def test_grad_cam_pp_by_hand(vgg):
    proto, model, x = vgg
    targets = np.array([0, 2])
    a, g = _vgg_gradient(proto, x, targets)
    weights = np.zeros(a.shape[:2])
    for n in range(2):
        for k in range(a.shape[1]):
            gk, ak = g[n, k], a[n, k]
            den = 2 * gk**2 + ak.sum() * gk**3
            alpha = np.where(den != 0, gk**2 / np.where(den != 0, den, 1), 0)
            weights[n, k] = (alpha * np.maximum(gk, 0)).sum()
    expected = np.maximum(np.einsum("nk,nkhw->nhw", weights, a), 0)
    np.testing.assert_allclose(grad_cam_pp(model, x, targets), expected, rtol=1e-4, atol=1e-6)


def test_grad_cam_other_layer(vgg):
    """--layer picks another feature map; the map has that layer's resolution."""
    _, model, x = vgg
    assert grad_cam(model, x, 1, layer="relu1").shape == (2, 16, 16)
    assert grad_cam(model, x, 1, layer="pool1").shape == (2, 8, 8)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_a_layer_that_is_not_a_feature_map_of_the_logits_is_refused(vgg, method):
    """A vector, or a map beside the path, gave a 1x1 or a flat map drawn as if it meant
    something (a full-range plaid, a silent all-zero Grad-CAM)."""
    from onnx import TensorProto, helper

    from onnxviz.methods import class_activation_map

    proto, model, x = vgg
    for vector in ("flat", "fc1_relu", "logits"):
        with pytest.raises(MethodError, match=f"layer '{vector}' has shape .*spatial feature map"):
            class_activation_map(model, x, 1, vector, method)
    with pytest.raises(MethodError, match="layer 'x' is the model's input image"):
        class_activation_map(model, x, 1, "x", method)
    with pytest.raises(MethodError, match="is a weight or a constant"):
        class_activation_map(model, x, 1, proto.graph.initializer[0].name, method)
    side = type(proto)()
    side.CopyFrom(proto)  # a second output: relu1 max-pooled again, read by nothing else
    side.graph.node.append(helper.make_node("MaxPool", ["relu1"], ["side"], kernel_shape=[2, 2], strides=[2, 2]))
    side.graph.output.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, [None, 4, 8, 8]))
    with pytest.raises(MethodError, match="do not depend on layer 'side'"):
        class_activation_map(as_model(side), x, 1, "side", method)
    assert class_activation_map(model, x, 1, "pool1", method).shape == (2, 8, 8)


def _score_cam_by_hand(proto, x, targets, layer, keep):
    a = ReferenceEvaluator(proto).run([layer], {"x": x})[0].astype(np.float64)
    weights = np.zeros(a.shape[:2])
    for n in range(len(x)):
        for k in np.argsort(-a[n].mean(axis=(1, 2)), kind="stable")[:keep]:
            m = a[n, k]
            m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)
            probs = _softmax(ort_run(proto, (x[n] * m)[None].astype(np.float32))[0])
            weights[n, k] = probs[0, targets[n]]
    return np.maximum(np.einsum("nk,nkhw->nhw", weights, a), 0)


def test_score_cam_by_hand():
    """On a map the size of the input, upsampling is the identity: masks are the normalised channels."""
    proto = gap_gemm(size=8, filters=6, classes=5)
    model = as_model(proto, batch_size=4)
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 8)).astype(np.float32)
    targets = np.array([3, 0])
    np.testing.assert_allclose(score_cam(model, x, targets), _score_cam_by_hand(proto, x, targets, "relu2", 6),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(score_cam(model, x, targets, max_channels=2, batch_size=1),
                               _score_cam_by_hand(proto, x, targets, "relu2", 2), rtol=1e-4, atol=1e-6)
    # 5 channels in runs of at most 4: two runs of 3, the second padded with a repeat
    np.testing.assert_allclose(score_cam(model, x, targets, max_channels=5),
                               _score_cam_by_hand(proto, x, targets, "relu2", 5), rtol=1e-4, atol=1e-6)
    assert {key[-1] for key in model._fixed_batch if key[0] == "expose"} >= {3}


def test_score_cam_draws_one_bar(capsys):
    """One labelled bar over all runs of all samples (not one per sample and run)."""
    model = as_model(gap_gemm(size=8, filters=6, classes=5), batch_size=2)
    x = np.random.default_rng(4).standard_normal((3, 3, 8, 8)).astype(np.float32)
    score_cam(model, x, [1, 2, 3], progress="Score-CAM")
    assert capsys.readouterr().err.count("Score-CAM") == 1


def test_score_cam_upsampling_matches_torch_bilinear(vgg):
    torch = pytest.importorskip("torch")
    from onnxviz.methods.cam import _upsampled_masks

    maps = np.random.default_rng(5).standard_normal((3, 4, 4)).astype(np.float32)
    up = torch.nn.functional.interpolate(torch.from_numpy(maps)[None], size=(16, 16), mode="bilinear",
                                         align_corners=False)[0].numpy()
    low, high = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(_upsampled_masks(maps, (16, 16)), (up - low) / (high - low), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name,features", [("resnet50", "r171"), ("inception_v1", "r137"), ("densenet121", "r907"),
                                           ("squeezenet", "r64")])
def test_cam_heads_of_real_caffe2_exports(name, features):
    """The onnx wheel's zoo models (random weights): ResNet-50's whole-map AveragePool,
    Inception v1's padded one and its weight reshaped in the graph, DenseNet-121's 1x1
    Conv classifier and SqueezeNet's pooled logits are all CAM heads: Zhou et al.'s
    identity, mean of the map + bias = the logit, holds."""
    import onnxviz
    from zoo import load_zoo, zoo_input

    proto = load_zoo(name)
    model = onnxviz.Model(proto, provider="cpu")
    (x,) = zoo_input(proto).values()
    head = find_cam_head(model)
    assert head.features == features
    targets = np.array([7])
    maps = cam(model, x, targets)
    logit = model.logits(x)[0, 7]
    np.testing.assert_allclose(maps.mean() + head.bias[7], logit, rtol=1e-3, atol=1e-4 * max(1.0, abs(logit)))


def test_a_head_whose_weights_are_a_constant_fill_is_read():
    """The wheel's zoo files keep their weights as ConstantOfShape fills: CAM refused them,
    blaming a head it accepts ('AveragePool -> Reshape -> Gemm')."""
    import onnx

    import onnxviz
    from zoo import zoo_path

    proto = onnx.load(zoo_path("resnet50"))
    fills = {n.output[0]: n for n in proto.graph.node if n.op_type == "ConstantOfShape"}
    gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
    fill = onnx.numpy_helper.to_array(fills[gemm.input[1]].attribute[0].t).item()
    head = find_cam_head(onnxviz.Model(proto, provider="cpu"))
    assert head.features == "r171" and head.weight.shape == (1000, 2048)
    assert np.all(head.weight == np.float32(fill))


def test_vgg_style_zoo_head_is_still_refused():
    import onnxviz
    from zoo import load_zoo

    with pytest.raises(MethodError, match=r"this model has Reshape -> Gemm -> Relu -> Dropout -> Gemm"):
        find_cam_head(onnxviz.Model(load_zoo("bvlc_alexnet"), provider="cpu"))
