"""Cost of exposing intermediate tensors, as a ratio to a plain forward pass.

Shipped EfficientNet-Lite0 on CPU, batch 1 and 16: plain forward, forward with one layer
exposed, forward with every layer exposed. Goal: one layer <= 1.1x, all layers <= 2x.
``Model.activations`` prunes the graph to what the asked tensors need, so the one-layer case
asks for the logits too: a whole forward pass with one more output.

The last column is a floor measured in the same rounds: a forward pass plus one copy of every
exposed byte (numpy, one thread per core, into memory written before), the least that
returning every tensor can cost once the forward pass has computed them.

Ratios are medians of per-round ratios: each round times every call once, and a round's
ratio divides by that round's forward pass, so the machine's drift in speed between rounds
cancels out.

    python benchmarks/bench_activations.py [--threads 2] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import threading

import numpy as np

from _timing import SHIPPED_MODEL, input_shape, interleaved_times, paired_ratios, table

import onnxviz


def exposed_bytes(arrays) -> int:
    """Bytes of the distinct buffers behind ``arrays`` (a view of a padded copy counts once)."""
    kept: list[np.ndarray] = []
    for a in sorted(arrays, key=lambda a: a.nbytes, reverse=True):
        if not any(np.may_share_memory(a, k) for k in kept):
            kept.append(a)
    return sum(a.nbytes for a in kept)


def parallel_copy(nbytes: int, threads: int):
    """A function copying ``nbytes`` between two buffers already written, ``threads`` ways
    (numpy releases the GIL while it copies)."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.zeros_like(src)
    parts = list(zip(np.array_split(src, threads), np.array_split(dst, threads)))

    def copy() -> None:
        workers = [threading.Thread(target=np.copyto, args=(d, s)) for s, d in parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--rounds", type=int, default=0,
                        help="timing rounds per batch size (default 100 at batch 1, 30 at 16)")
    args = parser.parse_args()

    model = onnxviz.Model(args.model, provider="cpu", threads=args.threads)
    names = [layer.name for layer in model.layers]
    middle = next(l.name for l in model.layers[len(names) // 2:] if l.receptive_field)
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 16):
        x = rng.standard_normal(input_shape(model, batch)).astype(np.float32)
        nbytes = exposed_bytes(model.activations(x, names).values())
        times = interleaved_times({
            "plain": lambda: model.run(x),
            "one": lambda: model.activations(x, [middle, *model.output_names]),
            "every": lambda: model.activations(x, names),
            "copy": parallel_copy(nbytes, args.threads),
        }, repeats=args.rounds or (100 if batch == 1 else 30), budget=90.0)
        t = {name: statistics.median(values) for name, values in times.items()}
        ratio = paired_ratios(times, "plain")
        one, every = ratio["one"], ratio["every"]
        floor = [1 + c / p for c, p in zip(times["copy"], times["plain"])]
        q1, q3 = np.percentile(every, [25, 75])
        rows.append([batch, len(every), t["plain"] * 1e3, statistics.median(one),
                     f"{statistics.median(every):.2f} ({q1:.2f}-{q3:.2f})",
                     f"{nbytes / 1e6:.0f} MB in {t['copy'] * 1e3:.1f} ms: {statistics.median(floor):.2f}"])
    print(f"model: {model.name}, {len(names)} tensors, one exposed layer: {middle!r}, "
          f"threads={args.threads}, providers={model.providers}")
    print(table(["batch", "rounds", "forward ms", "1 layer (goal <= 1.1x)",
                 "all layers (goal <= 2x; quartiles)",
                 "floor: forward + one copy of the exposed bytes"], rows))


if __name__ == "__main__":
    main()
