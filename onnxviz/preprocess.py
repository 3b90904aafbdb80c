"""Turn photos into model input and back: the :class:`Preprocessing` convention.

A model sees ``x = (pixel * scale - mean) / std`` per channel, where ``pixel`` is
0..255 in the model's channel order (RGB, BGR, or GRAY: one luma channel for grey
models), after resizing the short side to ``resize`` and centre-cropping ``size``
(or resizing straight to ``size``).
Models built or annotated by onnxviz store this under the metadata key
``onnxviz.preprocessing`` as the JSON of :meth:`Preprocessing.to_dict`::

    {"size": [224, 224], "resize": 256, "mean": [0.485, 0.456, 0.406],
     "std": [0.229, 0.224, 0.225], "scale": 0.00392156862745098,
     "channel_order": "RGB", "layout": "NCHW"}

Images are uint8 H×W×3 RGB everywhere in onnxviz; only :func:`preprocess` and
:func:`deprocess` deal with the model's channel order and layout.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import cv2
import numpy as np

from onnxviz.errors import ImageError, ModelLoadError, OnnxvizError

#: Metadata key holding :meth:`Preprocessing.to_dict` as JSON.
METADATA_KEY = "onnxviz.preprocessing"

CHANNEL_ORDERS = ("RGB", "BGR", "GRAY")
#: ITU-R BT.601 luma weights of R, G, B (OpenCV's RGB2GRAY): grey = 0.299 R + 0.587 G + 0.114 B.
LUMA = (0.299, 0.587, 0.114)
LAYOUTS = ("NCHW", "NHWC")

#: Above this many pixels, :func:`fit_image` crops before resizing (see there).
MAX_RESIZED_PIXELS = 1 << 25

#: What :func:`load_image` accepts: a path, encoded file bytes, or an array.
ImageSource = Union[str, "os.PathLike[str]", bytes, np.ndarray]


# --------------------------------------------------------------------------- helpers: validation
def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _size(value: object) -> tuple[int, int]:
    dims = (value, value) if _is_number(value) else value
    try:
        h, w = dims  # type: ignore[misc]
    except (TypeError, ValueError):
        raise OnnxvizError(f"size must be N or (H, W), got {value!r}") from None
    if not all(_is_number(d) and float(d).is_integer() and d > 0 for d in (h, w)):
        raise OnnxvizError(f"size must be positive whole numbers (H, W), got {value!r}")
    return int(h), int(w)


def _resize(value: object) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if not (_is_number(value) and float(value).is_integer() and value >= 0):
        raise OnnxvizError(f"resize must be a positive whole number or None, got {value!r}")
    return int(value) or None


def _per_channel(value: object, name: str, count: int) -> tuple[float, ...]:
    values = [value] if _is_number(value) else value
    try:
        values = list(values)  # type: ignore[call-overload]
    except TypeError:
        raise OnnxvizError(f"{name} must be a number or {count} numbers, got {value!r}") from None
    if len(values) == 1:
        values = values * count
    if len(values) != count or not all(_is_number(v) and math.isfinite(v) for v in values):
        what = ("one finite number (a grey model has one channel)" if count == 1
                else f"one or {count} finite numbers (one per channel)")
        raise OnnxvizError(f"{name} must be {what}, got {value!r}")
    return tuple(float(v) for v in values)


def _channel_order(value: object) -> str:
    if isinstance(value, str) and value.strip().upper() == "GREY":
        return "GRAY"
    return _choice(value, CHANNEL_ORDERS, "channel_order")


def _positive_float(value: object, name: str) -> float:
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        raise OnnxvizError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _choice(value: object, choices: tuple[str, ...], name: str) -> str:
    text = str(value).strip().upper() if isinstance(value, str) else value
    if text not in choices:
        raise OnnxvizError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return text  # type: ignore[return-value]


# --------------------------------------------------------------------------- the convention
@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its images: geometry, normalisation, channel order, layout.

    Attributes:
        size: (H, W) of the model input.
        resize: the short side is resized to this, then ``size`` is centre-cropped;
            None (or 0) resizes straight to ``size`` (the aspect ratio changes).
        mean: per-channel mean, in the model's channel order, in the units of
            ``pixel * scale``: 3 numbers, or 1 for GRAY. One number means the same for
            every channel.
        std: per-channel standard deviation, same conventions as ``mean``.
        scale: multiplies raw 0..255 pixels before mean and std.
        channel_order: "RGB" or "BGR": the order of channels the model wants; "GRAY"
            (or "GREY"): one channel, the luma of the image (:data:`LUMA`).
        layout: "NCHW" or "NHWC": the model input's axis order.

    Raises:
        OnnxvizError: a value of the wrong type or out of range.
    """

    size: tuple[int, int] = (224, 224)
    resize: int | None = 256
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    scale: float = 1 / 255
    channel_order: str = "RGB"
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        # Normalise what callers naturally give (lists, one number, "bgr", 0 for
        # no resize) so that equal conventions compare equal and hash alike.
        set_ = object.__setattr__
        set_(self, "size", _size(self.size))
        set_(self, "resize", _resize(self.resize))
        set_(self, "channel_order", _channel_order(self.channel_order))
        set_(self, "mean", _per_channel(self.mean, "mean", self.channels))
        set_(self, "std", _per_channel(self.std, "std", self.channels))
        if 0.0 in self.std:
            raise OnnxvizError(f"std {list(self.std)} has a zero: every channel needs a non-zero std")
        set_(self, "scale", _positive_float(self.scale, "scale"))
        set_(self, "layout", _choice(self.layout, LAYOUTS, "layout"))

    @property
    def channels(self) -> int:
        """Channels the model input gets: 1 for GRAY, else 3."""
        return 1 if self.channel_order == "GRAY" else 3

    def to_grey(self) -> Preprocessing:
        """The same convention for a one-channel model: GRAY, with the mean and std of the
        luma (:data:`LUMA`-weighted, read in RGB order). Unchanged if already GRAY."""
        if self.channel_order == "GRAY":
            return self
        rgb = slice(None, None, -1 if self.channel_order == "BGR" else 1)

        def luma(values: tuple[float, ...]) -> float:
            return math.fsum(w * v for w, v in zip(LUMA, values[rgb]))

        return dataclasses.replace(self, channel_order="GRAY", mean=luma(self.mean), std=luma(self.std))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-friendly form stored in model metadata (lists, not tuples)."""
        return {
            "size": list(self.size),
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": self.scale,
            "channel_order": self.channel_order,
            "layout": self.layout,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Read the metadata form; missing keys take the defaults.

        Raises:
            ModelLoadError: ``d`` is not an object, has unknown keys or bad values.
        """
        advice = f"fix or remove the model's {METADATA_KEY!r} metadata, or pass --preset"
        if not isinstance(d, Mapping):
            raise ModelLoadError(f"{METADATA_KEY!r} must be a JSON object, got {type(d).__name__}; {advice}")
        unknown = sorted(set(d) - set(FIELDS))
        if unknown:
            raise ModelLoadError(
                f"{METADATA_KEY!r} has unknown key(s) {unknown} (known: {', '.join(FIELDS)}); {advice}"
            )
        try:
            return cls(**d)
        except OnnxvizError as exc:
            raise ModelLoadError(f"{METADATA_KEY!r} is invalid: {exc}; {advice}") from exc

    def replace(self, **changes: Any) -> Preprocessing:
        """A copy with some fields changed (validated like the constructor)."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise OnnxvizError(f"Preprocessing has no field(s) {unknown}; its fields are {', '.join(FIELDS)}")
        return dataclasses.replace(self, **changes)


FIELDS = tuple(f.name for f in dataclasses.fields(Preprocessing))

#: Named conventions. Mean and std are in the model's channel order.
PRESETS: dict[str, Preprocessing] = {
    # torchvision.models, timm (most models), most PyTorch exports and the ONNX
    # Model Zoo's ImageNet classifiers: RGB in [0, 1], ImageNet mean/std, resize
    # the short side to 256 and centre-crop 224.
    "torchvision": Preprocessing(),
    # Original Caffe releases (VGG, ResNet) and Keras applications in "caffe" mode
    # (VGG16/19, ResNet50/101/152 v1): BGR 0..255 minus the ImageNet BGR mean.
    "caffe": Preprocessing(
        mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0), scale=1.0, channel_order="BGR"
    ),
    # Keras applications in "tf" mode (MobileNet v1/v2, InceptionV3,
    # InceptionResNetV2, Xception, NASNet) and TF-slim Inception: RGB in [-1, 1],
    # resized straight to the input size.
    "tf": Preprocessing(resize=None, mean=(1.0, 1.0, 1.0), std=(1.0, 1.0, 1.0), scale=1 / 127.5),
    # Models that normalise inside the graph, e.g. Keras EfficientNet/EfficientNetV2,
    # ConvNeXt, RegNet, ResNet-RS, MobileNetV3: RGB 0..255 as is.
    "raw": Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0),
}


def parse_preprocessing(preset: str | None = None, **overrides: Any) -> Preprocessing:
    """A preset refined by CLI-style overrides.

    Args:
        preset: a :data:`PRESETS` name (None: "torchvision").
        **overrides: field values; None means "keep the preset's". ``resize=0``
            means no resize (straight to ``size``).

    Raises:
        OnnxvizError: an unknown preset or field, or a bad value.
    """
    name = "torchvision" if preset is None else str(preset).strip().lower()
    if name not in PRESETS:
        raise OnnxvizError(f"unknown preprocessing preset {preset!r}; choose one of {', '.join(PRESETS)}")
    changes = {key: value for key, value in overrides.items() if value is not None}
    return PRESETS[name].replace(**changes)


# --------------------------------------------------------------------------- images
def load_image(image: ImageSource) -> np.ndarray:
    """Read an image as uint8 H×W×3 RGB.

    Args:
        image: a path to any file opencv reads (JPEG orientation tags applied),
            the encoded bytes of one, or an array: H×W, H×W×1 (grey), H×W×3 (RGB),
            H×W×4 (RGBA) or H×W×2 (grey + alpha); uint8, uint16 (16-bit), bool or
            float in [0, 1]. A uint8 H×W×3 array is returned as is.

    Returns:
        uint8 H×W×3 RGB: grey is repeated to three channels, alpha composited on
        white, 16-bit values scaled to 8 bits (``round(v / 257)``).

    Raises:
        ImageError: a missing or unreadable file, or an array of a shape or value
            range that is not an image.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        return _to_rgb8(_decode(_read_bytes(path), repr(path)), repr(path), from_file=True)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = np.frombuffer(image, dtype=np.uint8)
        return _to_rgb8(_decode(data, "image bytes"), "image bytes", from_file=True)
    array = np.asarray(image)  # also PIL images and other array-likes
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3 and array.size:
        return array
    return _to_rgb8(array, f"array of shape {array.shape}", from_file=False)


def fit_image(image: ImageSource, pre: Preprocessing) -> np.ndarray:
    """The resize and centre crop the model sees, as uint8 H×W×3 RGB of ``pre.size``.

    The short side goes to ``pre.resize`` (the other to ``round(side * s)``),
    enlarged further if needed to cover ``pre.size``, then the centre is cropped
    at offset ``(new - size) // 2``; with ``pre.resize`` None the image is resized
    straight to ``pre.size``. ``cv2.INTER_AREA`` shrinks, ``cv2.INTER_LINEAR`` enlarges.
    Overlays drawn on this image line up with the model's input pixels.

    Args:
        image: anything :func:`load_image` reads.
        pre: the preprocessing.
    """
    rgb = load_image(image)
    h, w = rgb.shape[:2]
    out_h, out_w = pre.size
    if pre.resize is None:
        new_h, new_w = out_h, out_w
    else:
        new_h, new_w = _short_side(h, w, pre.resize)
        if new_h < out_h or new_w < out_w:  # resize smaller than the crop: cover it
            new_h, new_w = _short_side(h, w, max(out_h * min(h, w) / h, out_w * min(h, w) / w))
            new_h, new_w = max(new_h, out_h), max(new_w, out_w)
    if new_h * new_w > MAX_RESIZED_PIXELS:
        # A strip (1 x 60000) would be resized whole first: 12 GB for a 224 x 224 crop. Crop
        # the source to what the centre crop covers, then resize that (alignment may move by
        # a fraction of a source pixel).
        crop_h, crop_w = max(1, round(out_h * h / new_h)), max(1, round(out_w * w / new_w))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        rgb, h, w, new_h, new_w = rgb[top : top + crop_h, left : left + crop_w], crop_h, crop_w, out_h, out_w
    if (new_h, new_w) != (h, w):
        shrinking = new_h <= h and new_w <= w
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    # a copy: without a resize the crop is a view of the caller's array
    return rgb[top : top + out_h, left : left + out_w].copy()


def seen_image(image: ImageSource, pre: Preprocessing) -> np.ndarray:
    """:func:`fit_image`, grey (in all three channels) when the model takes GRAY: the
    picture the model is given, for overlays."""
    rgb = fit_image(image, pre)
    if pre.channel_order == "GRAY":
        rgb = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return rgb


def preprocess(images: ImageSource | Iterable[ImageSource], pre: Preprocessing | None = None) -> np.ndarray:
    """Images -> the float32 batch the model takes.

    Args:
        images: one path/bytes/array, a list of them, or an N×H×W×C array.
        pre: the preprocessing (default: torchvision's).

    Returns:
        float32 (N, C, H, W) or (N, H, W, C) per ``pre.layout``, channels in
        ``pre.channel_order`` (C = 3, or 1 for GRAY: the luma, rounded to 0..255 as
        OpenCV's RGB2GRAY does), ``(pixel * scale - mean) / std``.

    Raises:
        ImageError: no images, or one that cannot be read.
    """
    pre = pre or PRESETS["torchvision"]
    items = _as_list(images)
    out_h, out_w = pre.size
    batch = np.empty((len(items), out_h, out_w, pre.channels), dtype=np.float32)
    table = _lookup_table(pre)
    order = [2, 1, 0] if pre.channel_order == "BGR" else [0, 1, 2]
    for i, item in enumerate(items):
        rgb = fit_image(item, pre)
        if pre.channel_order == "GRAY":
            batch[i, :, :, 0] = table[0][cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)]
            continue
        for c, source in enumerate(order):
            batch[i, :, :, c] = table[c][rgb[:, :, source]]
    if pre.layout == "NCHW":
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    return batch


def deprocess(x: np.ndarray, pre: Preprocessing | None = None) -> np.ndarray:
    """Undo :func:`preprocess`'s normalisation: model input -> uint8 RGB image(s).

    Args:
        x: one sample (3-D) or a batch (4-D) in ``pre.layout`` and ``pre.channel_order``.
        pre: the preprocessing (default: torchvision's).

    Returns:
        uint8 H×W×3 RGB for one sample, N×H×W×3 for a batch; values are
        ``round((x * std + mean) / scale)`` clipped to 0..255 (GRAY: that grey in all three).

    Raises:
        ImageError: ``x`` is not 3-D or 4-D with the preprocessing's channel count where
            the layout puts the channels.
    """
    pre = pre or PRESETS["torchvision"]
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (3, 4):
        raise ImageError(f"deprocess takes one sample (3-D) or a batch (4-D), got shape {x.shape}")
    hwc = x if pre.layout == "NHWC" else np.moveaxis(x, -3, -1)
    if hwc.shape[-1] != pre.channels:
        raise ImageError(
            f"expected {pre.channels} channel(s) on the channel axis of layout {pre.layout} "
            f"(channel_order {pre.channel_order}), got shape {x.shape}: pass arrays in the "
            f"preprocessing's layout (or change its layout)"
        )
    pixels = (hwc * np.asarray(pre.std) + np.asarray(pre.mean)) / pre.scale
    if pre.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    elif pre.channel_order == "GRAY":
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.ascontiguousarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------- helpers: images
def _read_bytes(path: str) -> np.ndarray:
    if os.path.isdir(path):
        raise ImageError(f"image path {path!r} is a folder; give an image file")
    if not os.path.isfile(path):
        raise ImageError(f"image file {path!r} does not exist; check the path")
    try:
        # np.fromfile + imdecode also reads non-ASCII paths, which cv2.imread cannot on Windows
        return np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"cannot read image file {path!r} ({exc.strerror or exc}); check its permissions") from exc


def _decode(data: np.ndarray, label: str) -> np.ndarray:
    # JPEG has no alpha, and only the colour/any-depth flags apply its EXIF
    # orientation (phones rotate that way); other formats are read unchanged to
    # keep alpha and 16-bit depth.
    jpeg = data[:2].tobytes() == b"\xff\xd8"
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH if jpeg else cv2.IMREAD_UNCHANGED
    try:
        decoded = cv2.imdecode(data, flags) if data.size else None
    except cv2.error as exc:  # OpenCV refuses images over CV_IO_MAX_IMAGE_PIXELS (2^30) with an error
        raise ImageError(
            f"{label} cannot be decoded by opencv ({_cv_reason(exc)}); shrink it below a "
            f"gigapixel, or convert it to PNG or JPEG"
        ) from exc
    if decoded is None:
        raise ImageError(
            f"{label} is not an image opencv can read (empty, corrupt or an unsupported "
            f"format); convert it to PNG or JPEG"
        )
    return decoded


def _cv_reason(exc: Exception) -> str:
    """The reason in an OpenCV error's text (after its ``(-215:Assertion failed)`` code)."""
    text = " ".join(str(exc).split())
    found = re.search(r"\(-?\d+:[^)]*\) (.*?)(?: in function .*)?$", text)
    return found.group(1) if found else text


def _to_rgb8(a: np.ndarray, label: str, from_file: bool) -> np.ndarray:
    """Any supported image array -> uint8 H×W×3 RGB (file arrays are BGR(A))."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)) or 0 in a.shape:
        raise ImageError(
            f"{label} is not an image: expected H×W (grey), H×W×3 (RGB) or H×W×4 (RGBA); "
            f"for a model-input batch use deprocess"
        )
    if a.dtype == np.uint8 and a.ndim == 2:
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    if a.dtype == np.uint8 and a.shape[2] == 3:
        return np.ascontiguousarray(a[:, :, ::-1] if from_file else a)
    unit = _unit_range(a, label, from_file)
    if unit.ndim == 2:
        unit = unit[:, :, None]
    colour, alpha = unit, None
    if unit.shape[2] in (2, 4):  # the last channel is alpha
        colour, alpha = unit[:, :, :-1], unit[:, :, -1:]
    if from_file and colour.shape[2] == 3:
        colour = colour[..., ::-1]
    if alpha is not None:
        colour = colour * alpha + (1.0 - alpha)  # composite on white
    rgb = np.clip(np.rint(colour * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb)


def _unit_range(a: np.ndarray, label: str, from_file: bool) -> np.ndarray:
    """Pixel values as float32 in [0, 1]."""
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if np.issubdtype(a.dtype, np.floating):
        f = a.astype(np.float32)
        if not np.all(np.isfinite(f)):
            raise ImageError(f"{label} has NaN or infinite values; an image needs finite pixels")
        if from_file:  # HDR/float TIFF: clip what a display cannot show
            return np.clip(f, 0.0, 1.0)
        if f.min() < -1e-6 or f.max() > 1 + 1e-6:
            raise ImageError(
                f"{label} is float with values in [{f.min():.3g}, {f.max():.3g}]; float images "
                f"must be in [0, 1]: divide by 255 or pass uint8"
            )
        return np.clip(f, 0.0, 1.0)
    if np.issubdtype(a.dtype, np.integer) and a.min() >= 0 and a.max() <= 255:
        return a.astype(np.float32) / 255.0
    raise ImageError(f"{label} has dtype {a.dtype} and values outside 0..255; pass uint8, uint16 or float in [0, 1]")


def _as_list(images: ImageSource | Iterable[ImageSource]) -> list[ImageSource]:
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)):
        return [images]
    if isinstance(images, np.ndarray):
        items = list(images) if images.ndim == 4 else [images]
    elif hasattr(images, "__iter__"):
        items = list(images)
    else:
        raise ImageError(
            f"expected an image (a path, encoded bytes or an array) or a list of them, got "
            f"{type(images).__name__}"
        )
    if not items:
        raise ImageError("no images given; pass a path, an array or a list of them")
    return items


def _short_side(h: int, w: int, side: float) -> tuple[int, int]:
    """(new_h, new_w) with the short side ``side``, the other rounded to keep the aspect."""
    s = side / min(h, w)
    short = round(side)
    return max(short, round(h * s)), max(short, round(w * s))


def _lookup_table(pre: Preprocessing) -> np.ndarray:
    """(channels, 256) float32: the normalised value of each 0..255 level per model channel.

    Computed in float64 and rounded once, so every input value is the correctly
    rounded float32 of ``(pixel * scale - mean) / std``.
    """
    levels = np.arange(256, dtype=np.float64)
    mean = np.asarray(pre.mean, dtype=np.float64)[:, None]
    std = np.asarray(pre.std, dtype=np.float64)[:, None]
    return ((levels * pre.scale - mean) / std).astype(np.float32)


__all__ = [
    "CHANNEL_ORDERS",
    "FIELDS",
    "LAYOUTS",
    "LUMA",
    "METADATA_KEY",
    "PRESETS",
    "Preprocessing",
    "deprocess",
    "fit_image",
    "load_image",
    "parse_preprocessing",
    "preprocess",
    "seen_image",
]
