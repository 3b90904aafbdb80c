"""Checks shared by the render modules: what counts as an image, and colours."""

from __future__ import annotations

import numpy as np

from onnxviz.errors import ImageError, OnnxvizError

Colour = int | tuple[int, int, int]


def as_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Return ``image`` as a contiguous uint8 H×W×3 RGB array.

    Grey images (H×W or H×W×1) are repeated over three channels; an alpha
    channel (H×W×4) is dropped.

    Raises:
        ImageError: not uint8, or not one of the shapes above.
    """
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ImageError(
            f"{what} has dtype {a.dtype}, expected uint8 RGB; scale it to 0..255 and "
            f"convert with .astype(np.uint8) (or use render.heatmap.colorize for maps)"
        )
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(
            f"{what} has shape {a.shape}, expected H×W, H×W×1, H×W×3 or H×W×4 (channels last)"
        )
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


def as_colour(value: Colour, what: str = "background") -> tuple[int, int, int]:
    """Return an int grey level or an (r, g, b) triple as an (r, g, b) tuple of ints."""
    rgb = (value, value, value) if np.isscalar(value) else tuple(value)
    if len(rgb) != 3 or not all(0 <= int(c) <= 255 for c in rgb):
        raise OnnxvizError(f"{what} {value!r} is not a grey level or (r, g, b) in 0..255")
    return tuple(int(c) for c in rgb)
