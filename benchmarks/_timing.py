"""Shared timing helpers for the benchmarks: medians of repeated runs after warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
CAT = ROOT / "examples" / "images" / "cat.jpg"


def median_seconds(fn: Callable[[], object], repeats: int = 20, warmup: int = 3,
                   budget: float = 20.0) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (fewer if ``budget`` s runs out)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget and len(times) >= 3:
            break
    return statistics.median(times)


def input_shape(model, batch: int) -> tuple[int, ...]:
    """A batch shape in the model's own input layout."""
    h, w = model.preprocessing.size
    c = model.input.channels or 3
    return (batch, c, h, w) if model.input.layout == "NCHW" else (batch, h, w, c)


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(c) for c in row) + " |")
    return "\n".join(lines)


def _fmt(cell: object) -> str:
    if isinstance(cell, float):
        return f"{cell:.2f}"
    return str(cell)
