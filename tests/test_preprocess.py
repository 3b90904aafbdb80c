"""Preprocessing: presets against hand computations, image loading, geometry, round trips, errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

import numpy as np
import pytest

from onnxviz.errors import ImageError, ModelLoadError, OnnxvizError
from onnxviz.preprocess import (
    PRESETS,
    Preprocessing,
    deprocess,
    fit_image,
    load_image,
    parse_preprocessing,
    preprocess,
)

# A 2x3 RGB image with easy pixels: (row, column) -> (R, G, B).
TINY = np.array(
    [
        [[0, 128, 255], [255, 255, 255], [10, 20, 30]],
        [[51, 102, 153], [0, 0, 0], [200, 100, 50]],
    ],
    dtype=np.uint8,
)


def tiny(preset: str, **changes) -> np.ndarray:
    """TINY through a preset at its own size (no resize, no crop): (3, 2, 3) NCHW."""
    pre = PRESETS[preset].replace(size=(2, 3), resize=None, **changes)
    x = preprocess(TINY, pre)
    assert x.dtype == np.float32 and x.shape[0] == 1
    return x[0]


def photo() -> np.ndarray:
    """The shipped rocket photo, 427 x 640 RGB (read with OpenCV, not onnxviz)."""
    path = Path(__file__).resolve().parents[1] / "examples" / "images" / "rocket.jpg"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- presets, by hand
def test_torchvision_by_hand():
    x = tiny("torchvision")
    # (p / 255 - mean) / std with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)
    expected = {
        (0, 0): [-2.11790393, 0.20518207, 2.64],  # (0, 128, 255)
        (0, 1): [2.24890830, 2.42857143, 2.64],  # white
        (1, 0): [-1.24454148, -0.25, 0.86222222],  # (51, 102, 153) = (0.2, 0.4, 0.6)
        (1, 1): [-2.11790393, -2.03571429, -1.80444444],  # black
    }
    for (r, c), values in expected.items():
        np.testing.assert_allclose(x[:, r, c], values, rtol=1e-6)


def test_caffe_by_hand():
    x = tiny("caffe")
    # BGR order: channel 0 is B - 103.939, then G - 116.779, then R - 123.68
    expected = {
        (0, 0): [151.061, 11.221, -123.68],  # (R 0, G 128, B 255)
        (0, 1): [151.061, 138.221, 131.32],
        (1, 0): [49.061, -14.779, -72.68],  # (R 51, G 102, B 153)
        (1, 1): [-103.939, -116.779, -123.68],
        (1, 2): [-53.939, -16.779, 76.32],  # (R 200, G 100, B 50)
    }
    for (r, c), values in expected.items():
        np.testing.assert_allclose(x[:, r, c], values, rtol=1e-6)


def test_tf_by_hand():
    # p / 127.5 - 1
    expected = np.array(
        [
            [[-1.0, 1.0, -0.92156863], [-0.6, -1.0, 0.56862745]],  # R
            [[0.00392157, 1.0, -0.84313725], [-0.2, -1.0, -0.21568627]],  # G
            [[1.0, 1.0, -0.76470588], [0.2, -1.0, -0.60784314]],  # B
        ]
    )
    np.testing.assert_allclose(tiny("tf"), expected, rtol=1e-6, atol=1e-7)


def test_raw_by_hand():
    expected = np.array(
        [
            [[0, 255, 10], [51, 0, 200]],
            [[128, 255, 20], [102, 0, 100]],
            [[255, 255, 30], [153, 0, 50]],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(tiny("raw"), expected)


def test_preset_conventions():
    assert PRESETS["torchvision"] == Preprocessing()
    assert PRESETS["caffe"].channel_order == "BGR" and PRESETS["caffe"].scale == 1.0
    assert PRESETS["tf"].resize is None and PRESETS["tf"].scale == pytest.approx(1 / 127.5)
    assert PRESETS["raw"].mean == (0.0, 0.0, 0.0) and PRESETS["raw"].std == (1.0, 1.0, 1.0)


# --------------------------------------------------------------------------- channel order and layout
def test_nhwc_is_the_transpose_of_nchw():
    for preset in PRESETS:
        np.testing.assert_array_equal(tiny(preset, layout="NHWC"), tiny(preset).transpose(1, 2, 0))


def test_bgr_reverses_the_channels():
    rgb = tiny("raw")
    bgr = tiny("raw", channel_order="BGR")
    np.testing.assert_array_equal(bgr, rgb[::-1])
    assert bgr[0, 1, 2] == 50  # pixel (1, 2) is (R 200, G 100, B 50): B comes first


def test_mean_and_std_follow_the_model_channel_order():
    x = tiny("raw", channel_order="BGR", mean=(1.0, 2.0, 3.0), std=(1.0, 2.0, 4.0))
    # pixel (0, 0) is R 0, G 128, B 255; model channels are B, G, R
    np.testing.assert_allclose(x[:, 0, 0], [(255 - 1) / 1, (128 - 2) / 2, (0 - 3) / 4])


# --------------------------------------------------------------------------- loading images
def test_grey_file_becomes_three_equal_channels(tmp_path):
    grey = np.array([[0, 50], [200, 255]], np.uint8)
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), grey)
    rgb = load_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], grey)


def test_colour_file_is_rgb(tmp_path):
    path = tmp_path / "rgb.png"
    cv2.imwrite(str(path), cv2.cvtColor(TINY, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(load_image(str(path)), TINY)
    np.testing.assert_array_equal(load_image(path.read_bytes()), TINY)


def test_jpeg_file_is_rgb(tmp_path):
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (200, 40, 90)  # RGB
    path = tmp_path / "flat.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(flat, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    np.testing.assert_allclose(load_image(path).reshape(-1, 3).mean(axis=0), (200, 40, 90), atol=2)


def test_rgba_file_is_composited_on_white(tmp_path):
    rgba = np.array([[[200, 0, 100, 255], [200, 0, 100, 0], [200, 0, 100, 128]]], np.uint8)
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    rgb = load_image(path)
    # c * a + 255 * (1 - a), a = alpha / 255: 128 -> 200*128/255 + 127 = 227.39...
    expected = [[[200, 0, 100], [255, 255, 255], [227, 127, 177]]]
    np.testing.assert_array_equal(rgb, np.array(expected, np.uint8))


def test_grey_alpha_array_is_composited_on_white():
    la = np.array([[[0, 255], [0, 0], [100, 51]]], np.uint8)  # 51 / 255 = 0.2 opaque
    # 100 * 0.2 + 255 * 0.8 = 224
    np.testing.assert_array_equal(load_image(la)[0], [[0, 0, 0], [255, 255, 255], [224, 224, 224]])


def test_16_bit_file_is_scaled_to_8_bits(tmp_path):
    rgb16 = np.array([[[0, 257 * 100, 65535], [257 * 128, 257 * 128 + 128, 257 * 128 + 129]]], np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # really a 16-bit file
    # round(v / 257): 128.498 -> 128, 128.502 -> 129
    np.testing.assert_array_equal(load_image(path), [[[0, 100, 255], [128, 128, 129]]])


def test_arrays_pass_through_or_convert():
    assert load_image(TINY) is TINY  # already uint8 RGB: no copy
    np.testing.assert_array_equal(load_image(TINY[:, :, :1]), np.repeat(TINY[:, :, :1], 3, axis=2))
    floats = TINY.astype(np.float64) / 255
    np.testing.assert_array_equal(load_image(floats), TINY)
    np.testing.assert_array_equal(load_image(np.array([[True, False]])), [[[255] * 3, [0] * 3]])


def test_float_array_outside_unit_range_is_refused():
    with pytest.raises(ImageError, match=r"float images must be in \[0, 1\]: divide by 255"):
        load_image(TINY.astype(np.float32))


@pytest.mark.parametrize("shape", [(4,), (2, 2, 5), (1, 2, 2, 3), (0, 3, 3)])
def test_array_of_wrong_shape_is_refused(shape):
    with pytest.raises(ImageError, match=r"is not an image: expected H×W \(grey\), H×W×3 \(RGB\)"):
        load_image(np.zeros(shape, np.uint8))


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match=f"image file '{path}' does not exist; check the path"):
        load_image(path)


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="is a folder; give an image file"):
        load_image(tmp_path)


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not pixels")
    with pytest.raises(ImageError, match=f"'{path}' is not an image opencv can read"):
        preprocess([path])


# --------------------------------------------------------------------------- geometry
def coordinates(h: int, w: int) -> np.ndarray:
    """R = row, G = column, B = 7: every pixel says where it came from."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = np.arange(h)[:, None]
    img[:, :, 1] = np.arange(w)[None, :]
    img[:, :, 2] = 7
    return img


def test_centre_crop_of_a_wide_image_keeps_the_middle_columns():
    img = coordinates(4, 8)
    out = fit_image(img, Preprocessing(size=(4, 4), resize=4))  # short side already 4: no resize
    np.testing.assert_array_equal(out, img[:, 2:6])
    assert out[0, 0, 1] == 2 and out[0, -1, 1] == 5


def test_centre_crop_of_a_tall_image_keeps_the_middle_rows():
    img = coordinates(9, 5)
    out = fit_image(img, Preprocessing(size=(3, 5), resize=5))
    np.testing.assert_array_equal(out, img[3:6])  # offset (9 - 3) // 2 = 3


def test_shrink_then_crop_averages_blocks():
    # 8 x 16 image of 2x2 blocks, block (i, j) has value 10 * i + j: INTER_AREA by 2 gives it back
    blocks = (10 * np.arange(4)[:, None] + np.arange(8)[None, :]).astype(np.uint8)
    img = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)
    img = np.stack([img] * 3, axis=2)
    out = fit_image(img, Preprocessing(size=(4, 4), resize=4))  # 8x16 -> 4x8 -> columns 2..5
    np.testing.assert_array_equal(out[:, :, 0], blocks[:, 2:6])


def test_resize_straight_to_size_changes_the_aspect():
    out = fit_image(photo(), Preprocessing(size=(50, 60), resize=None))
    assert out.shape == (50, 60, 3) and out.dtype == np.uint8


def test_resize_smaller_than_the_crop_still_covers_it():
    out = fit_image(coordinates(4, 8), Preprocessing(size=(6, 6), resize=2))
    assert out.shape == (6, 6, 3)


def test_fit_image_never_aliases_the_input():
    img = coordinates(4, 4)
    out = fit_image(img, Preprocessing(size=(4, 4), resize=4))
    out[:] = 0
    assert img[:, :, 2].min() == 7


def test_fit_image_matches_the_shipped_model_convention():
    """Short side to 256 with round(), INTER_AREA when shrinking, crop offset (new - 224) // 2."""
    img = photo()  # 427 x 640 -> 256 x round(640 * 256 / 427) = 256 x 384
    assert img.shape == (427, 640, 3)
    small = cv2.resize(img, (384, 256), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(fit_image(img, Preprocessing()), small[16:240, 80:304])


# --------------------------------------------------------------------------- batches and round trips
def test_batch_of_mixed_sources(tmp_path):
    path = tmp_path / "rgb.png"
    cv2.imwrite(str(path), cv2.cvtColor(TINY, cv2.COLOR_RGB2BGR))
    pre = PRESETS["raw"].replace(size=(2, 3), resize=None)
    x = preprocess([path, TINY, TINY.astype(np.float64) / 255], pre)
    assert x.shape == (3, 3, 2, 3)
    for sample in x:
        np.testing.assert_array_equal(sample, tiny("raw"))
    np.testing.assert_array_equal(preprocess(np.stack([TINY, TINY]), pre), x[:2])


def test_no_images_is_an_error():
    with pytest.raises(ImageError, match="no images given"):
        preprocess([])


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_deprocess_inverts_preprocess(preset, layout, order):
    pre = PRESETS[preset].replace(size=(64, 80), resize=72, layout=layout, channel_order=order)
    img = photo()
    x = preprocess(img, pre)
    back = deprocess(x[0], pre)
    expected = fit_image(img, pre)
    assert back.dtype == np.uint8 and back.shape == expected.shape
    assert np.abs(back.astype(int) - expected.astype(int)).max() <= 1
    batch = deprocess(np.concatenate([x, x]), pre)
    assert batch.shape == (2, 64, 80, 3)
    np.testing.assert_array_equal(batch[1], back)


def test_deprocess_clips_to_pixel_range():
    pre = PRESETS["raw"]
    x = np.full((3, 2, 2), 300.0)
    x[0] = -5.0
    out = deprocess(x, pre)
    assert out[0, 0].tolist() == [0, 255, 255]


def test_deprocess_wrong_shape():
    with pytest.raises(ImageError, match=r"3 channel\(s\) on the channel axis of layout NCHW"):
        deprocess(np.zeros((2, 4, 4, 3)), Preprocessing())
    with pytest.raises(ImageError, match=r"one sample \(3-D\) or a batch \(4-D\)"):
        deprocess(np.zeros((4, 4)), Preprocessing())


# --------------------------------------------------------------------------- extreme images, bad sources
def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grey pixels (no pixel data follows)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_an_image_too_large_for_opencv_is_an_image_error():
    with pytest.raises(ImageError, match=r"image bytes cannot be decoded by opencv \(pixels <= CV_IO_MAX_IMAGE_PIXELS\); shrink it below a gigapixel"):
        load_image(_png_header_only(40000, 40000))


def test_a_long_strip_is_cropped_before_it_is_resized(monkeypatch):
    """1 x 60000 pixels: resizing the whole strip to a short side of 256 first took 12 GB."""
    import onnxviz.preprocess as module

    strip = np.full((1, 60000, 3), 77, np.uint8)
    out = fit_image(strip, PRESETS["torchvision"])
    assert out.shape == (224, 224, 3) and (out == 77).all()
    # the crop-first path shows the same picture, to about a grey level on a photo
    expected = fit_image(photo(), PRESETS["torchvision"])
    monkeypatch.setattr(module, "MAX_RESIZED_PIXELS", 1000)
    cropped_first = fit_image(photo(), PRESETS["torchvision"])
    assert np.abs(cropped_first.astype(int) - expected).mean() < 3


@pytest.mark.parametrize("source, message", [
    (None, "got NoneType"), (5, "got int"), (np.zeros((0, 8, 8, 3), np.uint8), "no images given"),
])
def test_what_is_not_an_image_source(source, message):
    with pytest.raises(ImageError, match=message):
        preprocess(source, PRESETS["torchvision"])


# --------------------------------------------------------------------------- grey models
def test_gray_is_the_luma_normalised_once():
    """One channel: round(0.299 R + 0.587 G + 0.114 B), then (p / 255 - mean) / std."""
    pre = Preprocessing(size=(2, 3), resize=None, channel_order="grey", mean=0.5, std=0.25)
    assert pre.channel_order == "GRAY" and pre.mean == (0.5,) and pre.channels == 1
    x = preprocess(TINY, pre)
    assert x.shape == (1, 1, 2, 3)
    luma = np.rint(TINY.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    assert luma[1, 2] == 124  # (200, 100, 50): 59.8 + 58.7 + 5.7
    np.testing.assert_allclose(x[0, 0], (luma / 255 - 0.5) / 0.25, rtol=1e-6)
    nhwc = preprocess(TINY, pre.replace(layout="NHWC"))
    np.testing.assert_array_equal(nhwc[..., 0], x[:, 0])


def test_to_grey_weights_the_preset_statistics_by_the_luma():
    grey = PRESETS["torchvision"].to_grey()
    assert grey.channel_order == "GRAY"
    assert grey.mean[0] == pytest.approx(0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406)
    assert grey.std[0] == pytest.approx(0.299 * 0.229 + 0.587 * 0.224 + 0.114 * 0.225)
    caffe = PRESETS["caffe"].to_grey()  # its means are in BGR order
    assert caffe.mean[0] == pytest.approx(0.299 * 123.68 + 0.587 * 116.779 + 0.114 * 103.939)
    assert caffe.std == (1.0,) and caffe.scale == 1.0
    assert grey.to_grey() is grey


def test_gray_round_trips_and_its_errors():
    pre = PRESETS["torchvision"].to_grey().replace(size=(2, 3), resize=None)
    x = preprocess(TINY, pre)
    grey = cv2.cvtColor(TINY, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(deprocess(x, pre), np.repeat(grey[None, :, :, None], 3, axis=-1))
    assert Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
    with pytest.raises(OnnxvizError, match="mean must be one finite number .a grey model has one channel"):
        pre.replace(mean=(0.4, 0.5, 0.6))
    with pytest.raises(ImageError, match=r"expected 1 channel\(s\)"):
        deprocess(np.zeros((1, 3, 2, 3)), pre)


# --------------------------------------------------------------------------- the dataclass and its metadata form
def test_metadata_form():
    d = Preprocessing().to_dict()
    assert d == {
        "size": [224, 224],
        "resize": 256,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "scale": 1 / 255,
        "channel_order": "RGB",
        "layout": "NCHW",
    }
    assert isinstance(d["size"], list) and isinstance(d["mean"], list)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_to_dict_from_dict_round_trip_through_json(preset):
    pre = PRESETS[preset].replace(layout="NHWC", size=(32, 48))
    assert Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre


def test_from_dict_fills_defaults_and_normalises():
    pre = Preprocessing.from_dict({"size": [10, 12], "resize": None, "mean": [0.5], "channel_order": "bgr"})
    assert pre == Preprocessing(size=(10, 12), resize=None, mean=(0.5, 0.5, 0.5), channel_order="BGR")
    assert hash(pre) == hash(Preprocessing(size=[10, 12], resize=0, mean=0.5, channel_order="BGR"))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"mean": [1, 2]}, "mean must be one or 3 finite numbers"),
        ({"std": [1, 0, 1]}, "has a zero"),
        ({"size": "big"}, "size must be"),
        ({"size": [224, -1]}, "size must be positive whole numbers"),
        ({"resize": 2.5}, "resize must be a positive whole number"),
        ({"scale": 0}, "scale must be a positive number"),
        ({"layout": "CHW"}, "layout must be one of NCHW, NHWC"),
        ({"channel_order": "RGBA"}, "channel_order must be one of RGB, BGR"),
        ({"means": [0, 0, 0]}, r"unknown key\(s\) \['means'\]"),
    ],
)
def test_bad_metadata_is_a_model_error(bad, message):
    with pytest.raises(ModelLoadError, match=message) as info:
        Preprocessing.from_dict(bad)
    assert "'onnxviz.preprocessing'" in str(info.value) and "--preset" in str(info.value)


def test_metadata_must_be_an_object():
    with pytest.raises(ModelLoadError, match="must be a JSON object, got list"):
        Preprocessing.from_dict([1, 2, 3])


def test_replace_validates():
    assert Preprocessing().replace(size=(8, 8)).size == (8, 8)
    with pytest.raises(OnnxvizError, match=r"no field\(s\) \['sizes'\]"):
        Preprocessing().replace(sizes=(8, 8))
    with pytest.raises(OnnxvizError, match="std must be"):
        Preprocessing().replace(std=(1, 2))


# --------------------------------------------------------------------------- CLI-style parsing
def test_parse_preprocessing_applies_overrides_and_keeps_none():
    pre = parse_preprocessing("caffe", size=(24, 20), resize=0, channel_order="RGB", mean=(1, 2, 3), std=None)
    assert pre == Preprocessing(
        size=(24, 20), resize=None, mean=(1, 2, 3), std=(1, 1, 1), scale=1.0, channel_order="RGB"
    )
    assert parse_preprocessing() == PRESETS["torchvision"]
    assert parse_preprocessing("TF", layout=None).layout == "NCHW"
    assert parse_preprocessing(mean=0.5).mean == (0.5, 0.5, 0.5)


def test_parse_preprocessing_unknown_preset():
    message = "unknown preprocessing preset 'keras'; choose one of torchvision, caffe, tf, raw"
    with pytest.raises(OnnxvizError, match=message):
        parse_preprocessing("keras")


def test_matches_the_shipped_model_reference():
    """The shipped model's test preprocesses from the metadata's documented semantics,
    independently of this module: both must give the same input, bit for bit."""
    import test_shipped_model as shipped

    if not shipped.MODEL.is_file():
        pytest.skip("shipped model missing")
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(shipped.MODEL), load_external_data=False).metadata_props}
    pp = json.loads(meta["onnxviz.preprocessing"])
    pre = Preprocessing.from_dict(pp)
    paths = sorted(shipped.IMAGES.glob("*.jpg"))
    assert paths
    x = preprocess(paths, pre)
    for sample, path in zip(x, paths):
        np.testing.assert_allclose(sample, shipped.preprocess(path, pp), rtol=0, atol=1e-6)
