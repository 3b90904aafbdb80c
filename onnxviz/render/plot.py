"""Plots drawn with OpenCV: a bar chart of one vector (a pooled feature, a layer of logits)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from onnxviz.errors import ImageError, OnnxvizError
from onnxviz.render.grid import _FONT, _fit

POSITIVE = (52, 101, 164)  # RGB
NEGATIVE = (204, 85, 51)
HIGHLIGHT = (230, 159, 0)
_AXIS = (90, 90, 90)
_TEXT = (0, 0, 0)
_SCALE = 0.45  # Hershey font scale: about 13 px tall


def nice_step(span: float, most: int) -> float:
    """The smallest of 1, 2 and 5 times a power of ten that cuts ``span`` into at most
    ``most`` steps."""
    if span <= 0 or most < 1:
        return 1.0
    raw = span / most
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def _span(k: int, n: int, left: int, plot_w: int) -> tuple[int, int]:
    """Pixel columns [start, end) of entry ``k`` of ``n`` across a plot ``plot_w`` wide
    (end == start when entries outnumber columns: the bar still gets the start column)."""
    return left + (int(k) * plot_w) // n, left + ((int(k) + 1) * plot_w) // n


def _number(value: float) -> str:
    return f"{value:.3g}"


def bar_chart(
    values: np.ndarray,
    labels: Sequence[str] | None = None,
    top: int = 10,
    title: str | None = None,
    highlight: int | None = None,
    size: tuple[int, int] = (960, 400),
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """One bar per entry of a vector, from zero; the ``top`` largest are listed beside it.

    For a layer with no spatial extent (after global pooling, a classifier's logits): a grid
    of 1x1 maps each normalised on its own would show every channel flat. Bars above zero
    are blue, below red; the axis is labelled with the smallest and largest value and zero,
    the channel axis with round indices. The list on the right gives, for each of the ``top``
    largest entries, its index, value and label (``labels[k]`` when given, e.g. class names).

    Args:
        values: 1-D array (a leading batch axis of size 1, or trailing size-1 axes, are
            accepted). Non-finite entries are drawn as gaps and left out of the list.
        labels: one name per entry, or None.
        top: entries to list (0 for none).
        title: caption above the plot.
        highlight: an index whose bar is drawn in orange.
        size: (width, height) of the whole picture in pixels.
        background: RGB.

    Returns:
        uint8 RGB image of ``size``.

    Raises:
        ImageError: not a vector, empty, or no finite entry.
        OnnxvizError: labels of the wrong length, a picture too small, a bad ``highlight``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim > 1 and v.shape[0] == 1:
        v = v[0]
    while v.ndim > 1 and v.shape[-1] == 1:
        v = v[..., 0]
    if v.ndim != 1 or v.size == 0:
        raise ImageError(
            f"a bar chart takes one vector, got shape {np.shape(values)}; take one sample of "
            f"the batch (values[0]) of a layer with no spatial extent"
        )
    finite = np.isfinite(v)
    if not finite.any():
        raise ImageError(f"no finite value among the {v.size} entries to plot")
    n = v.size
    if labels is not None and len(labels) != n:
        raise OnnxvizError(f"{len(labels)} labels for {n} values; give one label per entry or none")
    if highlight is not None and not 0 <= highlight < n:
        raise OnnxvizError(f"highlight={highlight} is out of range 0..{n - 1}")
    width, height = (int(s) for s in size)
    top = max(0, min(int(top), int(finite.sum())))
    panel = 250 if top else 0
    left, right, upper, lower = 64, 16 + panel, 34 if title else 14, 34
    plot_w, plot_h = width - left - right, height - upper - lower
    if plot_w < 40 or plot_h < 40:
        raise OnnxvizError(f"a {width}x{height} picture leaves no room for the plot; make it larger")
    picture = np.empty((height, width, 3), np.uint8)
    picture[:] = background

    low, high = min(0.0, float(v[finite].min())), max(0.0, float(v[finite].max()))
    if high == low:
        high = low + 1.0

    def y(value: float) -> int:
        return upper + int(round((high - value) / (high - low) * plot_h))

    zero = y(0.0)
    marked = [] if highlight is None or not finite[highlight] else [highlight]
    for k in [*np.flatnonzero(finite), *marked]:  # the marked bar last, over its neighbours
        x0, end = _span(k, n, left, plot_w)
        x1 = end - 2 if end - x0 >= 3 else max(x0, end - 1)  # a 1 px gap between wide bars
        colour = HIGHLIGHT if k == highlight else POSITIVE if v[k] >= 0 else NEGATIVE
        cv2.rectangle(picture, (x0, zero), (x1, y(float(v[k]))), colour, -1)
    if highlight is not None:  # a thin bar among thousands still needs to be found
        hx = sum(_span(highlight, n, left, plot_w)) // 2
        cv2.drawMarker(picture, (hx, upper - 2), HIGHLIGHT, cv2.MARKER_TRIANGLE_DOWN, 9, 2)

    cv2.line(picture, (left, zero), (left + plot_w - 1, zero), _AXIS, 1)
    cv2.line(picture, (left - 1, upper), (left - 1, upper + plot_h), _AXIS, 1)
    for value in sorted({low, 0.0, high}):
        text = _number(value)
        (tw, th), _ = cv2.getTextSize(text, _FONT, _SCALE, 1)
        ty = min(max(y(value) + th // 2, upper + th), upper + plot_h)
        cv2.putText(picture, text, (left - 6 - tw, ty), _FONT, _SCALE, _TEXT, 1, cv2.LINE_AA)
        cv2.line(picture, (left - 4, y(value)), (left - 1, y(value)), _AXIS, 1)
    step = max(1, int(nice_step(n - 1, max(1, plot_w // 70))))
    for k in range(0, n, step):
        x = sum(_span(k, n, left, plot_w)) // 2
        text = str(k)
        (tw, th), _ = cv2.getTextSize(text, _FONT, _SCALE, 1)
        cv2.line(picture, (x, upper + plot_h + 1), (x, upper + plot_h + 5), _AXIS, 1)
        cv2.putText(picture, text, (min(max(x - tw // 2, 0), left + plot_w - tw), upper + plot_h + 8 + th),
                    _FONT, _SCALE, _TEXT, 1, cv2.LINE_AA)
    if title:
        cv2.putText(picture, _fit(title, width - 16, _SCALE * 1.2, 1), (8, 22), _FONT, _SCALE * 1.2, _TEXT, 1,
                    cv2.LINE_AA)
    if top:
        order = np.flatnonzero(finite)[np.argsort(-v[finite], kind="stable")][:top]
        x = width - panel + 8
        line = max(16, min(24, plot_h // (top + 2)))
        cv2.putText(picture, f"largest {top} of {n}", (x, upper + line - 6), _FONT, _SCALE, _TEXT, 1, cv2.LINE_AA)
        rows = list(order) + ([] if highlight is None or highlight in order else [highlight])
        for row, k in enumerate(rows, start=2):  # the marked entry's value too, wherever it ranks
            text = f"{k}: {_number(float(v[k]))}" + (f"  {labels[k]}" if labels is not None else "")
            colour = HIGHLIGHT if k == highlight else _TEXT
            cv2.putText(picture, _fit(text, panel - 12, _SCALE, 1), (x, upper + row * line - 6), _FONT, _SCALE,
                        colour, 1, cv2.LINE_AA)
    return picture
