"""The HTML report: self-contained, escaped, every view present, well-formed."""

import base64
import re
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from onnxviz.errors import ImageError, OnnxvizError
from onnxviz.render.report import Report, View

EVIL = "<script>alert('x')</script>"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "wbr", "source"}


def _img(seed, h=32, w=48):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _report():
    r = Report("resnet<18>.onnx", {"model": "resnet18.onnx", "input": "1×3×224×224 NCHW", "opset": "17"})
    r.add_image(
        "cat.jpg",
        _img(0, 600, 800),
        [("tabby", 0.5), ("tiger cat", 0.3), ("lynx", 0.05), ("Egyptian cat", 0.1), ("a", 0.01), ("b", 0.02), ("c", 0.015)],
        [View("Grad-CAM", _img(1), "layer4, class 281"), View("Saliency", _img(2), EVIL)],
    )
    r.add_image("dog & co.jpg", _img(3), [("beagle", 0.9)], [View("Occlusion", _img(4, 16, 600), "patch 32\nstride 16")])
    r.add_section("Patches", [View("channel 3", _img(5), "top-8 patches")], image="cat.jpg")
    r.add_section("Filters", [View("conv1", _img(6), "64 kernels")])
    r.add_section("Comparison", html="<table><tr><td>fp16</td></tr></table>")
    return r


class _Balance(HTMLParser):
    """Checks that every non-void tag is closed, in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.ids, self.hrefs, self.srcs = [], [], set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids.add(a["id"])
        if "href" in a:
            self.hrefs.append(a["href"])
        if "src" in a:
            self.srcs.append(a["src"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_every_view_title_and_caption_is_there():
    page = _report().to_html()
    for text in ["Grad-CAM", "layer4, class 281", "Saliency", "Occlusion", "patch 32\nstride 16", "channel 3",
                 "top-8 patches", "conv1", "64 kernels", "Patches", "Filters", "Comparison", "beagle"]:
        assert text in page, text
    assert "<table><tr><td>fp16</td></tr></table>" in page  # section html goes in as markup


def test_text_is_escaped():
    page = _report().to_html()
    assert EVIL not in page and "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "resnet&lt;18&gt;.onnx" in page and "dog &amp; co.jpg" in page


def test_self_contained_no_external_references():
    page = _report().to_html()
    assert "http://" not in page and "https://" not in page
    assert 'src="/' not in page and "url(" not in page and "@import" not in page
    p = _Balance()
    p.feed(page)
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)
    assert len(p.srcs) == 2 + 4 + 1  # two photos, four image views, one filter view
    assert all(h.startswith("#") for h in p.hrefs)


def test_html_is_well_formed_and_toc_links_resolve():
    p = _Balance()
    p.feed(_report().to_html())
    p.close()
    assert p.errors == [] and p.stack == []
    assert p.hrefs and {h[1:] for h in p.hrefs} <= p.ids
    assert len(p.hrefs) == 5  # 2 image blocks, 1 attached and 2 top-level sections


def _decode(uri):
    buf = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]


def test_embedded_images_decode_to_the_views_and_photos_are_shrunk():
    p = _Balance()
    p.feed(_report().to_html())
    photo, gradcam = _decode(p.srcs[0]), _decode(p.srcs[1])
    assert photo.shape == (480, 640, 3)  # 600×800 shrunk to max_photo_side=640
    np.testing.assert_array_equal(gradcam, _img(1))  # views are embedded losslessly, full size


def test_predictions_are_the_top_5_in_order_with_bars():
    page = _report().to_html()
    order = [m for m in re.findall(r'<td class="cls">([^<]*)</td>', page)]
    assert order[:5] == ["tabby", "tiger cat", "Egyptian cat", "lynx", "b"]
    assert order[5:] == ["beagle"]
    assert 'style="width:50.0%"' in page and ">50.0%<" in page and ">90.0%<" in page


def test_sections_attach_to_their_image_block():
    page = _report().to_html()
    cat, dog = page.index('id="img-cat-jpg"'), page.index('id="img-dog-co-jpg"')
    assert cat < page.index(">Patches<", cat) < dog
    assert page.index(">Filters<", dog) > dog


def test_summary_in_header():
    page = _report().to_html()
    header = page[page.index("<header>") : page.index("</header>")]
    for k, v in [("model", "resnet18.onnx"), ("input", "1×3×224×224 NCHW"), ("opset", "17")]:
        assert f"<dt>{k}</dt><dd>{v}</dd>" in header


def test_write_is_atomic_index_html(tmp_path):
    r = _report()
    path = r.write(tmp_path / "out")
    assert path == tmp_path / "out" / "index.html"
    assert path.read_text(encoding="utf-8") == r.to_html()
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]


def test_errors():
    r = Report("m")
    with pytest.raises(OnnxvizError, match="no image block named 'cat.jpg'"):
        r.add_section("x", image="cat.jpg")
    with pytest.raises(ImageError, match="view 'bad'"):
        r.add_image("a", _img(0), [], [View("bad", np.zeros((4, 4), np.float32))])


def test_empty_report_and_no_predictions():
    r = Report("empty")
    assert "<nav" not in r.to_html()
    r.add_image("x", _img(0), [], [])
    assert "No class predictions" in r.to_html()
