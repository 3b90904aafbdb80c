"""Feature maps of any layer, channel-first, and one channel of them.

Tensors inside a model are not always channel-first: TensorFlow exports keep NHWC
tensors around their input, and some PyTorch nets (ConvNeXt) permute to NHWC for
LayerNorm/Linear blocks. :func:`tensor_layout` decides from the graph alone.
"""

from __future__ import annotations

import math

import numpy as np

from onnxviz.errors import ChannelError, MethodError
from onnxviz.methods._graph import producers
from onnxviz.model import Model


def input_hw(model: Model, x: np.ndarray) -> tuple[int, int]:
    """Height and width of a batch in the model's input layout."""
    shape = model.check_batch(x).shape
    return (shape[2], shape[3]) if model.input.layout == "NCHW" else (shape[1], shape[2])


def to_channel_first(model: Model, x: np.ndarray) -> np.ndarray:
    """An input-shaped batch (the image, its gradient) as (N, C, H, W); a view when possible."""
    x = np.asarray(x)
    return x if model.input.layout == "NCHW" else np.moveaxis(x, 3, 1)


#: ONNX ops whose rank-4 outputs are channel-first by definition.
CHANNEL_FIRST_OPS = frozenset({
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool",
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "BatchNormalization",
    "InstanceNormalization", "LRN", "MaxUnpool", "DepthToSpace", "SpaceToDepth",
})


def tensor_layout(model: Model, name: str, shape: tuple[int, ...], image_hw: tuple[int, int]) -> str:
    """"NCHW" or "NHWC" for a rank-4 tensor of ``model`` with run-time ``shape``.

    The heuristic: the receptive field of the tensor (from the graph) says how many
    input pixels separate neighbouring elements (``jump``), so its spatial size should
    be about ``image size / jump``. Of the two candidate pairs of spatial axes, (2, 3)
    for NCHW and (1, 2) for NHWC, the one closer to that size (in log ratio) wins.
    When the graph gives no receptive field, or both pairs fit equally well (7x7 with
    7 channels), the graph decides (:func:`traced_layout`).

    Args:
        model: the model.
        name: the tensor's name.
        shape: its run-time shape (rank 4).
        image_hw: (H, W) of the input batch it was computed from.
    """
    if name == model.input.name:
        return model.input.layout
    layer = next((item for item in model.layers if item.name == name), None)
    field = layer.receptive_field if layer is not None else None
    if field is None:
        return traced_layout(model, name)
    expected = [max(float(size) / float(jump), 1.0) for size, jump in zip(image_hw, field.jump)]

    def misfit(h: int, w: int) -> float:
        return abs(math.log(max(h, 1) / expected[0])) + abs(math.log(max(w, 1) / expected[1]))

    nchw, nhwc = misfit(shape[2], shape[3]), misfit(shape[1], shape[2])
    if math.isclose(nchw, nhwc, abs_tol=1e-9):
        return traced_layout(model, name)
    return "NCHW" if nchw < nhwc else "NHWC"


def traced_layout(model: Model, name: str) -> str:
    """A tensor's layout from the graph: walk back through its producers' first inputs
    to an op that is channel-first by definition (:data:`CHANNEL_FIRST_OPS`) or to the
    model input, then follow the Transposes met on the way. NCHW when the walk is lost.
    """
    made_by = producers(model.proto.graph)
    perms: list[list[int]] = []
    axis = 1
    for _ in range(256):
        if name == model.input.name:
            axis = 1 if model.input.layout == "NCHW" else 3
            break
        node = made_by.get(name)
        if node is None or not node.input or node.op_type in CHANNEL_FIRST_OPS:
            break
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [0, 3, 2, 1])
            perms.append(perm)
        name = node.input[0]
    for perm in reversed(perms):
        axis = perm.index(axis) if axis in perm else axis
    return "NHWC" if axis == 3 else "NCHW"


def channel_first(model: Model, name: str, value: np.ndarray, image_hw: tuple[int, int],
                  layout: str | None = None) -> np.ndarray:
    """A tensor's value (or its gradient) as (N, C, h, w) float32.

    Rank-2 tensors (N, C) become (N, C, 1, 1); rank-4 tensors are transposed when
    :func:`tensor_layout` (or the given ``layout``) says NHWC.

    Raises:
        MethodError: the tensor is neither rank 2 nor rank 4.
    """
    value = np.asarray(value, dtype=np.float32)
    if value.ndim == 2:
        return value[:, :, None, None]
    if value.ndim != 4:
        raise MethodError(
            f"layer {name!r} has shape {list(value.shape)}: only rank-4 feature maps and rank-2 "
            f"vectors can be shown as channels; pick a convolution or pooling output "
            f"(`onnxviz inspect` lists them)"
        )
    layout = layout or tensor_layout(model, name, value.shape, image_hw)
    return value if layout == "NCHW" else np.ascontiguousarray(np.moveaxis(value, 3, 1))


def activation_maps(model: Model, x: np.ndarray, layer: str) -> np.ndarray:
    """Every channel of ``layer`` for a batch.

    Args:
        model: the model.
        x: preprocessed float32 batch in the model's input layout.
        layer: tensor name (``onnxviz inspect`` lists them).

    Returns:
        (N, C, h, w) float32, channel-first whatever the tensor's layout (see
        :func:`tensor_layout`); a rank-2 tensor gives (N, C, 1, 1).
    """
    value = model.activations(x, [layer])[layer]
    return channel_first(model, layer, value, input_hw(model, x))


def channel_map(model: Model, x: np.ndarray, layer: str, channel: int) -> np.ndarray:
    """One channel of ``layer``: (N, h, w) float32.

    Raises:
        ChannelError: ``channel`` is not in 0..C-1.
    """
    maps = activation_maps(model, x, layer)
    check_channel(layer, maps.shape[1], channel)
    return maps[:, int(channel)]


def check_channel(layer: str, count: int, channel: int) -> None:
    """Raise ChannelError unless ``channel`` is in 0..count-1."""
    if not 0 <= int(channel) < count:
        raise ChannelError(
            f"layer {layer} has {count} channels; channel {channel} is out of range 0..{count - 1}"
        )
