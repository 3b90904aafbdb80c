"""Cost of exposing intermediate tensors, as a ratio to a plain forward pass.

Shipped EfficientNet-Lite0 on CPU, batch 1 and 16: plain forward, forward with one layer
exposed, forward with every layer exposed. Goal: one layer <= 1.1x, all layers <= 2x.
``Model.activations`` prunes the graph to what the asked tensors need, so the one-layer case
asks for the logits too: a whole forward pass with one more output.

    python benchmarks/bench_activations.py [--threads 2]
"""

from __future__ import annotations

import argparse

import numpy as np

from _timing import SHIPPED_MODEL, input_shape, interleaved_medians, table

import onnxviz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    args = parser.parse_args()

    model = onnxviz.Model(args.model, provider="cpu", threads=args.threads)
    names = [layer.name for layer in model.layers]
    middle = next(l.name for l in model.layers[len(names) // 2:] if l.receptive_field)
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 16):
        x = rng.standard_normal(input_shape(model, batch)).astype(np.float32)
        t = interleaved_medians({
            "plain": lambda: model.run(x),
            "one": lambda: model.activations(x, [middle, *model.output_names]),
            "every": lambda: model.activations(x, names),
        }, repeats=40 if batch == 1 else 12)
        plain, one, every = t["plain"], t["one"], t["every"]
        rows.append([batch, plain * 1e3, one * 1e3, one / plain, every * 1e3, every / plain])
    print(f"model: {model.name}, {len(names)} tensors, one exposed layer: {middle!r}, "
          f"threads={args.threads}, providers={model.providers}")
    print(table(["batch", "forward ms", "1 layer ms", "1 layer ratio (goal <= 1.1)",
                 "all layers ms", "all layers ratio (goal <= 2)"], rows))


if __name__ == "__main__":
    main()
