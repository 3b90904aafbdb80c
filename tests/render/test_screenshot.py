"""Headless Chromium renders the report (skipped without /usr/bin/chromium)."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "screenshot_report.py"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")


def _script():
    spec = importlib.util.spec_from_file_location("screenshot_report", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_demo_report_renders_to_a_non_blank_png(tmp_path):
    mod = _script()
    html = mod.build_demo_report().write(tmp_path / "report")
    png = mod.screenshot(html, tmp_path / "shot.png", width=1000, height=1400)
    bgr = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert bgr.shape == (1400, 1000, 3)
    rgb = bgr[:, :, ::-1]
    # the dark header band at the top, the light page below, photos and heatmaps in colour
    np.testing.assert_allclose(rgb[5, 500], (29, 35, 48), atol=3)
    assert rgb.std() > 30
    colours = np.unique(rgb.reshape(-1, 3) // 8, axis=0)
    assert len(colours) > 500
    assert (np.abs(rgb.astype(int) - rgb[:, :, :1]).max(axis=2) > 60).mean() > 0.05  # saturated pixels


def test_real_report_renders(tmp_path):
    """A real report (shipped model, cat photo, three methods) opened in Chromium."""
    import onnxviz
    from onnxviz.report import build_report

    root = Path(__file__).resolve().parents[2]
    model = onnxviz.Model(root / "models" / "efficientnet_lite0.onnx", provider="cpu")
    report = build_report(model, [root / "examples" / "images" / "cat.jpg"],
                          methods=["saliency", "gradcam", "cam"], progress=False)
    html = report.write(tmp_path / "report")
    text = Path(html).read_text()
    assert "Egyptian cat" in text and text.count("<img") >= 4  # photo + three views
    png = _script().screenshot(html, tmp_path / "shot.png", width=1000, height=1200)
    rgb = cv2.imread(str(png), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert rgb.shape == (1200, 1000, 3)
    np.testing.assert_allclose(rgb[5, 500], (29, 35, 48), atol=3)  # the header band
    assert len(np.unique(rgb.reshape(-1, 3) // 8, axis=0)) > 500  # photos and heatmaps drawn
    assert (np.abs(rgb.astype(int) - rgb[:, :, :1]).max(axis=2) > 60).mean() > 0.02  # colour maps
