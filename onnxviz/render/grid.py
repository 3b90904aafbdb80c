"""Captions and grids: label one image, tile many, channel and filter grids."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from onnxviz.errors import ChannelError, ImageError, OnnxvizError
from onnxviz.render._image import Colour, as_colour, as_rgb
from onnxviz.render.heatmap import colorize, normalize

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_ELLIPSIS = "..."  # Hershey fonts have no "…" glyph; three dots read the same


def label_height(width: int) -> int:
    """Default caption strip height for an image ``width`` pixels wide (16..28 px)."""
    return int(min(28, max(16, round(width * 0.12))))


def _fit(text: str, width: int, scale: float, thickness: int) -> str:
    """Longest prefix of ``text`` (plus an ellipsis when cut) whose rendering fits ``width``."""

    def fits(s: str) -> bool:
        return cv2.getTextSize(s, _FONT, scale, thickness)[0][0] <= width

    if fits(text):
        return text
    lo, hi = 0, len(text)  # binary search on the prefix length: width grows with it
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[:mid].rstrip() + _ELLIPSIS):
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + _ELLIPSIS if lo or fits(_ELLIPSIS) else ""


def label(
    image: np.ndarray,
    text: str,
    height: int | None = None,
    position: str = "bottom",
    background: Colour = 255,
    color: Colour = 0,
) -> np.ndarray:
    """Add a caption strip under (or over) an image.

    The text is centred, anti-aliased, sized to the strip (about 60 % of its
    height) and cut with "..." when it is wider than the image. Characters
    outside ASCII show as "?" (OpenCV's Hershey fonts).

    Args:
        image: uint8 RGB (or grey) image.
        text: caption.
        height: strip height in pixels; default from the image width (16..28 px).
        position: "bottom" or "top".
        background, color: strip and text colours (grey level or (r, g, b)).

    Returns:
        uint8 RGB image, ``height`` pixels taller.
    """
    if position not in ("bottom", "top"):
        raise OnnxvizError(f"unknown caption position {position!r}; use 'bottom' or 'top'")
    rgb = as_rgb(image)
    h, w = rgb.shape[:2]
    sh = label_height(w) if height is None else int(height)
    if sh <= 0:
        raise OnnxvizError(f"caption height {sh} must be positive")
    strip = np.empty((sh, w, 3), np.uint8)
    strip[:] = as_colour(background)
    text_h = max(6, round(sh * 0.6))
    thickness = max(1, round(text_h / 16))
    scale = cv2.getFontScaleFromHeight(_FONT, text_h, thickness)
    shown = _fit(" ".join(str(text).split()), w - 4, scale, thickness)
    if shown:
        (tw, th), _ = cv2.getTextSize(shown, _FONT, scale, thickness)
        org = ((w - tw) // 2, (sh + th) // 2)
        cv2.putText(strip, shown, org, _FONT, scale, as_colour(color, "text colour"), thickness, cv2.LINE_AA)
    parts = (rgb, strip) if position == "bottom" else (strip, rgb)
    return np.concatenate(parts, axis=0)


def grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) for ``n`` cells: ``cols`` given, or a near-square grid (cols = ceil(sqrt n))."""
    if n <= 0:
        raise ImageError("nothing to tile: the list of images is empty")
    cols = math.ceil(math.sqrt(n)) if cols is None else int(cols)
    if cols <= 0:
        raise OnnxvizError(f"cols={cols} must be positive")
    cols = min(cols, n)
    return math.ceil(n / cols), cols


def tile(
    images: Sequence[np.ndarray],
    captions: Sequence[str] | None = None,
    cols: int | None = None,
    pad: int = 4,
    background: Colour = 255,
) -> np.ndarray:
    """Place images on a grid, row by row.

    Every cell has the size of the largest (captioned) image; smaller images are
    centred in their cell. The result is
    ``rows * cell_h + (rows + 1) * pad`` high and ``cols * cell_w + (cols + 1) * pad`` wide.

    Args:
        images: uint8 RGB or grey images, any sizes.
        captions: one caption per image (see :func:`label`), or None.
        cols: columns; default a near-square grid.
        pad: gap between cells and around the border, in pixels.
        background: grey level or (r, g, b) of the gaps and empty cells.

    Returns:
        uint8 RGB image.
    """
    rgbs = [as_rgb(im, f"image {i}") for i, im in enumerate(images)]
    if captions is not None:
        if len(captions) != len(rgbs):
            raise OnnxvizError(f"{len(captions)} captions for {len(rgbs)} images; give one caption per image")
        rgbs = [label(im, c, background=background) for im, c in zip(rgbs, captions)]
    if pad < 0:
        raise OnnxvizError(f"pad={pad} must be >= 0")
    rows, cols = grid_shape(len(rgbs), cols)
    ch = max(im.shape[0] for im in rgbs)
    cw = max(im.shape[1] for im in rgbs)
    out = np.empty((rows * ch + (rows + 1) * pad, cols * cw + (cols + 1) * pad, 3), np.uint8)
    out[:] = as_colour(background)
    for i, im in enumerate(rgbs):
        r, c = divmod(i, cols)
        y = pad + r * (ch + pad) + (ch - im.shape[0]) // 2
        x = pad + c * (cw + pad) + (cw - im.shape[1]) // 2
        out[y : y + im.shape[0], x : x + im.shape[1]] = im
    return out


def _fit_cell(image: np.ndarray, cell: int) -> np.ndarray:
    """Scale an image so its longer side is ``cell``: nearest-neighbour up (pixels stay
    honest squares), area averaging down."""
    h, w = image.shape[:2]
    s = cell / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if s > 1 else cv2.INTER_AREA)


def channel_grid(
    activations: np.ndarray,
    cols: int | None = None,
    cell: int = 64,
    cmap: str = "viridis",
    labels: bool = True,
    channels: Sequence[int] | None = None,
    percentile: float | None = 99.5,
    pad: int = 2,
    background: Colour = 255,
) -> np.ndarray:
    """Tile every channel of one layer's activations, each normalised on its own.

    The layer-activation plot of Chollet's *Deep Learning with Python*: channel k
    is min-max normalised (see :func:`normalize`), coloured, scaled to ``cell``
    pixels (nearest-neighbour when enlarging) and captioned with ``k``. A dead
    (constant) channel shows flat, in the colormap's lowest colour.

    Args:
        activations: C×h×w (a leading batch axis of size 1 is accepted).
        cols: grid columns; default near-square.
        cell: pixels of the longer side of each channel image.
        cmap: colormap name.
        labels: caption each cell with its channel index.
        channels: indices to show, in this order; default all.
        percentile: per-channel clipping, see :func:`normalize`.
        pad, background: see :func:`tile`.

    Returns:
        uint8 RGB image.

    Raises:
        ImageError: not a C×h×w array.
        ChannelError: a channel index out of range.
    """
    a = np.asarray(activations)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.size == 0:
        raise ImageError(
            f"expected activations of shape C×h×w, got {np.shape(activations)}; "
            f"take one image of the batch and use channels-first layout"
        )
    if cell <= 0:
        raise OnnxvizError(f"cell={cell} must be positive")
    idx = list(range(a.shape[0])) if channels is None else [int(k) for k in channels]
    bad = [k for k in idx if not 0 <= k < a.shape[0]]
    if bad:
        raise ChannelError(
            f"channel {bad[0]} is out of range: this tensor has {a.shape[0]} channels (0..{a.shape[0] - 1})"
        )
    tiles = [_fit_cell(colorize(normalize(a[k], "minmax", percentile), cmap), cell) for k in idx]
    captions = [str(k) for k in idx] if labels else None
    return tile(tiles, captions, cols=cols, pad=pad, background=background)


def filter_grid(
    weights: np.ndarray,
    cell: int = 32,
    cols: int | None = None,
    channel_order: str = "RGB",
    pad: int = 2,
    background: Colour = 255,
    labels: bool = False,
) -> np.ndarray:
    """Show conv kernels (usually the first layer's) as small images.

    All kernels are normalised jointly around zero (``0.5 + 0.5 w / max|w|``,
    zero = mid-grey), so colour blobs and oriented edges compare across kernels.
    With 3 input channels each kernel is an RGB image; otherwise the mean over
    input channels is shown in grey. Kernels are enlarged by the largest whole
    factor that fits ``cell`` (nearest-neighbour, so each weight is a square).

    Args:
        weights: O×I×kh×kw.
        cell: pixels available for the longer kernel side.
        cols: grid columns; default near-square.
        channel_order: "RGB", or "BGR" for a model fed BGR input (kernels shown in true
            colour); "GRAY" (one input channel) in grey.
        pad, background: see :func:`tile`.
        labels: caption each kernel with its output index.

    Returns:
        uint8 RGB image.
    """
    if channel_order not in ("RGB", "BGR", "GRAY"):
        raise OnnxvizError(f"unknown channel order {channel_order!r}; use 'RGB', 'BGR' or 'GRAY'")
    w = np.asarray(weights)
    if w.ndim != 4 or w.size == 0:
        raise ImageError(f"expected conv weights of shape O×I×kh×kw, got {w.shape}")
    if w.shape[1] == 3:
        if channel_order == "BGR":
            w = w[:, ::-1]
        k = np.moveaxis(w, 1, -1)  # O×kh×kw×3
    else:
        k = w.mean(axis=1)[..., None]  # O×kh×kw×1
    u8 = np.rint(normalize(k, "symmetric", None) * 255.0).astype(np.uint8)
    factor = max(1, cell // max(w.shape[2], w.shape[3]))
    tiles = [np.kron(as_rgb(im), np.ones((factor, factor, 1), np.uint8)) for im in u8]
    captions = [str(i) for i in range(len(tiles))] if labels else None
    return tile(tiles, captions, cols=cols, pad=pad, background=background)
