"""What the CLI and the HTML report show, computed here so the CLI stays a thin shell.

- :func:`describe` gathers a model's facts (inputs, outputs, opset, layers...) as plain data:
  ``onnxviz inspect`` prints it, ``--json`` dumps it, the report shows part of it.
- :func:`explain` runs one attribution method on a batch of images and renders each map.
- :func:`build_report` assembles the HTML page: per image the photo, the top-5
  predictions and every attribution view for the top class. Later features add
  sections with :meth:`onnxviz.render.report.Report.add_section`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from onnxviz.errors import GradientError, MethodError, OnnxvizError
from onnxviz.graph.info import dim_text

if TYPE_CHECKING:
    from onnxviz.model import Model
    from onnxviz.render.report import Report

Image = str | os.PathLike | np.ndarray

#: Settings the report uses, chosen so the whole page builds in reasonable time on a
#: 2-core CPU (a few minutes at most for the shipped model and four photos). Occlusion's
#: window and stride are for a 224-pixel input and scale with the model's input size.
REPORT_SETTINGS: dict[str, dict[str, Any]] = {
    "smoothgrad": {"samples": 16},
    "ig": {"steps": 32},
    "scorecam": {"max_channels": 128},
    "occlusion": {"window": 32, "stride": 16},
}


# --------------------------------------------------------------------------- describe
def _dtype_name(elem_type: int) -> str:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _value_info(info: onnx.ValueInfoProto, shapes: dict[str, tuple]) -> dict[str, Any]:
    shape = shapes.get(info.name)
    elem = info.type.tensor_type.elem_type if info.type.WhichOneof("value") == "tensor_type" else 0
    return {"name": info.name, "shape": list(shape) if shape is not None else None, "dtype": _dtype_name(elem)}


def _number(value: float) -> int | float:
    """A receptive-field number: an int when whole (upsampling makes some fractional)."""
    value = float(value)
    return int(value) if value.is_integer() else round(value, 4)


def _layer_dict(layer) -> dict[str, Any]:
    rf = layer.receptive_field
    return {
        "name": layer.name,
        "op_type": layer.op_type,
        "node_name": layer.node_name,
        "shape": list(layer.shape),
        "receptive_field": None if rf is None else {
            "size": [_number(v) for v in rf.size],
            "jump": [_number(v) for v in rf.jump],
            "start": [_number(v) for v in rf.start],
        },
    }


def describe(model: Model) -> dict[str, Any]:
    """A model's facts as JSON-ready data: what ``onnxviz inspect`` prints.

    Returns:
        A dict with ``model``, ``path``, ``inputs``/``outputs`` (name, shape, dtype),
        ``opset``, ``ir_version``, ``parameters``, ``image_input`` (name and detected
        layout), ``preprocessing``, ``labels`` (count, or None), ``providers`` (that really
        work on this machine) and ``session_providers`` (what this model runs on),
        ``logits`` (the tensor differentiated), ``gradients`` (supported, and the ops
        that block them) and ``layers`` (name, op type, node, shape, receptive field).
    """
    from onnxviz.graph.info import opset_version, parameter_count
    from onnxviz.graph.load import tensor_shapes
    from onnxviz.runtime.providers import available_providers

    proto = model.proto
    shapes = tensor_shapes(proto)
    initializers = {init.name for init in proto.graph.initializer}
    blockers = model.gradient_blockers()
    return {
        "model": model.name,
        "path": str(model.path) if model.path is not None else None,
        "inputs": [_value_info(i, shapes) for i in proto.graph.input if i.name not in initializers],
        "outputs": [_value_info(o, shapes) for o in proto.graph.output],
        "opset": opset_version(proto),
        "ir_version": int(proto.ir_version),
        "producer": " ".join(p for p in (proto.producer_name, proto.producer_version) if p) or None,
        "parameters": parameter_count(proto),
        "image_input": {"name": model.input.name, "layout": model.input.layout,
                        "shape": list(model.input.shape)},
        "preprocessing": model.preprocessing.to_dict(),
        "labels": len(model.labels) if model.labels else None,
        "providers": list(available_providers()),
        "session_providers": list(model.providers),
        "logits": model.logit_name,
        "ends_in_softmax": model.ends_in_softmax,
        "gradients": {
            "supported": not blockers,
            "blockers": [{"op_type": op, "node_name": node} for op, node in blockers],
        },
        "layers": [_layer_dict(layer) for layer in model.layers],
    }


def summary(facts: dict[str, Any]) -> dict[str, str]:
    """The few facts of :func:`describe` shown in the report's header."""
    shape = "×".join(dim_text(d) for d in facts["image_input"]["shape"])
    pp = facts["preprocessing"]
    return {
        "model": facts["model"],
        "input": f"{facts['image_input']['name']} {shape} {facts['image_input']['layout']}",
        "opset": str(facts["opset"]),
        "parameters": f"{facts['parameters']:,}",
        "preprocessing": f"{pp['channel_order']} {'×'.join(map(str, pp['size']))}"
                         + (f" (short side {pp['resize']}, centre crop)" if pp["resize"] else ""),
        "provider": ", ".join(facts["session_providers"]),
    }


# --------------------------------------------------------------------------- explain
@dataclass(frozen=True)
class Explanation:
    """One attribution of one image.

    Attributes:
        method: the ``ATTRIBUTIONS`` key (e.g. "gradcam").
        title: the method's display title.
        target: the class explained.
        label: its label ("class N" without metadata).
        probability: the model's probability for it.
        raw: the method's raw array for this image: (h, w) map or (C, H, W) input gradient.
        picture: uint8 RGB rendering (heatmap over the model's view, or gradient image).
        caption: the method's settings, for captions.
    """

    method: str
    title: str
    target: int
    label: str
    probability: float
    raw: np.ndarray
    picture: np.ndarray
    caption: str


def image_names(images: Sequence[Image]) -> list[str]:
    """Display names: the file name (with its folder when two different files share it), or
    ``image <i>`` for arrays."""
    names = [Path(image).name if isinstance(image, (str, os.PathLike)) else f"image {i}"
             for i, image in enumerate(images)]
    paths: dict[str, set[str]] = {}
    for name, image in zip(names, images):
        if isinstance(image, (str, os.PathLike)):
            paths.setdefault(name, set()).add(os.path.abspath(image))
    return [str(Path(Path(image).resolve().parent.name) / name)
            if isinstance(image, (str, os.PathLike)) and len(paths[name]) > 1 else name
            for name, image in zip(names, images)]


def attribution_method(name: str):
    """The :class:`~onnxviz.methods.AttributionMethod` called ``name``, or a clear error."""
    from onnxviz.methods import ATTRIBUTIONS

    if name not in ATTRIBUTIONS:
        raise OnnxvizError(f"unknown attribution method {name!r}; choose one of {', '.join(ATTRIBUTIONS)}")
    return ATTRIBUTIONS[name]


def render_attribution(model: Model, raw: np.ndarray, view: np.ndarray) -> np.ndarray:
    """A picture of one image's raw map: a 2-D heatmap is overlaid on the model's view of
    the image; a (C, H, W) input-space gradient is shown as an image (zero = grey)."""
    from onnxviz.render import heatmap

    if raw.ndim == 3:
        return heatmap.gradient_image(raw, channel_order=model.preprocessing.channel_order)
    return heatmap.overlay(view, raw)


def explain(
    model: Model,
    method: str,
    x: np.ndarray,
    views: Sequence[np.ndarray],
    target: int | str | Sequence[int | str] | None = None,
    progress: bool | str = False,
    **options: Any,
) -> list[Explanation]:
    """Run one attribution method on a batch and render one picture per image.

    Args:
        model: the model.
        method: an ``ATTRIBUTIONS`` key ("saliency", "gradcam", ...).
        x: preprocessed batch (N, ...) in the model's input layout.
        views: the N uint8 RGB images as the model sees them (:meth:`Model.display_image`).
        target: class index or label for every image, one per image, or None for each
            image's top-1 class.
        progress: show progress bars on stderr (a string labels them).
        **options: method options (``samples``, ``steps``, ``window``, ``layer``...);
            only those given are passed, the method's defaults apply to the rest.

    Returns:
        One :class:`Explanation` per image.
    """
    spec = attribution_method(method)
    probs = model.probabilities(x)
    targets = np.argmax(probs, axis=1) if target is None else model.targets(x, target)
    n_classes = probs.shape[1]
    bad = [int(t) for t in targets if not 0 <= t < n_classes]
    if bad:
        raise OnnxvizError(
            f"class index {bad[0]} is out of range: the model has {n_classes} classes (0..{n_classes - 1})"
        )
    result = _call(spec.fn, model, x, targets, progress, options)
    # integrated gradients return a dataclass (attributions, completeness error, map)
    raw = np.asarray(getattr(result, "map", result))
    caption = spec.caption(options)
    return [
        Explanation(
            method=method,
            title=spec.title,
            target=int(t),
            label=model.label(int(t)),
            probability=float(probs[i, t]),
            raw=raw[i],
            picture=render_attribution(model, raw[i], views[i]),
            caption=caption,
        )
        for i, t in enumerate(targets)
    ]


def _call(fn, model: Model, x: np.ndarray, targets: np.ndarray, progress: bool | str, options: dict) -> Any:
    """Call a method function, passing ``progress`` only to those that take it."""
    import inspect

    params = inspect.signature(fn).parameters
    kwargs = dict(options)
    if "progress" in params:
        kwargs["progress"] = progress
    return fn(model, x, targets, **kwargs)


# --------------------------------------------------------------------------- the report
def report_settings(model: Model, method: str) -> dict[str, Any]:
    """The report's settings for one method, scaled to the model's input size."""
    settings = dict(REPORT_SETTINGS.get(method, {}))
    if method == "occlusion":
        side = min(d for d in (model.input.height, model.input.width, 224) if d)
        window = max(1, round(settings["window"] * side / 224))
        settings.update(window=window, stride=max(1, round(settings["stride"] * side / 224)))
    return settings


def build_report(
    model: Model,
    images: Sequence[Image],
    methods: Sequence[str] | None = None,
    progress: bool = True,
    title: str | None = None,
) -> Report:
    """The HTML report: per image the photo, top-5 predictions and every attribution view.

    Every attribution is for the image's top-1 class, with :data:`REPORT_SETTINGS`.
    A method that cannot run on this model (no gradient rule for an op on the path, a
    CAM without a GAP+FC head...) is skipped with a note in the page instead of failing
    the whole report; errors in the model or the images still raise.

    Args:
        model: the model.
        images: image paths or uint8 RGB arrays.
        methods: ``ATTRIBUTIONS`` keys, in order (default: all of them).
        progress: print progress on stderr.
        title: page title (default: the model's name).

    Returns:
        The :class:`~onnxviz.render.report.Report`; call ``.write(folder)`` on it.
    """
    from onnxviz.methods import ATTRIBUTIONS
    from onnxviz.preprocess import load_image
    from onnxviz.render.report import Report, View

    names = list(methods) if methods is not None else list(ATTRIBUTIONS)
    for name in names:
        attribution_method(name)
    if not images:
        raise OnnxvizError("no images to report on; give at least one image")
    facts = describe(model)
    photos = [load_image(image) for image in images]
    views = [model.display_image(photo) for photo in photos]
    x = model.preprocess(photos)
    predictions = model.predict(x, k=5)
    top = np.asarray([row[0][0] for row in predictions], dtype=np.int64)

    per_image: list[list[View]] = [[] for _ in images]
    skipped: list[tuple[str, str]] = []
    for step, name in enumerate(names, 1):
        spec = ATTRIBUTIONS[name]
        settings = report_settings(model, name)
        label = f"[{step}/{len(names)}] {spec.title}" if progress else False
        try:
            results = explain(model, name, x, views, top, progress=label, **settings)
        except (GradientError, MethodError) as exc:
            skipped.append((spec.title, str(exc)))
            if progress:
                print(f"{label}: skipped, {exc}", file=sys.stderr, flush=True)
            continue
        for i, e in enumerate(results):
            named = f" {e.label}" if model.labels else ""  # else the label is "class N" again
            caption = f"{e.caption}\nclass {e.target}{named} ({e.probability:.1%})".strip()
            per_image[i].append(View(e.title, e.picture, caption))

    facts_shown = summary(facts)
    if skipped:
        facts_shown["not applicable"] = ", ".join(t for t, _ in skipped) + " (why: end of page)"
    report = Report(title or model.name, facts_shown)
    for i, heading in enumerate(image_names(images)):
        report.add_image(
            heading,
            photos[i],
            [(name, prob) for _, name, prob in predictions[i]],
            per_image[i],
        )
    if skipped:
        import html

        def marked(text: str) -> str:  # messages quote commands in backticks
            return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))

        items = "".join(f"<li><strong>{html.escape(t)}</strong>: {marked(m)}</li>" for t, m in skipped)
        report.add_section("Methods skipped on this model", html=f"<ul>{items}</ul>")
    return report

