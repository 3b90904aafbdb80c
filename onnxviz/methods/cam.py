"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, Score-CAM.

Every variant is ``weighted_sum(activations, weights)`` of one feature map with its own
channel weights (the lesson of pytorch-grad-cam); :data:`CAM_WEIGHTS` maps each
variant's name to the function computing those weights, and :func:`class_activation_map`
is the one function that runs them. Maps come back at the feature map's resolution.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxviz.errors import MethodError
from onnxviz.graph._nodes import Constants, ancestors, attrs
from onnxviz.methods._graph import PASS_THROUGH, constant_value, producers
from onnxviz.methods.activations import channel_first, input_hw, to_channel_first
from onnxviz.model import Model, Target
from onnxviz.runtime.progress import progress as progress_bar
from onnxviz.runtime.session import pad_rows


def weighted_sum(activations: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k weights[n, k] * activations[n, k]: (N, K, h, w), (N, K) -> (N, h, w) float32."""
    result = np.einsum("nk,nkhw->nhw", np.asarray(weights, np.float64), np.asarray(activations, np.float64))
    return result.astype(np.float32)


# --------------------------------------------------------------------------- the graph
@dataclass(frozen=True)
class CamHead:
    """A global-average-pooling + linear classifier head, found in the graph.

    Attributes:
        features: the pooled feature map's tensor name.
        pooling: name of the pooling node (its output tensor when unnamed).
        weight: (classes, K) float32: logit_c = sum_k weight[c, k] mean(A_k) + bias[c].
        bias: (classes,) float32.
        layout: "NCHW" or "NHWC": where the pooling says the feature map's channels are.
    """

    features: str
    pooling: str
    weight: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)
    layout: str = "NCHW"


def _is_spatial(layer) -> bool:
    """A rank-4 tensor with more than one position: not (N, K, 1, 1) or (N, 1, 1, K).

    Known from its receptive field (tracked only through spatial ops) or from
    static shapes with at least two dims above 1.
    """
    if layer is None or len(layer.shape) != 4:
        return False
    dims = layer.shape[1:]
    if sum(d == 1 for d in dims) >= 2:
        return False
    return layer.receptive_field is not None or sum(isinstance(d, int) and d > 1 for d in dims) >= 2


def _path_to_logits(model: Model) -> tuple[str, list[onnx.NodeProto]]:
    """The last spatial tensor before the logits, and the nodes after it, in forward order.

    Walks back from the logits through each node's first image-dependent input.

    Raises:
        MethodError: no spatial feature map on that path.
    """
    layers = {layer.name: layer for layer in model.layers}
    dependent = set(layers) | {model.input.name}
    made_by = producers(model.proto.graph)
    name, after = model.logit_name, []
    while not _is_spatial(layers.get(name)):
        node = made_by.get(name)
        source = next((i for i in node.input if i in dependent), None) if node is not None else None
        if source is None or source == model.input.name:
            raise MethodError(
                f"found no spatial feature map (rank 4, larger than 1x1) on the path from the "
                f"image to the logits {model.logit_name!r}; CAM methods need a convolutional "
                f"feature map: pass one with --layer (`onnxviz inspect` lists them)"
            )
        after.append(node)
        name = source
    return name, after[::-1]


def check_cam_layer(model: Model, layer: str) -> str:
    """``layer`` if CAM methods can use it: a spatial feature map the logits depend on.

    Raises:
        UnknownTensorError: no such tensor.
        MethodError: not a spatial map (the logits, a pooled vector), or one the logits do
            not depend on (a second output, a side branch): its map would be flat or zero.
    """
    layer = model.check_tensor(layer)
    found = next((item for item in model.layers if item.name == layer), None)
    if found is None:
        what = "the model's input image" if layer == model.input.name else "a weight or a constant"
        raise MethodError(
            f"layer {layer!r} is {what}; CAM methods need a feature map inside the network: "
            f"pick a convolution output (`onnxviz inspect` lists them), or leave --layer out"
        )
    if not _is_spatial(found):
        shape = list(found.shape)
        raise MethodError(
            f"layer {layer!r} has shape {shape}: CAM methods need a spatial feature map (rank 4, "
            f"larger than 1x1); pick a convolution output (`onnxviz inspect` lists them with "
            f"their receptive fields), or leave --layer out for the last one"
        )
    if layer not in ancestors(model.proto.graph, model.logit_name):
        raise MethodError(
            f"the logits {model.logit_name!r} do not depend on layer {layer!r}, so its map would "
            f"be flat; pick a feature map on the way from the image to the logits"
        )
    return layer


def default_cam_layer(model: Model) -> str:
    """The last spatial (h, w > 1) feature map on the path to the logits.

    That is the input of the global pooling for GAP heads, and the last rank-4 tensor
    before the Flatten/Reshape for VGG-style Flatten + Gemm heads. Found from the graph.

    Raises:
        MethodError: no such tensor.
    """
    return _path_to_logits(model)[0]


def _global_average_layout(node: onnx.NodeProto, constants: Constants,
                           spatial: tuple[int, int] | None = None) -> str | None:
    """"NCHW"/"NHWC" when ``node`` averages a rank-4 tensor over its spatial axes, else None.

    ``spatial``: the static (h, w) of the averaged tensor, when known: an AveragePool whose
    first window covers that whole map is a global average too, if its padding (Caffe's
    ceil-mode artefact) is left out of the mean. Caffe2 exports write ResNet's and
    Inception's last pooling that way; a larger output would be a spatial map itself.
    """
    if node.op_type == "GlobalAveragePool":
        return "NCHW"
    if node.op_type == "AveragePool":
        a = attrs(node)
        kernel = [int(k) for k in a.get("kernel_shape", [])]
        pads = [int(p) for p in a.get("pads", [0] * 2 * len(kernel))]
        covers = spatial is not None and len(kernel) == 2 and all(
            kernel[i] - pads[i] >= spatial[i] for i in range(2))
        exact = not any(pads) or not int(a.get("count_include_pad", 0))
        explicit = a.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")
        undilated = all(int(d) == 1 for d in a.get("dilations", [1, 1]))
        return "NCHW" if covers and exact and explicit and undilated else None
    if node.op_type != "ReduceMean":
        return None
    a = attrs(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = constants.ints(node.input[1])
    if not axes:
        return None
    axes = {int(v) % 4 for v in axes}
    return {frozenset({2, 3}): "NCHW", frozenset({1, 2}): "NHWC"}.get(frozenset(axes))


def _linear(nodes: list[onnx.NodeProto], graph: onnx.GraphProto,
            constants: Constants) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(weight (classes, K), bias (classes,), nodes used) of a Gemm, a MatMul(+Add) or a 1x1
    Conv on the pooled (N, K, 1, 1) tensor (Caffe2's DenseNet) at nodes[0]."""
    node = nodes[0]
    if node.op_type == "Conv":
        a = attrs(node)
        w = constant_value(graph, node.input[1], constants)
        if w is None or w.ndim != 4 or w.shape[2:] != (1, 1) or int(a.get("group", 1)) != 1 or any(a.get("pads", [])):
            return None
        b = constant_value(graph, node.input[2], constants) if len(node.input) > 2 and node.input[2] else None
        return w[:, :, 0, 0], (np.zeros(w.shape[0]) if b is None else b.reshape(-1)), 1
    if node.op_type == "Gemm":
        a = attrs(node)
        b = constant_value(graph, node.input[1], constants)
        if a.get("transA", 0) or b is None or b.ndim != 2:
            return None
        weight = float(a.get("alpha", 1.0)) * (b if a.get("transB", 0) else b.T)
        c = constant_value(graph, node.input[2], constants) if len(node.input) > 2 and node.input[2] else None
        bias = np.zeros(weight.shape[0])
        if c is not None:
            bias = float(a.get("beta", 1.0)) * np.broadcast_to(c.reshape(-1), weight.shape[:1])
        return weight, bias, 1
    if node.op_type != "MatMul":
        return None
    b = constant_value(graph, node.input[1], constants)
    if b is None or b.ndim != 2:
        return None
    weight, bias, used = b.T, np.zeros(b.shape[1]), 1
    if len(nodes) > 1 and nodes[1].op_type == "Add":
        other = [i for i in nodes[1].input if i != node.output[0]]
        c = constant_value(graph, other[0], constants) if len(other) == 1 else None
        if c is not None and c.size in (1, weight.shape[0]):
            bias, used = np.broadcast_to(c.reshape(-1), weight.shape[:1]), 2
    return weight, bias, used


# Model -> its CAM head: reading the head's weights (5 MB for a 1000-class ImageNet head)
# cost a third of a forward pass per call
_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def find_cam_head(model: Model) -> CamHead:
    """Find a CAM-ready head from the graph alone (once per model).

    Accepted: the last spatial feature map -> GlobalAveragePool (or ReduceMean over the
    spatial axes, keepdims either, or an AveragePool whose first window covers the whole
    static map, padding left out of the mean) -> any Flatten/Reshape/Squeeze/Identity/
    Dropout -> Gemm (transB 0 or 1), MatMul (+ Add) or 1x1 Conv with constant weights, or
    nothing when the pooled map is the logits (SqueezeNet) -> pass-through ops -> the
    logits (:attr:`Model.logit_name`).

    Raises:
        MethodError: the head is anything else; the message lists the ops found after
            the last spatial tensor and suggests Grad-CAM.
    """
    head = _HEADS.get(model)
    if head is None:
        head = _HEADS[model] = _find_cam_head(model)
    return head


def _find_cam_head(model: Model) -> CamHead:
    features, after = _path_to_logits(model)
    graph = model.proto.graph
    constants = Constants(graph)
    layout = _global_average_layout(after[0], constants, _static_hw(model, features)) if after else None
    i = 1
    while layout and i < len(after) and after[i].op_type in PASS_THROUGH:
        i += 1
    channels = _channels(model, features, layout) if layout else None
    found = None
    if layout and i < len(after):
        found = _linear(after[i:], graph, constants)
    elif layout and channels is not None:  # the pooled map is the logits (SqueezeNet): one channel per class
        found = np.eye(channels), np.zeros(channels), 0
    if found is not None:
        weight, bias, used = found
        rest = after[i + used:]
        if all(n.op_type in PASS_THROUGH for n in rest) and channels in (None, weight.shape[1]):
            return CamHead(features, after[0].name or after[0].output[0],
                           np.asarray(weight, np.float32), np.asarray(bias, np.float32), layout)
    ops = " -> ".join(n.op_type for n in after) or "nothing"
    raise MethodError(
        f"CAM needs global average pooling followed by at most one linear layer (Gemm, MatMul or a "
        f"1x1 Conv) giving the logits; after the last spatial tensor {features!r} this model has "
        f"{ops}: use Grad-CAM (`gradcam`), which works with any head"
    )


def _static_hw(model: Model, name: str) -> tuple[int, int] | None:
    """Static (h, w) of an NCHW rank-4 tensor, None when unknown."""
    hw = _rank4_shape(model, name)[2:]
    return hw if len(hw) == 2 and all(isinstance(d, int) and d > 0 for d in hw) else None


def _channels(model: Model, name: str, layout: str) -> int | None:
    """Static channel count of a rank-4 tensor in ``layout``, None when unknown."""
    shape = _rank4_shape(model, name)
    dim = shape[1 if layout == "NCHW" else 3] if shape else None
    return dim if isinstance(dim, int) else None


def _rank4_shape(model: Model, name: str) -> tuple:
    """The layer table's shape of ``name`` when it has rank 4, else ()."""
    shape = next((layer.shape for layer in model.layers if layer.name == name), ())
    return tuple(shape) if len(shape) == 4 else ()


# --------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class CamInputs:
    """Everything a weight function may use.

    Attributes:
        model: the model.
        x: the preprocessed batch, model layout.
        layer: the feature map's tensor name.
        targets: (N,) class per sample.
        activations: (N, K, h, w) float32, channel-first.
        gradients: (N, K, h, w) d logit[target] / d activations, or None for
            gradient-free variants.
        options: variant options (Score-CAM: max_channels, batch_size, progress).
    """

    model: Model
    x: np.ndarray
    layer: str
    targets: np.ndarray
    activations: np.ndarray
    gradients: np.ndarray | None = None
    options: dict = field(default_factory=dict)


def grad_cam_weights(gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): the spatial mean of d logit / d A_k; (N, K)."""
    return np.asarray(gradients, np.float64).mean(axis=(2, 3))


def grad_cam_pp_weights(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018): w_k = sum_ij alpha_kij ReLU(g_kij); (N, K).

    With the paper's exp-of-score trick the 2nd and 3rd derivatives are g^2 and g^3,
    so alpha = g^2 / (2 g^2 + sum_ab A_kab g^3) (0 where the denominator is 0). The
    paper's positive factor exp(score) in front of ReLU(g) is left out: it only scales
    each sample's map, and overflows float32 for logits above 88.
    """
    a = np.asarray(activations, np.float64)
    g = np.asarray(gradients, np.float64)
    g2 = g * g
    denominator = 2.0 * g2 + a.sum(axis=(2, 3), keepdims=True) * g2 * g
    alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=denominator != 0)
    return (alpha * np.maximum(g, 0.0)).sum(axis=(2, 3))


def _upsampled_masks(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) maps -> (K, H, W) bilinear upsampled, each min-max normalised to [0, 1]."""
    import cv2

    height, width = size
    up = np.stack([cv2.resize(np.asarray(m, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
                   for m in maps]) if len(maps) else np.zeros((0, height, width), np.float32)
    low = up.min(axis=(1, 2), keepdims=True)
    span = up.max(axis=(1, 2), keepdims=True) - low
    return np.divide(up - low, span, out=np.zeros_like(up), where=span > 0)


@contextmanager
def _batch_size(model: Model, size: int | None):
    """Run with another ``model.batch_size`` for the duration (restored afterwards)."""
    saved = model.batch_size
    model.batch_size = size or saved
    try:
        yield
    finally:
        model.batch_size = saved


def score_cam_weights(inputs: CamInputs) -> np.ndarray:
    """Score-CAM (Wang et al. 2020): softmax score of the target on x masked by each channel; (N, K).

    Each channel is upsampled (bilinear) to the input size, normalised to [0, 1] and
    multiplied into the (preprocessed) input. With more than ``max_channels`` channels
    only the ``max_channels`` with the largest mean activation are scored; the others
    get weight 0. The masked copies go through the model in equal runs of at most
    ``batch_size`` (default ``model.batch_size``; a short last run is padded), built one
    run at a time, under one progress bar.
    """
    model, acts = inputs.model, inputs.activations
    n, k = acts.shape[:2]
    keep = min(k, int(inputs.options.get("max_channels") or k))
    size = input_hw(model, inputs.x)
    images = to_channel_first(model, inputs.x)
    weights = np.zeros((n, k))
    if keep == 0:
        return weights
    orders = [np.argsort(-acts[i].mean(axis=(1, 2)), kind="stable")[:keep] for i in range(n)]
    with _batch_size(model, inputs.options.get("batch_size")):
        run = model.call_size(keep)
        jobs = [(i, start) for i in range(n) for start in range(0, keep, run)]
        label = inputs.options.get("progress", False)
        for i, start in progress_bar(jobs, len(jobs), label if isinstance(label, str) else "", enabled=bool(label)):
            channels = orders[i][start:start + run]
            masked = images[i][None] * _upsampled_masks(acts[i, channels], size)[:, None]
            masked = pad_rows(masked, run)  # the same call size: no second session
            if model.input.layout == "NHWC":
                masked = np.ascontiguousarray(np.moveaxis(masked, 1, 3))
            logits = model.logits(masked)[:len(channels)].astype(np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            weights[i, channels] = probs[:, inputs.targets[i]] / probs.sum(axis=1)
    return weights


def cam_weights(inputs: CamInputs) -> np.ndarray:
    """CAM (Zhou et al. 2016): the linear head's weights of the target class; (N, K)."""
    return find_cam_head(inputs.model).weight[inputs.targets]


#: Variant name -> its channel-weight function (CamInputs -> (N, K)).
CAM_WEIGHTS: dict[str, Callable[[CamInputs], np.ndarray]] = {
    "cam": cam_weights,
    "gradcam": lambda inputs: grad_cam_weights(inputs.gradients),
    "gradcam++": lambda inputs: grad_cam_pp_weights(inputs.activations, inputs.gradients),
    "scorecam": score_cam_weights,
}
#: Variants whose weights need d logit / d activations (one forward+backward run).
GRADIENT_BASED = frozenset({"gradcam", "gradcam++"})


def cam_inputs(model: Model, x: np.ndarray, target: Target, layer: str, gradients: bool,
               layout: str | None = None, progress: bool | str = False, **options) -> CamInputs:
    """Activations (and gradients) of ``layer`` with the targets, in as few runs as possible.

    Gradient-free: one run exposing the layer and the logits. With gradients: one
    vjp run (plus one forward when ``target`` is None, to find the top-1 classes).
    """
    x = np.asarray(x, dtype=np.float32)
    hw = input_hw(model, x)
    grads = None
    if gradients:
        targets = model.targets(x, target)
        result = model.vjp(x, model.one_hot(x, targets), wrt=[layer], expose_names=[layer], progress=progress)
        acts = result.exposed[layer]
        grads = channel_first(model, layer, result.gradients[layer], hw, layout)
    else:
        names = [layer] if target is not None else [layer, model.logit_name]
        values = model.activations(x, names, progress=progress)
        acts = values[layer]
        if target is None:
            targets = np.argmax(values[model.logit_name].reshape(len(x), -1), axis=1)
        else:
            targets = model.targets(x, target)
    acts = channel_first(model, layer, acts, hw, layout)
    return CamInputs(model, x, layer, np.asarray(targets), acts, grads, {"progress": progress, **options})


def class_activation_map(
    model: Model,
    x: np.ndarray,
    target: Target = None,
    layer: str | None = None,
    method: str = "gradcam",
    relu: bool = True,
    progress: bool | str = False,
    **options,
) -> np.ndarray:
    """The shared CAM: ``[ReLU](weighted_sum(A, CAM_WEIGHTS[method](...)))``; (N, h, w) float32.

    Args:
        model: the model.
        x: preprocessed float32 batch in the model's input layout.
        target: class index or label, one per sample, or None for each top-1 class.
        layer: the feature map (default :func:`default_cam_layer`; CAM always uses its head's).
        method: a :data:`CAM_WEIGHTS` key.
        relu: keep only the positive part of the map.
        progress: progress bar on stderr.
        **options: passed to the weight function (Score-CAM's ``max_channels``, ``batch_size``).
    """
    if method not in CAM_WEIGHTS:
        raise MethodError(f"unknown CAM variant {method!r}; choose one of {', '.join(CAM_WEIGHTS)}")
    layout = None
    if method == "cam":
        head = find_cam_head(model)
        layer, layout = head.features, head.layout
    layer = check_cam_layer(model, layer) if layer is not None else default_cam_layer(model)
    # Score-CAM draws one bar over its many runs, not one for the activations run too
    inputs = cam_inputs(model, x, target, layer, method in GRADIENT_BASED, layout,
                        False if method == "scorecam" else progress, **options)
    inputs.options["progress"] = progress
    result = weighted_sum(inputs.activations, CAM_WEIGHTS[method](inputs))
    return np.maximum(result, 0.0) if relu else result


def cam(model: Model, x: np.ndarray, target: Target = None, progress: bool | str = False) -> np.ndarray:
    """CAM (Zhou et al. 2016): sum_k w_{k,c} A_k over the head's feature map; (N, h, w).

    No ReLU, bias excluded. Needs a GAP + linear head (:func:`find_cam_head`).

    Raises:
        MethodError: the model has no such head.
    """
    return class_activation_map(model, x, target, method="cam", relu=False, progress=progress)


def grad_cam(model: Model, x: np.ndarray, target: Target = None, layer: str | None = None,
             progress: bool | str = False) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): ReLU(sum_k mean_ij(d logit / d A_kij) A_k); (N, h, w).

    One forward+backward run returns both A and its gradient (``layer`` defaults to
    :func:`default_cam_layer`).
    """
    return class_activation_map(model, x, target, layer, "gradcam", progress=progress)


def grad_cam_pp(model: Model, x: np.ndarray, target: Target = None, layer: str | None = None,
                progress: bool | str = False) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018), see :func:`grad_cam_pp_weights`; (N, h, w)."""
    return class_activation_map(model, x, target, layer, "gradcam++", progress=progress)


def score_cam(
    model: Model,
    x: np.ndarray,
    target: Target = None,
    layer: str | None = None,
    max_channels: int | None = 256,
    batch_size: int | None = None,
    progress: bool | str = False,
) -> np.ndarray:
    """Score-CAM (Wang et al. 2020), see :func:`score_cam_weights`; (N, h, w).

    Args:
        max_channels: score only this many channels, those with the largest mean
            activation per sample (None: all); the rest get weight 0.
        batch_size: masked copies per onnxruntime call (default ``model.batch_size``).
    """
    return class_activation_map(model, x, target, layer, "scorecam", progress=progress,
                                max_channels=max_channels, batch_size=batch_size)
