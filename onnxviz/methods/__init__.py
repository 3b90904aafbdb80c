"""Plain functions over a :class:`~onnxviz.Model` returning numpy arrays, and the
:data:`ATTRIBUTIONS` registry the CLI and the report use.

Every ``x`` is a preprocessed float32 batch in the model's input layout; every
``target`` an int, a label, one per sample, or None (each sample's top-1 class).
Maps come back raw, at their natural resolution (``render`` upsamples); per-pixel
attributions are channel-first (N, C, H, W) even for NHWC models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxviz.methods.activations import activation_maps, channel_map, check_channel, tensor_layout
from onnxviz.methods.cam import (
    CAM_WEIGHTS,
    CamHead,
    cam,
    class_activation_map,
    check_cam_layer,
    default_cam_layer,
    find_cam_head,
    grad_cam,
    grad_cam_pp,
    score_cam,
    weighted_sum,
)
from onnxviz.methods.filters import first_conv
from onnxviz.methods.occlusion import occlusion, window_starts
from onnxviz.methods.saliency import (
    IntegratedGradients,
    deconvnet,
    guided_backprop,
    integrated_gradients,
    saliency,
    smoothgrad,
)


@dataclass(frozen=True)
class AttributionMethod:
    """One attribution method as the CLI and the report see it.

    Attributes:
        name: registry key and CLI command ("gradcam").
        title: display title ("Grad-CAM").
        fn: ``fn(model, x, target, **options)`` -> (N, h, w) heatmaps (``kind``
            "heatmap") or (N, C, H, W) gradient images (``kind`` "gradient").
        kind: "heatmap" or "gradient".
        caption: settings dict (the options given) -> one line describing them,
            defaults filled in.
    """

    name: str
    title: str
    fn: Callable[..., np.ndarray]
    kind: str
    caption: Callable[[Mapping[str, Any]], str]


def _smoothgrad(model, x, target=None, samples: int = 25, noise: float = 0.15, progress=False) -> np.ndarray:
    """SmoothGrad with the CLI's option names."""
    return smoothgrad(model, x, target, n=samples, noise=noise, progress=progress)


def _ig(model, x, target=None, steps: int = 32, baseline: float | str = "black", progress=False) -> np.ndarray:
    """Integrated gradients' (N, H, W) map."""
    return integrated_gradients(model, x, target, baseline=baseline, steps=steps, progress=progress).map


def _layer(settings: Mapping[str, Any]) -> str:
    layer = settings.get("layer")
    return f"layer {layer}" if layer else "last spatial feature map"


def _window(settings: Mapping[str, Any]) -> str:
    window, stride = settings.get("window", 32), settings.get("stride", 16)
    baseline, score = settings.get("baseline", 0.0), settings.get("score", "logit")
    fill = baseline if isinstance(baseline, str) else f"{baseline} (model-input space)"
    return f"window {window}, stride {stride}, baseline {fill}, drop in {score}"


_METHODS = (
    AttributionMethod("saliency", "Saliency", saliency, "heatmap",
                      lambda s: "max over channels of |d logit / d input|"),
    AttributionMethod("smoothgrad", "SmoothGrad", _smoothgrad, "heatmap",
                      lambda s: f"{s.get('samples', 25)} noisy copies, noise {s.get('noise', 0.15)}"),
    AttributionMethod("ig", "Integrated gradients", _ig, "heatmap",
                      lambda s: f"{s.get('steps', 32)} midpoint steps from baseline {s.get('baseline', 'black')}"),
    AttributionMethod("guided", "Guided backprop", guided_backprop, "gradient",
                      lambda s: "gradient through ReLUs, positive parts only"),
    AttributionMethod("deconvnet", "Deconvnet", deconvnet, "gradient",
                      lambda s: "ReLUs pass back the positive part of the gradient"),
    AttributionMethod("cam", "CAM", cam, "heatmap", lambda s: "global-average-pool head weights"),
    AttributionMethod("gradcam", "Grad-CAM", grad_cam, "heatmap", _layer),
    AttributionMethod("gradcam++", "Grad-CAM++", grad_cam_pp, "heatmap", _layer),
    AttributionMethod("scorecam", "Score-CAM", score_cam, "heatmap",
                      lambda s: f"{_layer(s)}, at most {s.get('max_channels', 256)} channels"),
    AttributionMethod("occlusion", "Occlusion", occlusion, "heatmap", _window),
)

#: Method name -> :class:`AttributionMethod`, in display order.
ATTRIBUTIONS: dict[str, AttributionMethod] = {m.name: m for m in _METHODS}

__all__ = [
    "ATTRIBUTIONS",
    "CAM_WEIGHTS",
    "AttributionMethod",
    "CamHead",
    "IntegratedGradients",
    "activation_maps",
    "cam",
    "channel_map",
    "check_cam_layer",
    "check_channel",
    "class_activation_map",
    "deconvnet",
    "default_cam_layer",
    "find_cam_head",
    "first_conv",
    "grad_cam",
    "grad_cam_pp",
    "guided_backprop",
    "integrated_gradients",
    "occlusion",
    "saliency",
    "score_cam",
    "smoothgrad",
    "tensor_layout",
    "weighted_sum",
    "window_starts",
]
