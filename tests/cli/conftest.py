"""Tiny models and images for the CLI tests, written once per session to a temp folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from tests.cli.tiny import not_an_image_model, tiny_cnn


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> dict[str, Path]:
    """Paths of the tiny model, broken models and two photos (read-only for the tests)."""
    root = tmp_path_factory.mktemp("cli_inputs")
    out = {}
    out["model"] = root / "tiny.onnx"
    onnx.save(tiny_cnn(), out["model"])
    out["vector"] = root / "vector.onnx"
    onnx.save(not_an_image_model(), out["vector"])
    out["corrupt"] = root / "corrupt.onnx"
    out["corrupt"].write_bytes(b"this is not an onnx file\x00\xff" * 10)
    rng = np.random.default_rng(1)
    for name, (h, w) in {"red": (40, 48), "blue": (36, 30)}.items():
        noise = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)
        out[name] = root / f"{name}.png"
        cv2.imwrite(str(out[name]), noise)
    out["broken_image"] = root / "broken.jpg"
    out["broken_image"].write_bytes(b"\xff\xd8 not really a jpeg")
    return out
