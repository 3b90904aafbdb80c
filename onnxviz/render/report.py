"""The HTML report: one self-contained file that opens offline.

Images are embedded as base64 PNG data URIs, the CSS is inline, there is no
JavaScript and no external resource. Every piece of text goes through
``html.escape``; only a section's ``html=`` argument is inserted as markup.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from onnxviz import __version__
from onnxviz.errors import OnnxvizError
from onnxviz.render._image import as_rgb
from onnxviz.render.io import encode_png, write_text

# Views at least this wide span a whole row of the grid (channel and filter grids).
_WIDE = 460
# Views narrower than this are enlarged to the card width with square pixels.
_TINY = 128


@dataclass
class View:
    """One picture of a report: what it shows, and how it was made.

    Attributes:
        title: the method, e.g. "Grad-CAM".
        image: uint8 RGB (or grey) image.
        caption: settings, e.g. "layer features.7, class 281 tabby".
    """

    title: str
    image: np.ndarray
    caption: str = ""


@dataclass
class _Section:
    id: str
    title: str
    views: list[View]
    html: str | None


@dataclass
class _Block:
    id: str
    name: str
    photo: np.ndarray
    predictions: list[tuple[str, float]]
    views: list[View]
    sections: list[_Section] = field(default_factory=list)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def data_uri(image: np.ndarray, max_side: int | None = None) -> str:
    """A ``data:image/png;base64,...`` URI for a uint8 RGB image, shrunk to ``max_side`` if given."""
    rgb = as_rgb(image)
    h, w = rgb.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        s = max_side / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return "data:image/png;base64," + base64.b64encode(encode_png(rgb)).decode("ascii")


class Report:
    """A report: a header with the model summary, one block per input image, extra sections.

    Example::

        r = Report("resnet18.onnx", {"input": "1×3×224×224 NCHW", "opset": "17"})
        r.add_image("cat.jpg", photo, [("tabby", 0.61), ...], [View("Grad-CAM", img, "layer4")])
        r.add_section("First-layer filters", [View("conv1", filter_grid(w))])
        r.write("out/")  # out/index.html
    """

    def __init__(self, title: str, summary: dict[str, str] | None = None, max_photo_side: int = 640) -> None:
        """
        Args:
            title: page title, usually the model name.
            summary: model facts shown in the header (name, input, opset, parameters, provider...).
            max_photo_side: input photos are shrunk to this longer side before embedding.
        """
        self.title = title
        self.summary = dict(summary or {})
        self.max_photo_side = max_photo_side
        self._blocks: list[_Block] = []
        self._sections: list[_Section] = []
        self._ids: set[str] = set()

    def _new_id(self, prefix: str, name: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "item"
        base = f"{prefix}-{slug}"
        uid, n = base, 2
        while uid in self._ids:
            uid, n = f"{base}-{n}", n + 1
        self._ids.add(uid)
        return uid

    def add_image(
        self,
        name: str,
        photo: np.ndarray,
        predictions: list[tuple[str, float]],
        views: list[View],
    ) -> str:
        """Add the block of one input image: photo, top-5 predictions, views.

        Args:
            name: shown as the block title (e.g. the file name); later sections attach by it.
            photo: uint8 RGB photo as given to the model (before preprocessing).
            predictions: (label, probability) pairs; the 5 most probable are shown.
            views: pictures made from this image, shown in a grid.

        Returns:
            The block's anchor id in the page.
        """
        as_rgb(photo, f"photo of {name!r}")
        for v in views:
            as_rgb(v.image, f"view {v.title!r} of {name!r}")
        preds = sorted(((str(k), float(p)) for k, p in predictions), key=lambda kp: -kp[1])[:5]
        block = _Block(self._new_id("img", name), name, photo, preds, list(views))
        self._blocks.append(block)
        return block.id

    def add_section(
        self,
        title: str,
        views: list[View] | None = None,
        html: str | None = None,
        image: str | None = None,
    ) -> str:
        """Add a section of views and/or markup.

        Args:
            title: section heading.
            views: pictures shown in a grid.
            html: markup inserted as is (trusted: built by onnxviz, never user text; it
                must not reference external resources).
            image: name of an image block to attach the section to (shown inside that
                block); default a top-level section after the image blocks.

        Returns:
            The section's anchor id in the page.

        Raises:
            OnnxvizError: ``image`` names no block added so far.
        """
        views = list(views or [])
        for v in views:
            as_rgb(v.image, f"view {v.title!r} of section {title!r}")
        section = _Section(self._new_id("sec", title), title, views, html)
        if image is None:
            self._sections.append(section)
        else:
            blocks = [b for b in self._blocks if b.name == image]
            if not blocks:
                names = ", ".join(repr(b.name) for b in self._blocks) or "none yet"
                raise OnnxvizError(
                    f"no image block named {image!r} to attach section {title!r} to; "
                    f"add_image it first (blocks: {names})"
                )
            blocks[-1].sections.append(section)
        return section.id

    # -- rendering -------------------------------------------------------------

    def _views_html(self, views: list[View]) -> str:
        if not views:
            return ""
        cards = []
        for v in views:
            w = v.image.shape[1]
            # wide grids span a row; tiny maps are enlarged with visible pixels, not blurred
            wide = " wide" if w >= _WIDE else " px" if w < _TINY else ""
            caption = f'<span class="settings">{_e(v.caption)}</span>' if v.caption else ""
            cards.append(
                f'<figure class="card view{wide}">'
                f'<img src="{data_uri(v.image)}" alt="{_e(v.title)}" width="{w}" height="{v.image.shape[0]}">'
                f'<figcaption><strong>{_e(v.title)}</strong>{caption}</figcaption></figure>'
            )
        return '<div class="views">' + "".join(cards) + "</div>"

    def _section_html(self, s: _Section, level: int) -> str:
        body = self._views_html(s.views) + (f'<div class="raw">{s.html}</div>' if s.html else "")
        return f'<section class="section" id="{s.id}"><h{level}>{_e(s.title)}</h{level}>{body}</section>'

    @staticmethod
    def _predictions_html(preds: list[tuple[str, float]]) -> str:
        if not preds:
            return '<p class="muted">No class predictions for this model.</p>'
        rows = []
        for rank, (name, p) in enumerate(preds, 1):
            pct = 100.0 * min(max(p, 0.0), 1.0)
            rows.append(
                f'<tr><td class="rank">{rank}</td><td class="cls">{_e(name)}</td>'
                f'<td class="bar"><span style="width:{pct:.1f}%"></span></td>'
                f'<td class="prob">{100.0 * p:.1f}%</td></tr>'
            )
        return (
            '<table class="preds"><thead><tr><th>#</th><th>class</th><th colspan="2">probability</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
        )

    def _block_html(self, b: _Block) -> str:
        h, w = b.photo.shape[:2]
        return (
            f'<section class="block" id="{b.id}"><h2>{_e(b.name)}</h2>'
            '<div class="top">'
            f'<figure class="card photo"><img src="{data_uri(b.photo, self.max_photo_side)}" alt="{_e(b.name)}">'
            f'<figcaption><strong>input</strong><span class="settings">{w}×{h} px</span></figcaption></figure>'
            f'<div class="card predictions"><h3>Top-{len(b.predictions) or 5} predictions</h3>'
            f"{self._predictions_html(b.predictions)}</div></div>"
            + self._views_html(b.views)
            + "".join(self._section_html(s, 3) for s in b.sections)
            + "</section>"
        )

    def _toc_html(self) -> str:
        items = []
        for b in self._blocks:
            sub = "".join(f'<li><a href="#{s.id}">{_e(s.title)}</a></li>' for s in b.sections)
            items.append(f'<li><a href="#{b.id}">{_e(b.name)}</a>' + (f"<ol>{sub}</ol>" if sub else "") + "</li>")
        items += [f'<li><a href="#{s.id}">{_e(s.title)}</a></li>' for s in self._sections]
        if not items:
            return ""
        return f'<nav class="toc"><h2>Contents</h2><ol>{"".join(items)}</ol></nav>'

    def to_html(self) -> str:
        """The whole report as one HTML string."""
        summary = "".join(
            f'<div class="fact"><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>' for k, v in self.summary.items()
        )
        body = (
            f'<header><div class="wrap"><p class="kicker">onnxviz report</p><h1>{_e(self.title)}</h1>'
            + (f'<dl class="facts">{summary}</dl>' if summary else "")
            + "</div></header>"
            + '<main class="wrap">'
            + self._toc_html()
            + "".join(self._block_html(b) for b in self._blocks)
            + "".join(f'<div class="block">{self._section_html(s, 2)}</div>' for s in self._sections)
            + "</main>"
            + f'<footer class="wrap">Made with onnxviz {_e(__version__)}. '
            "Self-contained: no scripts, no network.</footer>"
        )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(self.title)} · onnxviz</title><style>{_CSS}</style></head>"
            f"<body>{body}</body></html>\n"
        )

    @staticmethod
    def target(out: str | os.PathLike) -> Path:
        """Where :meth:`write` puts the page: ``out`` itself when it names an
        ``.html``/``.htm`` file, else ``out/index.html``."""
        path = Path(out)
        return path if path.suffix.lower() in (".html", ".htm") else path / "index.html"

    def write(self, out: str | os.PathLike) -> Path:
        """Write the page atomically (folders created) to :meth:`target` and return its path."""
        return write_text(self.target(out), self.to_html())


_CSS = """
:root{--bg:#f4f5f7;--card:#fff;--ink:#1d2330;--muted:#667085;--line:#e3e6eb;--accent:#3b5bdb;--accent-soft:#dbe4ff}
*{box-sizing:border-box}
html{scroll-behavior:smooth}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.wrap{max-width:1240px;margin:0 auto;padding:0 24px}
header{background:#1d2330;color:#fff;padding:28px 0 22px;margin-bottom:24px}
header h1{margin:0 0 14px;font-size:28px;font-weight:650;word-break:break-word}
.kicker{margin:0 0 2px;text-transform:uppercase;letter-spacing:.08em;font-size:12px;color:#9aa4b8}
.facts{display:flex;flex-wrap:wrap;gap:8px;margin:0}
.fact{background:rgba(255,255,255,.08);border:1px solid rgba(255,255,255,.14);border-radius:8px;padding:6px 12px}
.fact dt{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:#9aa4b8}
.fact dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums;word-break:break-word}
.toc{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 22px;margin-bottom:24px}
.toc h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:0 0 6px}
.toc ol{margin:0;padding-left:22px}
.toc ol ol{font-size:14px}
.toc a{color:var(--accent);text-decoration:none}
.toc a:hover{text-decoration:underline}
.block{margin-bottom:36px}
.block>h2,.block>.section>h2{font-size:21px;margin:0 0 12px;padding-bottom:6px;border-bottom:2px solid var(--line)}
.section{margin-top:20px}
.section h3{font-size:17px;margin:0 0 10px;color:#344054}
.top{display:flex;flex-wrap:wrap;gap:16px;margin-bottom:16px;align-items:flex-start}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;box-shadow:0 1px 2px rgba(16,24,40,.05);margin:0;overflow:hidden}
.photo{flex:0 1 320px}
.photo img{display:block;width:100%;height:auto}
.predictions{flex:1 1 340px;padding:14px 18px}
.predictions h3{margin:0 0 8px;font-size:15px}
figcaption{padding:8px 12px 10px;font-size:13px;line-height:1.35;border-top:1px solid var(--line)}
figcaption strong{display:block;font-size:14px}
.settings{display:block;color:var(--muted);white-space:pre-line;word-break:break-word}
.views{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:16px}
.view img{display:block;width:100%;height:auto;background:#fff}
.view.wide{grid-column:1/-1}
.view.px img{image-rendering:pixelated}
.view.wide img{width:auto;max-width:100%;margin:0 auto}
.preds{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
.preds th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-weight:600;padding:0 6px 4px}
.preds td{padding:5px 6px;border-top:1px solid var(--line)}
.preds .rank{color:var(--muted);width:2em}
.preds .cls{font-weight:550;word-break:break-word}
.preds .bar{width:32%}
.preds .bar span{display:block;height:10px;border-radius:5px;background:var(--accent);min-width:2px}
.preds tbody tr:first-child .bar span{background:#2f9e44}
.preds .prob{text-align:right;width:4.5em;color:#344054}
.muted{color:var(--muted)}
.raw{margin-top:12px}
.raw table{border-collapse:collapse;background:var(--card)}
.raw td,.raw th{border:1px solid var(--line);padding:4px 8px}
footer{color:var(--muted);font-size:13px;padding-top:8px;padding-bottom:32px}
@media print{header{background:none;color:var(--ink)}.fact{border-color:var(--line)}.card{break-inside:avoid}}
"""
