"""Maps to pictures: normalise, upsample, colour, blend over a photo, show gradients."""

from __future__ import annotations

import cv2
import numpy as np

from onnxviz.errors import ImageError, OnnxvizError
from onnxviz.render._image import as_rgb

NORMALIZE_MODES = ("minmax", "abs", "symmetric")

# Colormap name -> OpenCV code; None means plain grey levels (OpenCV has no grey colormap).
COLORMAPS: dict[str, int | None] = {
    "gray": None,
    "grey": None,
    **{
        name[len("COLORMAP_"):].lower(): getattr(cv2, name)
        for name in sorted(dir(cv2))
        if name.startswith("COLORMAP_")
    },
}

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


def _finite(m: np.ndarray) -> np.ndarray:
    """float64 copy of ``m`` with NaN -> 0 and ±inf -> the finite extremes."""
    m = np.asarray(m, dtype=np.float64)
    if m.size == 0:
        raise ImageError("cannot normalise an empty map; check the layer and channel chosen")
    finite = np.isfinite(m)
    if finite.all():
        return m
    lo, hi = (m[finite].min(), m[finite].max()) if finite.any() else (0.0, 0.0)
    return np.nan_to_num(m, nan=0.0, posinf=hi, neginf=lo)


def _high(values: np.ndarray, percentile: float | None) -> float:
    """The ``percentile`` of ``values`` (the max when None)."""
    return float(values.max() if percentile is None else np.percentile(values, percentile))


def normalize(
    map: np.ndarray, mode: str = "minmax", percentile: float | None = 99.5
) -> np.ndarray:
    """Scale a map to float32 in [0, 1].

    - ``"minmax"``: ``(m - min) / (hi - min)``, hi = the ``percentile`` of m (max when None);
      values above hi clip to 1.
    - ``"abs"``: ``|m| / hi``, hi = the ``percentile`` of ``|m|``.
    - ``"symmetric"`` (signed maps, zero shown at 0.5): ``0.5 + 0.5 m / hi``, hi = the
      ``percentile`` of ``|m|``.

    When the percentile equals the low end (a sparse map: almost all values equal) the
    max is used instead, so isolated peaks still show. When there is nothing to scale
    (a constant map in "minmax", an all-zero map in "abs"/"symmetric") the result is
    the value of zero: 0, or 0.5 in "symmetric"; never NaN. NaN inputs count as 0.

    Args:
        map: any shape, any real dtype.
        mode: one of ``NORMALIZE_MODES``.
        percentile: in (0, 100], or None for the maximum.

    Raises:
        OnnxvizError: unknown mode or percentile out of range.
        ImageError: empty map.
    """
    if mode not in NORMALIZE_MODES:
        raise OnnxvizError(f"unknown normalisation {mode!r}; choose one of {', '.join(NORMALIZE_MODES)}")
    if percentile is not None and not 0 < percentile <= 100:
        raise OnnxvizError(f"percentile {percentile} is outside (0, 100]; use e.g. 99.5, or None for the max")
    m = _finite(map)
    if mode == "minmax":
        lo = float(m.min())
        hi = _high(m, percentile)
        if hi <= lo:
            hi = float(m.max())
        if hi <= lo:
            return np.zeros(m.shape, np.float32)
        out = (m - lo) / (hi - lo)
    else:
        a = np.abs(m)
        hi = _high(a, percentile)
        if hi <= 0:
            hi = float(a.max())
        if hi <= 0:
            return np.full(m.shape, 0.5 if mode == "symmetric" else 0.0, np.float32)
        out = a / hi if mode == "abs" else 0.5 + 0.5 * m / hi
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def upsample(map: np.ndarray, size: tuple[int, int], interpolation: str = "bicubic") -> np.ndarray:
    """Resize a 2-D map to ``size = (height, width)`` as float32.

    Bicubic by default, so a 7×7 CAM becomes a smooth 224×224 map (bicubic can
    overshoot the input range slightly; normalise afterwards). Shrinking in both
    directions uses area averaging whatever ``interpolation`` says, to avoid aliasing.

    Args:
        map: H×W array.
        size: (height, width) of the result.
        interpolation: one of ``INTERPOLATIONS``.

    Raises:
        ImageError: the map is not 2-D or the size is not positive.
        OnnxvizError: unknown interpolation.
    """
    m = np.asarray(map)
    if m.ndim != 2 or m.size == 0:
        raise ImageError(f"expected a 2-D map, got shape {m.shape}; pick one channel or reduce over channels first")
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ImageError(f"cannot resize a map to {h}×{w}; the size must be positive")
    if interpolation not in INTERPOLATIONS:
        raise OnnxvizError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
    m = _finite(m).astype(np.float32)
    if (h, w) == m.shape:
        return m.copy()
    if m.min() == m.max():  # interpolation rounding would ripple it, and normalising magnify that
        return np.full((h, w), m.flat[0], np.float32)
    flag = INTERPOLATIONS[interpolation]
    if h <= m.shape[0] and w <= m.shape[1]:
        flag = cv2.INTER_AREA
    return cv2.resize(m, (w, h), interpolation=flag)


def colorize(map01: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Colour a map with values in [0, 1] (clipped) through an OpenCV colormap.

    Args:
        map01: H×W float map in [0, 1], or H×W uint8 (used as is).
        cmap: a key of ``COLORMAPS`` (jet, viridis, inferno, magma, turbo, hot, bone, gray...).

    Returns:
        H×W×3 uint8 RGB.

    Raises:
        OnnxvizError: unknown colormap.
        ImageError: the map is not 2-D.
    """
    if cmap not in COLORMAPS:
        raise OnnxvizError(f"unknown colormap {cmap!r}; choose one of {', '.join(COLORMAPS)}")
    m = np.asarray(map01)
    if m.ndim != 2 or m.size == 0:
        raise ImageError(f"expected a 2-D map to colour, got shape {m.shape}")
    if m.dtype != np.uint8:
        m = np.rint(np.clip(_finite(m), 0.0, 1.0) * 255.0).astype(np.uint8)
    code = COLORMAPS[cmap]
    if code is None:
        return np.repeat(m[:, :, None], 3, axis=2)
    return cv2.cvtColor(cv2.applyColorMap(m, code), cv2.COLOR_BGR2RGB)


def blend(image: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * image + alpha * colour``, rounded to uint8 (same-size RGB images)."""
    if not 0.0 <= alpha <= 1.0:
        raise OnnxvizError(f"alpha {alpha} is outside [0, 1]; 0 shows only the image, 1 only the map")
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay(
    image: np.ndarray,
    map: np.ndarray,
    alpha: float = 0.5,
    cmap: str = "jet",
    mode: str = "minmax",
    percentile: float | None = 99.5,
) -> np.ndarray:
    """Blend a coloured heatmap over a photo.

    The raw map is upsampled to the photo's size first, then normalised (so
    normalisation sees the smooth map), coloured and blended.

    Args:
        image: uint8 RGB photo (H×W×3, or grey).
        map: 2-D map of any size (e.g. a 7×7 CAM, a 224×224 saliency map).
        alpha: weight of the heatmap; 0 gives the photo, 1 the coloured map.
        cmap: colormap name, see ``COLORMAPS``.
        mode, percentile: see :func:`normalize`.

    Returns:
        H×W×3 uint8 RGB.
    """
    rgb = as_rgb(image)
    m = upsample(map, rgb.shape[:2])
    colour = colorize(normalize(m, mode, percentile), cmap)
    return blend(rgb, colour, alpha)


def gradient_image(
    grad: np.ndarray,
    layout: str = "CHW",
    percentile: float | None = 99.5,
    channel_order: str = "RGB",
) -> np.ndarray:
    """Show an input-space gradient (vanilla, guided backprop, deconvnet) as an image.

    Zero is mid-grey; the scale is the ``percentile`` of |g| over all channels
    jointly (so colour balance is kept), giving ``0.5 + 0.5 g / p``, clipped. One
    channel gives a grey image; three give colour; any other count shows the mean
    over channels in grey.

    Args:
        grad: C×H×W ("CHW") or H×W×C ("HWC"); a leading batch axis of size 1 and a
            plain H×W map are accepted too.
        layout: "CHW" or "HWC".
        percentile: see :func:`normalize`.
        channel_order: "RGB", or "BGR" for a model fed BGR input (shown in true colour);
            "GRAY" (one channel) is shown in grey.

    Returns:
        H×W×3 uint8 RGB.
    """
    if layout not in ("CHW", "HWC"):
        raise OnnxvizError(f"unknown layout {layout!r}; use 'CHW' or 'HWC'")
    if channel_order not in ("RGB", "BGR", "GRAY"):
        raise OnnxvizError(f"unknown channel order {channel_order!r}; use 'RGB', 'BGR' or 'GRAY'")
    g = np.asarray(grad)
    if g.ndim == 4 and g.shape[0] == 1:
        g = g[0]
    if g.ndim == 2:
        g = g[None] if layout == "CHW" else g[:, :, None]
    if g.ndim != 3:
        raise ImageError(f"expected a gradient of shape C×H×W or H×W×C, got {np.shape(grad)}")
    if layout == "CHW":
        g = np.moveaxis(g, 0, -1)
    if g.shape[2] not in (1, 3):
        g = g.mean(axis=2, keepdims=True)
    elif g.shape[2] == 3 and channel_order == "BGR":
        g = g[:, :, ::-1]
    u8 = np.rint(normalize(g, "symmetric", percentile) * 255.0).astype(np.uint8)
    return as_rgb(u8)
