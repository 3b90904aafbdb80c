"""onnxviz: look inside any exported CNN from its .onnx file alone.

The public API, re-exported. The heavy names (they import onnx, onnxruntime, opencv)
are loaded on first use, from the explicit table below, so that ``import onnxviz.cli``
and ``onnxviz --help`` stay instant. Names outside the table raise AttributeError as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from onnxviz import errors

__version__ = "0.1.0"

# public name -> module it lives in (the module itself when the name is a subpackage)
_LAZY: dict[str, str] = {
    "Model": "onnxviz.model",
    "VJP": "onnxviz.model",
    "Preprocessing": "onnxviz.preprocess",
    "PRESETS": "onnxviz.preprocess",
    "saliency": "onnxviz.methods",
    "smoothgrad": "onnxviz.methods",
    "integrated_gradients": "onnxviz.methods",
    "guided_backprop": "onnxviz.methods",
    "deconvnet": "onnxviz.methods",
    "cam": "onnxviz.methods",
    "grad_cam": "onnxviz.methods",
    "grad_cam_pp": "onnxviz.methods",
    "score_cam": "onnxviz.methods",
    "occlusion": "onnxviz.methods",
    "activation_maps": "onnxviz.methods",
    "channel_map": "onnxviz.methods",
    "first_conv": "onnxviz.methods",
    "render": "onnxviz.render",
}

__all__ = ["__version__", "errors", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onnxviz' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module == f"onnxviz.{name}" else getattr(loaded, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from onnxviz import render
    from onnxviz.methods import (
        activation_maps,
        cam,
        channel_map,
        deconvnet,
        first_conv,
        grad_cam,
        grad_cam_pp,
        guided_backprop,
        integrated_gradients,
        occlusion,
        saliency,
        score_cam,
        smoothgrad,
    )
    from onnxviz.model import VJP, Model
    from onnxviz.preprocess import PRESETS, Preprocessing
