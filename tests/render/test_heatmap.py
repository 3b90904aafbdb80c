"""normalize / upsample / colorize / overlay / gradient_image against hand computations and OpenCV."""

import cv2
import numpy as np
import pytest

from onnxviz.errors import ImageError, OnnxvizError
from onnxviz.render.heatmap import (
    COLORMAPS,
    colorize,
    gradient_image,
    normalize,
    overlay,
    upsample,
)


# -- normalize -----------------------------------------------------------------


def test_minmax_by_hand():
    out = normalize(np.array([[1.0, 2.0], [3.0, 4.0]]), "minmax", percentile=None)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 1 / 3], [2 / 3, 1]], rtol=1e-6)


def test_minmax_percentile_clips_the_outlier():
    # 11 values 0..9, 100: the 90th percentile is sorted[0.9 * 10] = 9, so m / 9 clipped.
    m = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100], dtype=np.float64)
    out = normalize(m, "minmax", percentile=90)
    np.testing.assert_allclose(out, [0, 1 / 9, 2 / 9, 3 / 9, 4 / 9, 5 / 9, 6 / 9, 7 / 9, 8 / 9, 1, 1], rtol=1e-6)
    # Without clipping the outlier squashes everything else.
    np.testing.assert_allclose(normalize(m, "minmax", None)[9], 0.09, rtol=1e-6)


def test_minmax_with_offset_percentile_interpolates():
    # 5 values: 95th percentile index 0.95 * 4 = 3.8 -> 13 + 0.8 * (50 - 13) = 42.6
    m = np.array([10.0, 11.0, 12.0, 13.0, 50.0])
    hi = 13 + 0.8 * 37
    np.testing.assert_allclose(normalize(m, "minmax", 95), [0, 1 / (hi - 10), 2 / (hi - 10), 3 / (hi - 10), 1], rtol=1e-6)


def test_abs_by_hand():
    np.testing.assert_allclose(normalize(np.array([-4.0, 2.0, 0.0, 1.0]), "abs", None), [1, 0.5, 0, 0.25])


def test_symmetric_by_hand():
    np.testing.assert_allclose(
        normalize(np.array([-2.0, 1.0, 0.0, 4.0]), "symmetric", None), [0.25, 0.625, 0.5, 1.0]
    )
    # percentile of |m| = [1, 1, 1, 8] at 50 -> 1; values beyond clip
    np.testing.assert_allclose(normalize(np.array([-1.0, 1.0, 0.5, -8.0]), "symmetric", 50), [0, 1, 0.75, 0])


@pytest.mark.parametrize("mode,zero", [("minmax", 0.0), ("abs", 0.0), ("symmetric", 0.5)])
def test_all_zero_map_is_the_value_of_zero_never_nan(mode, zero):
    out = normalize(np.zeros((3, 4)), mode)
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out, np.full((3, 4), zero, np.float32))


def test_constant_map_minmax_is_zeros():
    out = normalize(np.full((5, 5), 3.7), "minmax")
    np.testing.assert_array_equal(out, np.zeros((5, 5), np.float32))


def test_sparse_map_falls_back_to_max_so_the_peak_shows():
    m = np.zeros((40, 40))
    m[3, 4] = 5.0  # 1 value in 1600: the 99.5th percentile is 0
    out = normalize(m, "minmax")
    assert out[3, 4] == 1.0 and out.sum() == 1.0
    assert normalize(m, "abs")[3, 4] == 1.0


def test_nan_and_inf_do_not_leak():
    m = np.array([0.0, np.nan, 1.0, np.inf, -np.inf, 2.0])
    out = normalize(m, "minmax", None)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 0, 1])


def test_normalize_errors():
    with pytest.raises(OnnxvizError, match="minmax, abs, symmetric"):
        normalize(np.ones(3), "log")
    with pytest.raises(OnnxvizError, match="percentile 0"):
        normalize(np.ones(3), percentile=0)
    with pytest.raises(ImageError, match="empty"):
        normalize(np.zeros((0, 3)))


# -- upsample ------------------------------------------------------------------


def test_upsample_bilinear_ramp_matches_the_pixel_centre_formula():
    m = np.tile(np.arange(7, dtype=np.float32), (7, 1))  # value = column index
    out = upsample(m, (224, 224), "bilinear")
    x = (np.arange(224) + 0.5) * 7 / 224 - 0.5  # source coordinate of each output pixel centre
    expected = np.clip(x, 0, 6)
    np.testing.assert_allclose(out[100], expected, atol=1e-3)
    assert out.shape == (224, 224) and out.dtype == np.float32


def test_upsample_cam_is_smooth():
    cam = np.random.default_rng(0).random((7, 7))
    smooth = upsample(cam, (224, 224))
    blocky = upsample(cam, (224, 224), "nearest")
    step = lambda a: np.abs(np.diff(a, axis=1)).max()  # noqa: E731
    assert step(smooth) < 0.25 * step(blocky)
    # bicubic stays close to the data: the mean is preserved to a few percent
    assert abs(smooth.mean() - cam.mean()) < 0.03


def test_upsample_non_square_and_shrink():
    m = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert upsample(m, (30, 8)).shape == (30, 8)
    np.testing.assert_allclose(upsample(np.ones((8, 8)) * 2, (2, 2)), 2.0)
    np.testing.assert_array_equal(upsample(m, (3, 4)), m.astype(np.float32))


@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (3, 5)])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_a_constant_map_stays_constant_and_draws_flat(shape, interpolation):
    """Bicubic rounding left float32 ripples (0.15027538..0.15027544) on a constant map, which
    minmax normalisation stretched to a full-range plaid."""
    m = np.full(shape, 0.15027541, np.float32)
    up = upsample(m, (224, 224), interpolation)
    assert (up == np.float32(0.15027541)).all()
    assert (normalize(up) == 0).all()
    picture = overlay(np.full((224, 224, 3), 128, np.uint8), m)
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) == 1


def test_upsample_errors():
    with pytest.raises(ImageError, match="2-D"):
        upsample(np.zeros((2, 3, 3)), (4, 4))
    with pytest.raises(OnnxvizError, match="bicubic"):
        upsample(np.zeros((2, 3)), (4, 4), "lanczos9")


# -- colorize ------------------------------------------------------------------


@pytest.mark.parametrize("cmap", ["jet", "viridis", "inferno", "magma", "turbo", "hot", "bone"])
def test_colorize_matches_opencv_on_a_ramp(cmap):
    ramp = np.tile(np.arange(256, dtype=np.uint8), (3, 1))
    expected = cv2.applyColorMap(ramp, COLORMAPS[cmap])[:, :, ::-1]
    np.testing.assert_array_equal(colorize(ramp, cmap), expected)
    np.testing.assert_array_equal(colorize(ramp / 255.0, cmap), expected)


def test_colorize_is_rgb_not_bgr():
    lo, hi = colorize(np.array([[0.0, 1.0]]), "jet")[0]
    assert lo[2] > 100 and lo[0] == 0 and lo[1] == 0  # jet starts dark blue
    assert hi[0] > 100 and hi[2] == 0  # and ends dark red


def test_colorize_gray_clips():
    out = colorize(np.array([[-1.0, 0.5, 2.0]]), "gray")
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [128, 128, 128], [255, 255, 255]])


def test_colorize_unknown_name_lists_choices():
    with pytest.raises(OnnxvizError, match="unknown colormap 'rainbow2'.*viridis"):
        colorize(np.zeros((2, 2)), "rainbow2")


# -- overlay -------------------------------------------------------------------


def _photo():
    return np.random.default_rng(1).integers(0, 256, (6, 256, 3), dtype=np.uint8)


def test_overlay_alpha_0_is_the_image():
    img = _photo()
    np.testing.assert_array_equal(overlay(img, np.random.default_rng(2).random((3, 3)), alpha=0.0), img)


def test_overlay_alpha_1_is_the_colormap():
    img = _photo()
    m = np.tile(np.arange(256) / 255.0, (6, 1))  # already in [0, 1] and image-sized
    expected = cv2.applyColorMap(np.tile(np.arange(256, dtype=np.uint8), (6, 1)), cv2.COLORMAP_JET)[:, :, ::-1]
    np.testing.assert_array_equal(overlay(img, m, alpha=1.0, percentile=None), expected)


def test_overlay_half_is_the_rounded_mean():
    img = np.full((2, 2, 3), 100, np.uint8)
    m = np.array([[0.0, 1.0], [1.0, 0.0]])
    out = overlay(img, m, alpha=0.5, cmap="gray", percentile=None)
    np.testing.assert_array_equal(out[0, 0], [50, 50, 50])
    np.testing.assert_array_equal(out[0, 1], [178, 178, 178])  # (100 + 255) / 2 = 177.5 -> 178


def test_overlay_upsamples_a_small_map_to_the_photo():
    img = np.zeros((224, 200, 3), np.uint8)
    cam = np.zeros((7, 7))
    cam[0, 0] = 1.0
    out = overlay(img, cam, alpha=1.0, cmap="gray", percentile=None)
    assert out.shape == (224, 200, 3)
    assert out[0, 0, 0] > 240 and out[-1, -1, 0] < 60  # the peak sits in the top-left 32x29 block
    peak = np.unravel_index(out[:, :, 0].argmax(), out.shape[:2])
    assert peak[0] < 32 and peak[1] < 29


def test_overlay_bad_alpha():
    with pytest.raises(OnnxvizError, match="alpha 1.5"):
        overlay(_photo(), np.zeros((2, 2)), alpha=1.5)


# -- gradient_image --------------------------------------------------------------


def test_gradient_image_by_hand_chw():
    g = np.zeros((3, 2, 2), np.float32)
    g[0, 0, 0] = 2.0  # red +max
    g[1, 0, 1] = -2.0  # green -max
    g[2, 1, 1] = 1.0  # blue +half
    out = gradient_image(g, "CHW", percentile=None)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 128, 128])
    np.testing.assert_array_equal(out[0, 1], [128, 0, 128])
    np.testing.assert_array_equal(out[1, 1], [128, 128, 191])  # 255 * 0.75 = 191.25
    np.testing.assert_array_equal(out[1, 0], [128, 128, 128])  # zero is mid-grey


def test_gradient_image_layouts_agree_and_batch_axis_is_dropped():
    g = np.random.default_rng(3).standard_normal((3, 5, 4))
    chw = gradient_image(g, "CHW")
    np.testing.assert_array_equal(gradient_image(np.moveaxis(g, 0, -1), "HWC"), chw)
    np.testing.assert_array_equal(gradient_image(g[None], "CHW"), chw)
    np.testing.assert_array_equal(gradient_image(g, "CHW", channel_order="BGR"), chw[:, :, ::-1])


def test_gradient_image_single_channel_is_grey_and_zero_is_grey():
    g = np.random.default_rng(4).standard_normal((1, 6, 6))
    out = gradient_image(g)
    assert (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 1] == out[:, :, 2]).all()
    np.testing.assert_array_equal(gradient_image(np.zeros((3, 4, 4))), np.full((4, 4, 3), 128, np.uint8))


def test_gradient_image_percentile_saturates_outliers():
    g = np.zeros((1, 20, 20))
    g[0, :10] = 1.0
    g[0, 0, 0] = 1000.0
    out = gradient_image(g, percentile=99)
    assert out[5, 5, 0] == 255 and out[15, 15, 0] == 128


def test_gradient_image_errors():
    with pytest.raises(OnnxvizError, match="layout"):
        gradient_image(np.zeros((3, 2, 2)), "NCHW")
    with pytest.raises(ImageError, match="C×H×W"):
        gradient_image(np.zeros((2, 3, 2, 2)))
