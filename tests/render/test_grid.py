"""label / tile / channel_grid / filter_grid: geometry and pixel values."""

import cv2
import numpy as np
import pytest

from onnxviz.errors import ChannelError, ImageError, OnnxvizError
from onnxviz.render.grid import channel_grid, filter_grid, label, label_height, tile


def _solid(h, w, colour):
    return np.full((h, w, 3), colour, np.uint8)


# -- label ---------------------------------------------------------------------


def test_label_adds_a_strip_with_ink_below_or_above():
    img = _solid(20, 80, (10, 200, 30))
    out = label(img, "conv1", height=18)
    assert out.shape == (38, 80, 3)
    np.testing.assert_array_equal(out[:20], img)
    strip = out[20:]
    assert strip.min() < 100  # dark text drawn
    assert (strip[0] == 255).all() and (strip[:, 0] == 255).all()  # white margins
    top = label(img, "conv1", height=18, position="top")
    np.testing.assert_array_equal(top[18:], img)
    np.testing.assert_array_equal(top[:18], strip)


def test_label_default_height_and_grey_input():
    out = label(np.zeros((10, 64), np.uint8), "7")
    assert out.shape == (10 + label_height(64), 64, 3)
    assert label_height(64) >= 16  # legible at small cells
    assert label_height(1000) == 28


def test_long_text_is_truncated_inside_the_image():
    img = _solid(10, 60, 0)
    out = label(img, "a_very_long_layer_name/with/parts" * 3, height=16)
    strip = out[10:]
    ink = np.where((strip < 128).any(axis=(0, 2)))[0]
    assert ink.min() >= 1 and ink.max() <= 58  # nothing cut at the edges
    # the cut depends only on the start: any longer tail gives the same picture
    np.testing.assert_array_equal(out, label(img, "a_very_long_layer_name/with/parts" * 5, height=16))


def test_label_colours_and_errors():
    out = label(_solid(4, 40, 0), "x", height=16, background=(0, 0, 255), color=(255, 255, 0))
    assert tuple(out[4, 0]) == (0, 0, 255)
    with pytest.raises(OnnxvizError, match="position"):
        label(_solid(4, 4, 0), "x", position="left")
    with pytest.raises(ImageError, match="dtype float64"):
        label(np.zeros((4, 4)), "x")


# -- tile ----------------------------------------------------------------------


def test_tile_geometry_and_placement():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9), (200, 100, 0)]
    sizes = [(10, 20), (30, 15), (5, 5), (30, 20), (1, 1)]
    images = [_solid(h, w, c) for (h, w), c in zip(sizes, colours)]
    out = tile(images, pad=3, background=255)
    # 5 images -> 3 columns, 2 rows; each cell 30 x 20
    assert out.shape == (2 * 30 + 3 * 3, 3 * 20 + 4 * 3, 3)
    for i, ((h, w), c) in enumerate(zip(sizes, colours)):
        r, col = divmod(i, 3)
        y = 3 + r * 33 + (30 - h) // 2
        x = 3 + col * 23 + (20 - w) // 2
        np.testing.assert_array_equal(out[y : y + h, x : x + w], _solid(h, w, c))
        if h < 30:  # background right above a centred image
            assert (out[y - 1, x : x + w] == 255).all()
    assert (out[:3] == 255).all() and (out[:, :3] == 255).all()
    assert (out[36:, 3 + 2 * 23 :] == 255).all()  # the empty sixth cell


def test_tile_cols_and_grey_inputs():
    out = tile([np.zeros((4, 4), np.uint8)] * 7, cols=2, pad=0)
    assert out.shape == (16, 8, 3)
    assert (out[12:, 4:] == 255).all() and (out[:12] == 0).all()
    assert tile([np.zeros((4, 4), np.uint8)] * 3, cols=10, pad=0).shape == (4, 12, 3)


def test_tile_with_captions_adds_strips():
    imgs = [_solid(20, 40, 0), _solid(20, 40, 50)]
    out = tile(imgs, ["a", "b"], pad=2)
    h = 20 + label_height(40)
    assert out.shape == (h + 4, 40 * 2 + 6, 3)
    np.testing.assert_array_equal(out[2:22, 44:84], imgs[1])


def test_tile_errors():
    with pytest.raises(ImageError, match="empty"):
        tile([])
    with pytest.raises(OnnxvizError, match="2 captions for 1 images"):
        tile([_solid(2, 2, 0)], ["a", "b"])


# -- channel_grid --------------------------------------------------------------


def test_channel_grid_places_each_normalised_channel_in_its_cell():
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((5, 4, 4)).astype(np.float32) * np.arange(1, 6)[:, None, None]
    acts[4] = 7.0  # a dead (constant) channel
    out = channel_grid(acts, cols=3, cell=8, cmap="gray", labels=False, percentile=None, pad=1)
    assert out.shape == (1 + 2 * 9, 1 + 3 * 9, 3)
    for k in range(5):
        r, c = divmod(k, 3)
        a = acts[k].astype(np.float64)
        rng_k = a.max() - a.min()
        expected = np.zeros_like(a) if rng_k == 0 else (a - a.min()) / rng_k
        expected = np.rint(expected * 255).astype(np.uint8).repeat(2, 0).repeat(2, 1)  # 4 -> 8 nearest
        y, x = 1 + r * 9, 1 + c * 9
        np.testing.assert_array_equal(out[y : y + 8, x : x + 8, 0], expected, err_msg=f"channel {k}")
        np.testing.assert_array_equal(out[y : y + 8, x : x + 8, 1], expected)
    assert (out[10:19, 19:] == 255).all()  # empty sixth cell


def test_channel_grid_labels_subset_and_colormap():
    acts = np.zeros((10, 3, 3))
    acts[7, 1, 1] = 1.0
    out = channel_grid(acts, channels=[7, 2], cell=24, cmap="viridis", labels=True, pad=0)
    lh = label_height(24)
    assert out.shape == (24 + lh, 48, 3)
    # channel 7 first: its centre 8x8 block is viridis(1) (yellow), the rest viridis(0)
    viridis = lambda v: cv2.applyColorMap(np.uint8([[v]]), cv2.COLORMAP_VIRIDIS)[0, 0, ::-1]  # noqa: E731
    hi, lo = viridis(255), viridis(0)
    np.testing.assert_array_equal(out[8:16, 8:16], np.broadcast_to(hi, (8, 8, 3)))
    assert (out[:8, :24] == lo).all()
    # channel 2 is dead: flat, all viridis(0), no NaN garbage
    assert (out[:24, 24:48] == lo).all()
    assert out[24:, :24].min() < 128 and out[24:, 24:].min() < 128  # caption ink under both


def test_channel_grid_accepts_batch_axis_and_non_square():
    acts = np.random.default_rng(1).random((1, 3, 4, 8))
    out = channel_grid(acts, cell=16, labels=False, pad=0, cols=3)
    assert out.shape == (8, 48, 3)


def test_channel_grid_errors():
    with pytest.raises(ChannelError, match="channel 12 is out of range: this tensor has 4 channels"):
        channel_grid(np.zeros((4, 2, 2)), channels=[1, 12])
    with pytest.raises(ImageError, match="C×h×w"):
        channel_grid(np.zeros((4, 2)))


# -- filter_grid ---------------------------------------------------------------


def test_filter_grid_single_red_pixel():
    w = np.zeros((2, 3, 3, 3), np.float32)
    w[0, 0, 1, 1] = 1.0  # +R
    w[0, 1, 1, 1] = -1.0  # -G
    w[0, 2, 1, 1] = -1.0  # -B
    out = filter_grid(w, cell=9, pad=2, cols=2)
    assert out.shape == (2 + 9 + 2, 2 + 2 * (9 + 2), 3)
    np.testing.assert_array_equal(out[5:8, 5:8], _solid(3, 3, (255, 0, 0)))  # weight (1, 1), 3x3 pixels
    np.testing.assert_array_equal(out[2:5, 2:5], _solid(3, 3, 128))  # zero weights are grey
    np.testing.assert_array_equal(out[2:11, 13:22], _solid(9, 9, 128))  # kernel 1 is all zero


def test_filter_grid_joint_normalisation():
    w = np.zeros((2, 3, 1, 1))
    w[0, :, 0, 0] = 2.0
    w[1, :, 0, 0] = 1.0  # half of the joint max: 0.5 + 0.25
    out = filter_grid(w, cell=1, pad=0, cols=2)
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [191, 191, 191]])


def test_filter_grid_bgr_model_shows_true_colour():
    w = np.full((1, 3, 2, 2), -1.0)
    w[0, 2] = 1.0  # channel 2 of a BGR model is red
    out = filter_grid(w, cell=2, pad=0, channel_order="BGR")
    np.testing.assert_array_equal(out, _solid(2, 2, (255, 0, 0)))
    np.testing.assert_array_equal(filter_grid(w, cell=2, pad=0), _solid(2, 2, (0, 0, 255)))


def test_filter_grid_other_input_counts_are_grey_means():
    w = np.zeros((1, 4, 2, 2))
    w[0, :, 0, 0] = [1.0, 1.0, 1.0, 1.0]  # mean 1
    w[0, :, 1, 1] = [-2.0, 0.0, 0.0, 0.0]  # mean -0.5
    out = filter_grid(w, cell=2, pad=0)
    np.testing.assert_array_equal(out[:, :, 0], [[255, 128], [128, 64]])  # 255 * 0.25 = 63.75
    assert (out[:, :, 0] == out[:, :, 2]).all()


def test_filter_grid_errors():
    with pytest.raises(ImageError, match="O×I×kh×kw"):
        filter_grid(np.zeros((3, 3, 3)))
    with pytest.raises(OnnxvizError, match="channel order"):
        filter_grid(np.zeros((1, 3, 3, 3)), channel_order="RBG")
