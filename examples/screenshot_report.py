"""Screenshot an onnxviz HTML report in headless Chromium.

Without ``--html`` it first builds a demo report from the shipped photos and
fake-but-plausible views made with ``onnxviz.render`` (no model needed), so the
report's design can be checked without running anything heavy.

    python examples/screenshot_report.py -o /tmp/demo.png
    python examples/screenshot_report.py --html out/index.html -o report.png --resize-width 1000
    python examples/screenshot_report.py -o examples/report_demo.png --resize-width 1000 --palette

Needs Chromium (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from onnxviz.render import (
    Report,
    View,
    channel_grid,
    filter_grid,
    gradient_image,
    overlay,
    tile,
    write_png,
)

CHROMIUM = "/usr/bin/chromium"
IMAGES = Path(__file__).resolve().parent / "images"


def screenshot(
    html_path: str | Path,
    png_path: str | Path,
    width: int = 1400,
    height: int = 3000,
    chromium: str = CHROMIUM,
    timeout: float = 180.0,
) -> Path:
    """Render ``html_path`` in headless Chromium and save the top ``width``×``height`` px as a PNG."""
    html_path = Path(html_path).resolve()
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="onnxviz-chromium-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png_path}",
            html_path.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png_path.exists():
        raise RuntimeError(f"chromium failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return png_path


def palette_png(rgb: np.ndarray, colours: int = 256, seed: int = 0) -> bytes:
    """Encode RGB as an indexed (palette) PNG: k-means colours, about 3× smaller than RGB
    for a screenshot with photos. OpenCV cannot write palette PNGs, so the chunks are
    written here (PNG spec: IHDR colour type 3, PLTE, IDAT, IEND)."""
    px = rgb.reshape(-1, 3)
    rng = np.random.default_rng(seed)
    sample = px[rng.choice(len(px), min(len(px), 60000), replace=False)].astype(np.float32)
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    k = min(colours, len(np.unique(sample, axis=0)))
    _, _, centres = cv2.kmeans(sample, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    palette = np.clip(np.rint(centres), 0, 255).astype(np.int32)
    unique, inverse = np.unique(px, axis=0, return_inverse=True)
    nearest = np.concatenate([  # chunks keep the distance table small
        ((u[:, None, :].astype(np.int32) - palette[None]) ** 2).sum(-1).argmin(1)
        for u in np.array_split(unique, max(1, len(unique) // 4096))
    ])
    index = nearest.astype(np.uint8)[inverse.ravel()].reshape(rgb.shape[:2])
    raw = b"".join(b"\x00" + row.tobytes() for row in index)  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = index.shape
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", palette.astype(np.uint8).tobytes())
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def finish_png(png_path: str | Path, width: int | None = None, palette: bool = False) -> Path:
    """Shrink a screenshot to ``width`` px wide (area averaging) and/or make it a palette PNG, in place."""
    png_path = Path(png_path)
    rgb = cv2.imread(str(png_path), cv2.IMREAD_COLOR)[:, :, ::-1]
    if width and rgb.shape[1] > width:
        h = round(rgb.shape[0] * width / rgb.shape[1])
        rgb = cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA)
    if palette:
        png_path.write_bytes(palette_png(np.ascontiguousarray(rgb)))
    else:
        write_png(png_path, rgb)
    return png_path


# -- the demo report: fake but plausible views -------------------------------------


def _blob(shape: tuple[int, int], centre: tuple[float, float], sigma: float) -> np.ndarray:
    """A Gaussian bump on a grid of ``shape``, centre and sigma in grid units."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / (2 * sigma**2))


def _fake_cam(rng: np.random.Generator, centre: tuple[float, float], n: int = 7) -> np.ndarray:
    """A 7×7 class activation map: a blob on the object plus a little noise."""
    return np.maximum(_blob((n, n), centre, 1.3) + 0.15 * rng.random((n, n)), 0)


def _fake_saliency(photo: np.ndarray, rng: np.random.Generator, focus: np.ndarray) -> np.ndarray:
    """An H×W×3 'gradient': signed image edges, stronger on the object, with noise."""
    f = photo.astype(np.float32) / 255.0
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    g = (gx + gy) * focus[:, :, None] + 0.05 * rng.standard_normal(f.shape).astype(np.float32)
    return g


def _fake_activations(photo: np.ndarray, rng: np.random.Generator, n: int = 24, size: int = 28) -> np.ndarray:
    """n×size×size 'feature maps': ReLU of oriented and colour filters on a small grey photo."""
    small = cv2.resize(photo, (size * 2, size * 2), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    maps = []
    for k in range(n):
        theta = np.pi * k / n
        kern = cv2.getGaborKernel((9, 9), 2.5, theta, 5.0, 0.6, psi=rng.uniform(0, np.pi))
        chan = small[:, :, k % 3] if k % 4 else small.mean(axis=2)
        resp = cv2.filter2D(chan, -1, kern.astype(np.float32))
        maps.append(cv2.resize(np.maximum(resp - resp.mean(), 0), (size, size), interpolation=cv2.INTER_AREA))
    maps[5] = np.zeros((size, size), np.float32)  # a dead channel, as real layers have
    return np.stack(maps)


def _fake_filters(rng: np.random.Generator, n: int = 32, k: int = 7) -> np.ndarray:
    """n×3×k×k first-layer kernels: coloured Gabor edges and colour blobs."""
    out = np.zeros((n, 3, k, k), np.float32)
    for i in range(n):
        if i % 4 == 3:  # colour-opponent blob
            colour = rng.standard_normal(3)
            out[i] = colour[:, None, None] * _blob((k, k), (k // 2, k // 2), 1.4)[None]
        else:
            g = cv2.getGaborKernel((k, k), 1.8, rng.uniform(0, np.pi), 4.0, 0.7, psi=rng.uniform(0, np.pi))
            tint = 1.0 + 0.4 * rng.standard_normal(3)
            out[i] = tint[:, None, None] * g[None]
    return out + 0.02 * rng.standard_normal(out.shape).astype(np.float32)


def _patches(photo: np.ndarray, rng: np.random.Generator, n: int = 8, size: int = 48) -> list[np.ndarray]:
    h, w = photo.shape[:2]
    out = []
    for _ in range(n):
        y, x = rng.integers(0, h - size), rng.integers(0, w - size)
        out.append(cv2.resize(photo[y : y + size, x : x + size], (64, 64), interpolation=cv2.INTER_CUBIC))
    return out


def build_demo_report() -> Report:
    """A report with two photo blocks, an attached section and top-level sections."""
    shipped = {name: cv2.cvtColor(cv2.imread(str(IMAGES / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
               for name in ("cat", "coffee")}
    rng = np.random.default_rng(0)
    report = Report(
        "efficientnet_lite0.onnx (demo)",
        {
            "model": "efficientnet_lite0.onnx",
            "input": "images · 1×224×224×3 NHWC float32",
            "opset": "17",
            "parameters": "4,652,008",
            "provider": "CPUExecutionProvider",
            "preprocessing": "resize 256 → crop 224, (x − 127) / 128",
        },
    )
    photos = {
        # name: (photo, CAM peak in 7×7 cells, fake top-5)
        "cat.jpg": (
            shipped["cat"],
            (2.6, 3.4),
            [("tabby, tabby cat", 0.612), ("tiger cat", 0.214), ("Egyptian cat", 0.121),
             ("lynx, catamount", 0.018), ("Persian cat", 0.006)],
        ),
        "coffee.jpg": (
            shipped["coffee"],
            (3.2, 3.0),
            [("espresso", 0.733), ("cup", 0.141), ("coffee mug", 0.052), ("eggnog", 0.021),
             ("chocolate sauce", 0.004)],
        ),
    }
    for name, (photo, centre, preds) in photos.items():
        img = cv2.resize(photo, (224, 224), interpolation=cv2.INTER_AREA)
        cam = _fake_cam(rng, centre)
        focus = cv2.resize(_blob((7, 7), centre, 2.0).astype(np.float32), (224, 224), interpolation=cv2.INTER_CUBIC)
        grad = _fake_saliency(img, rng, focus)
        occ = _fake_cam(rng, (2 * centre[0], 2 * centre[1]), 14)
        top = preds[0][0].split(",")[0]
        views = [
            View("Grad-CAM", overlay(img, cam, 0.5, "jet"), f"layer: blocks.6 (7×7)\nclass: {top}"),
            View("Grad-CAM++", overlay(img, cam**1.5, 0.5, "turbo"), f"layer: blocks.6\nclass: {top}"),
            View("Vanilla gradient", gradient_image(grad, "HWC"), f"class: {top}\nscale: 99.5th pct of |g|"),
            View("Guided backprop", gradient_image(np.maximum(grad, 0) * 2 - grad.mean(), "HWC"), "ReLU: guided"),
            View("Saliency |∂y/∂x|", overlay(img, np.abs(grad).max(axis=2), 0.6, "inferno", "abs"),
                 "max over channels"),
            View("Occlusion", overlay(img, occ, 0.5, "hot"), "patch 32 px, stride 16, fill 0"),
        ]
        acts = _fake_activations(img, rng)
        views.append(View("Activations · blocks.2 (24 channels)", channel_grid(acts, cols=8, cell=72),
                          "each channel min–max normalised; channel 5 is dead"))
        report.add_image(name, img, preds, views)
    report.add_section(
        "Top-activating dataset patches",
        [View(f"blocks.4 channel {c}", tile(_patches(shipped["cat"], rng), cols=4, pad=2),
              "8 patches, receptive field 48 px") for c in (3, 17)],
        image="cat.jpg",
    )
    report.add_section(
        "First-layer filters",
        [View("stem.conv · 32 kernels 3×7×7", filter_grid(_fake_filters(rng), cell=56, cols=16),
              "jointly normalised around 0 (grey = 0)")],
    )
    report.add_section(
        "Cross-export comparison",
        html=(
            "<table><tr><th>export</th><th>top-1</th><th>max |Δ logit|</th></tr>"
            "<tr><td>fp32</td><td>tabby</td><td>0</td></tr>"
            "<tr><td>fp16</td><td>tabby</td><td>3.1e-3</td></tr>"
            "<tr><td>int8 (QDQ)</td><td>tiger cat</td><td>0.41</td></tr></table>"
        ),
    )
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--html", type=Path, help="screenshot this report instead of building the demo")
    p.add_argument("-o", "--output", type=Path, default=Path("report.png"), help="PNG to write (default report.png)")
    p.add_argument("--width", type=int, default=1400, help="browser window width (px)")
    p.add_argument("--height", type=int, default=3000, help="browser window height (px); the screenshot is this tall")
    p.add_argument("--resize-width", type=int, default=None, help="shrink the PNG to this width afterwards")
    p.add_argument("--palette", action="store_true", help="save a 256-colour PNG (about 3x smaller)")
    p.add_argument("--chromium", default=shutil.which("chromium") or CHROMIUM, help="Chromium binary")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onnxviz-demo-") as tmp:
        html_path = args.html if args.html else build_demo_report().write(tmp)
        out = screenshot(html_path, args.output, args.width, args.height, args.chromium)
    if args.resize_width or args.palette:
        finish_png(out, args.resize_width, args.palette)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
