"""One exception family for onnxviz.

Every message says what is wrong and what to do about it. The CLI catches
:class:`OnnxvizError` once, prints its message and exits non-zero.
"""

from __future__ import annotations


class OnnxvizError(Exception):
    """Base class of every error onnxviz raises on purpose."""


class ModelLoadError(OnnxvizError):
    """The model file is missing, is not ONNX, is corrupt or fails the checker."""


class NotAnImageModelError(OnnxvizError):
    """The model has no 4-D image-like input (NCHW or NHWC)."""


class UnknownTensorError(OnnxvizError):
    """A tensor or layer name that the model does not have."""


class ChannelError(OnnxvizError):
    """A channel index out of range for the tensor it refers to."""


class ImageError(OnnxvizError):
    """An image that cannot be read, or an array with the wrong size or layout."""


class GradientError(OnnxvizError):
    """The backward graph cannot be built (e.g. an op with no gradient rule)."""


class NoGradientRuleError(GradientError):
    """An op on the differentiated path has no gradient rule."""

    def __init__(self, op_type: str, node_name: str, domain: str = "") -> None:
        self.op_type = op_type
        self.node_name = node_name
        self.domain = domain
        full = f"{domain}::{op_type}" if domain else op_type
        super().__init__(
            f"no gradient rule for op {full!r} (node {node_name!r}) on the path being "
            f"differentiated; run `onnxviz inspect` to list the blocking ops, or pick a "
            f"layer/output that does not pass through it"
        )


class MethodError(OnnxvizError):
    """A method cannot run on this model as asked (e.g. CAM without a GAP+FC head)."""


class RuntimeProviderError(OnnxvizError):
    """The requested execution provider is not available."""
