"""Atomic writers: round trips, failures leave nothing behind, clear errors."""

import os
import stat

import cv2
import numpy as np
import pytest

from onnxviz.errors import ImageError, OnnxvizError
from onnxviz.render import io


def _rgb(seed: int = 0, shape=(5, 7, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_write_png_round_trip_rgb_and_creates_folders(tmp_path):
    img = _rgb()
    path = io.write_png(tmp_path / "a" / "b" / "x.png", img)
    assert path == tmp_path / "a" / "b" / "x.png"
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # BGR on disk
    np.testing.assert_array_equal(back[:, :, ::-1], img)


def test_write_png_grey_is_three_equal_channels(tmp_path):
    grey = _rgb(shape=(4, 6))
    back = cv2.imread(str(io.write_png(tmp_path / "g.png", grey)), cv2.IMREAD_COLOR)
    for c in range(3):
        np.testing.assert_array_equal(back[:, :, c], grey)


def test_write_npy_and_text_round_trip(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(np.load(io.write_npy(tmp_path / "a.npy", a)), a)
    text = "héllo <b> ✓\n"
    assert io.write_text(tmp_path / "t.txt", text).read_text(encoding="utf-8") == text


def test_files_get_umask_mode_not_mkstemp_0600(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = io.write_text(tmp_path / "t.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_encoder_failure_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(io.cv2, "imencode", lambda *a, **k: (False, None))
    with pytest.raises(ImageError, match="PNG encoding failed"):
        io.write_png(tmp_path / "x.png", _rgb())
    assert list(tmp_path.iterdir()) == []


def test_encoder_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    path = io.write_png(tmp_path / "x.png", _rgb(1))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise cv2.error("encoder exploded")

    monkeypatch.setattr(io.cv2, "imencode", boom)
    with pytest.raises(cv2.error):
        io.write_png(path, _rgb(2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_failure_halfway_through_writing_leaves_nothing(tmp_path, monkeypatch):
    def half_save(f, array, allow_pickle=False):
        f.write(b"\x93NUMPY half of a header")
        raise RuntimeError("disk vanished")

    monkeypatch.setattr(io.np, "save", half_save)
    with pytest.raises(RuntimeError, match="disk vanished"):
        io.write_npy(tmp_path / "a.npy", np.zeros(3))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    dest = blocker / "sub" / "x.png"
    with pytest.raises(OnnxvizError, match="cannot write .*file/sub/x.png"):
        io.write_png(dest, _rgb())
    with pytest.raises(OnnxvizError, match="cannot write"):
        io.write_text(blocker / "y.txt", "x")


def test_destination_is_a_folder(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(OnnxvizError, match="x.png"):
        io.write_png(tmp_path / "x.png", _rgb())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_bad_image_fails_before_touching_the_disk(tmp_path):
    with pytest.raises(ImageError, match="dtype float32"):
        io.write_png(tmp_path / "new" / "x.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageError, match="shape"):
        io.write_png(tmp_path / "new" / "x.png", np.zeros((4, 4, 2), np.uint8))
    assert not (tmp_path / "new").exists()
