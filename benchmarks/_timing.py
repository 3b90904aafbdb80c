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


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int = 20, warmup: int = 2,
                      budget: float = 60.0) -> dict[str, list[float]]:
    """Wall times of each function, timed in rounds that run every function once: entry ``i``
    of every list comes from round ``i``.

    On a shared machine the speed drifts by 50% within a minute; timing the functions in
    turn, round after round, exposes them all to the same drift, so their ratios hold.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget and len(times[name]) >= 3:
            break
    return times


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 20, warmup: int = 2,
                        budget: float = 60.0) -> dict[str, float]:
    """Median wall time of each function, timed in interleaved rounds (:func:`interleaved_times`)."""
    times = interleaved_times(fns, repeats, warmup, budget)
    return {name: statistics.median(values) for name, values in times.items()}


def paired_ratios(times: dict[str, list[float]], reference: str) -> dict[str, list[float]]:
    """Each function's time over ``reference``'s in the same round, round by round: a drift
    of the machine's speed between rounds moves both alike and cancels out."""
    return {name: [t / r for t, r in zip(values, times[reference])] for name, values in times.items()}


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
