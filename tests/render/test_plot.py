"""bar_chart: bar geometry against a hand computation, the marked bar, the list, errors."""

import numpy as np
import pytest

from onnxviz.errors import ImageError, OnnxvizError
from onnxviz.render.plot import HIGHLIGHT, NEGATIVE, POSITIVE, bar_chart, nice_step

WHITE = (255, 255, 255)
# With no title and no list: plot from x=64 (400 px wide) and y=14 (200 px high) in 480x248.
SIZE = (480, 248)
LEFT, UPPER, PLOT_W, PLOT_H = 64, 14, 400, 200


@pytest.mark.parametrize("span, most, step", [(999, 9, 200), (10, 10, 1), (7, 3, 5), (0.7, 7, 0.1), (0, 5, 1)])
def test_nice_step(span, most, step):
    assert nice_step(span, most) == pytest.approx(step)


def _column(picture, x):
    return [tuple(int(c) for c in px) for px in picture[:, x]]


def test_bars_run_from_zero_to_their_value():
    values = np.array([2.0, -1.0, 0.5, 1.0])
    picture = bar_chart(values, top=0, size=SIZE)
    assert picture.shape == (248, 480, 3) and picture.dtype == np.uint8

    def y(v):  # by hand: the axis spans [-1, 2] over 200 px
        return UPPER + round((2 - v) / 3 * PLOT_H)

    zero = y(0)
    assert zero == 147
    for k, v in enumerate(values):
        column = _column(picture, LEFT + 100 * k + 50)  # the middle of bar k (100 px each)
        top, bottom = sorted((y(v), zero))
        colour = POSITIVE if v >= 0 else NEGATIVE
        for row in range(top, bottom + 1):
            assert row == zero or column[row] == colour, (k, row)
        assert column[top - 1] == WHITE and column[bottom + 1] != colour  # (a tick mark under bar 1)
    gap = _column(picture, LEFT + 99)  # the last column of bar 0: a 1 px gap
    assert gap[100] == WHITE


def test_batch_and_unit_axes_are_squeezed_and_non_finite_entries_are_gaps():
    values = np.array([1.0, 3.0, 2.0])
    expected = bar_chart(values, size=SIZE)
    for shaped in (values[None], values[:, None, None], values[None, :, None, None]):
        np.testing.assert_array_equal(bar_chart(shaped, size=SIZE), expected)
    gappy = bar_chart(np.array([1.0, np.nan, 1.0]), top=0, size=SIZE)
    middle = _column(gappy, LEFT + PLOT_W // 2)
    assert POSITIVE not in middle


def test_the_marked_bar_is_drawn_over_bars_sharing_its_pixels():
    values = np.ones(2000)  # five entries per pixel column
    values[1000] = 0.5
    picture = bar_chart(values, top=0, size=SIZE, highlight=1000)
    x = LEFT + 1000 * PLOT_W // 2000
    column = _column(picture, x)
    y_quarter = UPPER + round(0.75 * PLOT_H)  # value 0.25 on a [0, 1] axis
    assert column[y_quarter] == HIGHLIGHT
    assert column[UPPER + 10] == POSITIVE  # above the marked bar: a neighbour's full height
    assert HIGHLIGHT not in _column(bar_chart(values, top=0, size=SIZE), x)


def _text_rows(picture, x0):
    """Runs of rows with ink right of x0."""
    ink = (picture[:, x0:] < 200).any(axis=(1, 2))
    return int(np.sum(ink[1:] & ~ink[:-1]) + ink[0])


def test_the_list_has_a_header_a_row_per_top_entry_and_the_marked_one():
    values = np.arange(12.0)
    width = 480 + 250
    picture = bar_chart(values, top=3, size=(width, 400))
    panel = width - 250
    assert _text_rows(picture, panel) == 1 + 3
    assert _text_rows(bar_chart(values, top=3, size=(width, 400), highlight=0), panel) == 1 + 3 + 1
    assert _text_rows(bar_chart(values, top=3, size=(width, 400), highlight=11), panel) == 1 + 3  # already listed


@pytest.mark.parametrize("values, kwargs, error, words", [
    (np.ones((3, 4)), {}, ImageError, "one vector"),
    (np.ones(0), {}, ImageError, "one vector"),
    (np.full(3, np.nan), {}, ImageError, "no finite value"),
    (np.ones(3), {"labels": ["a", "b"]}, OnnxvizError, "2 labels for 3 values"),
    (np.ones(3), {"highlight": 3}, OnnxvizError, "out of range 0..2"),
    (np.ones(3), {"size": (100, 60)}, OnnxvizError, "larger"),
])
def test_errors(values, kwargs, error, words):
    with pytest.raises(error, match=words):
        bar_chart(values, **kwargs)
