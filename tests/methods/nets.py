"""Small models for the method tests, each with an independent float64 numpy forward.

Built on ``tests/fixtures.py``'s ``GraphBuilder``. Image inputs are ``"x"`` with a
symbolic batch; every net ends in Gemm ``logits``.
"""

from __future__ import annotations

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import numpy_helper

from fixtures import GraphBuilder, image

import onnxviz


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers as float64 arrays."""
    return {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}


def as_model(proto: onnx.ModelProto, **kw) -> onnxviz.Model:
    return onnxviz.Model(proto, provider="cpu", **kw)


# --------------------------------------------------------------------------- numpy ops
def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0) -> np.ndarray:
    """NCHW convolution (cross-correlation), float64."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("ncijuv,kcuv->nkij", win, w) + b[None, :, None, None]


def conv2d_transpose(dy: np.ndarray, w: np.ndarray, in_hw: tuple[int, int], pad: int = 1) -> np.ndarray:
    """The gradient of a stride-1 ``conv2d`` w.r.t. its input: scatter dy through the kernel."""
    n, _, oh, ow = dy.shape
    kh, kw = w.shape[2:]
    out = np.zeros((n, w.shape[1], in_hw[0] + 2 * pad, in_hw[1] + 2 * pad))
    for u in range(kh):
        for v in range(kw):
            out[:, :, u:u + oh, v:v + ow] += np.einsum("nkij,kc->ncij", dy, w[:, :, u, v])
    return out[:, :, pad:pad + in_hw[0], pad:pad + in_hw[1]]


def softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


# --------------------------------------------------------------------------- nets
def smooth_net(channels: int = 3, size: int = 8, classes: int = 5, seed: int = 0) -> onnx.ModelProto:
    """x -> Conv ``c1`` (4, 3x3, pad 1) -> Tanh ``t1`` -> Conv ``c2`` (6, 3x3, stride 2, pad 1)
    -> Softplus ``s2`` -> GlobalAveragePool ``gap`` -> Flatten ``flat`` -> Gemm ``logits``.
    Smooth everywhere, so finite differences are accurate."""
    b = GraphBuilder(seed)
    x = b.node("Conv", ["x", b.weight("c1_w", [4, channels, 3, 3]), b.bias("c1_b", 4)], "c1",
               kernel_shape=[3, 3], pads=[1] * 4)
    x = b.node("Tanh", [x], "t1")
    x = b.node("Conv", [x, b.weight("c2_w", [6, 4, 3, 3]), b.bias("c2_b", 6)], "c2",
               kernel_shape=[3, 3], pads=[1] * 4, strides=[2, 2])
    x = b.node("Softplus", [x], "s2")
    x = b.node("GlobalAveragePool", [x], "gap")
    x = b.node("Flatten", [x], "flat", axis=1)
    x = b.node("Gemm", [x, b.weight("logits_w", [classes, 6]), b.bias("logits_b", classes)], "logits", transB=1)
    return b.model([image("x", channels, size)], [x], name="smooth_net")


def smooth_forward(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """float64 logits of :func:`smooth_net`."""
    w = weights(model)
    h = np.tanh(conv2d(np.asarray(x, np.float64), w["c1_w"], w["c1_b"], pad=1))
    h = softplus(conv2d(h, w["c2_w"], w["c2_b"], stride=2, pad=1))
    return h.mean(axis=(2, 3)) @ w["logits_w"].T + w["logits_b"]


def fd_gradient(forward, x: np.ndarray, target: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Central finite differences of forward(x)[n, target[n]] w.r.t. x, float64, shape of x."""
    x = np.asarray(x, np.float64)
    grads = np.empty_like(x)
    size = x[0].size
    for n in range(len(x)):
        steps = np.eye(size).reshape(size, *x.shape[1:]) * eps
        plus = forward(x[n][None] + steps)[:, target[n]]
        minus = forward(x[n][None] - steps)[:, target[n]]
        grads[n] = ((plus - minus) / (2 * eps)).reshape(x.shape[1:])
    return grads


def relu_net(channels: int = 3, size: int = 8, filters: int = 4, classes: int = 5, seed: int = 0) -> onnx.ModelProto:
    """x -> Conv ``conv`` (3x3, pad 1) -> Relu ``relu`` -> GlobalAveragePool ``gap``
    -> Flatten ``flat`` -> Gemm ``logits``."""
    b = GraphBuilder(seed)
    x = b.node("Conv", ["x", b.weight("conv_w", [filters, channels, 3, 3]), b.bias("conv_b", filters)], "conv",
               kernel_shape=[3, 3], pads=[1] * 4)
    x = b.node("Relu", [x], "relu")
    x = b.node("GlobalAveragePool", [x], "gap")
    x = b.node("Flatten", [x], "flat", axis=1)
    x = b.node("Gemm", [x, b.weight("logits_w", [classes, filters]), b.bias("logits_b", classes)], "logits", transB=1)
    return b.model([image("x", channels, size)], [x], name="relu_net")


def relu_net_backward(model: onnx.ModelProto, x: np.ndarray, target: np.ndarray, mode: str) -> np.ndarray:
    """d logit / d x of :func:`relu_net` by hand, with ReLU passing gradients per ``mode``."""
    w = weights(model)
    z = conv2d(np.asarray(x, np.float64), w["conv_w"], w["conv_b"], pad=1)
    hw = z.shape[2] * z.shape[3]
    dr = np.broadcast_to((w["logits_w"][target] / hw)[:, :, None, None], z.shape)
    if mode == "plain":
        dz = dr * (z > 0)
    elif mode == "guided":
        dz = dr * (z > 0) * (dr > 0)
    else:  # deconvnet
        dz = np.maximum(dr, 0.0)
    return conv2d_transpose(dz, w["conv_w"], x.shape[2:], pad=1)
