"""Attribution methods vs one plain forward pass, on the shipped EfficientNet-Lite0.

For one 224x224 image (the cat photo) on CPU: the median time of each method as a ratio
to the median time of one plain forward pass timed in the same interleaved rounds. The class
is given (the top-1, found once beforehand), as the CLI and the report do, so no method
pays an extra forward pass to find it. Then occlusion with 169 windows (window 32,
stride 16 on 224) against 169 plain forwards at the best batch size of 1, 8, 16, 32, 64.
Goals: saliency <= 3.5x, Grad-CAM <= 3.5x, occlusion <= 1.2x the best 169 forwards.

    python benchmarks/bench_attribution.py [--threads 2] [--provider cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np

from _timing import CAT, SHIPPED_MODEL, input_shape, interleaved_medians, table

import onnxviz
from onnxviz import methods

GOALS = {"saliency": 3.5, "gradcam": 3.5}
OCCLUSION_GOAL = 1.2


def method_calls(model, x, target: int, quick: bool) -> dict[str, tuple[str, object]]:
    """method -> (settings, zero-argument call)."""
    samples, steps, channels = (8, 8, 32) if quick else (25, 32, 256)
    return {
        "saliency": ("", lambda: methods.saliency(model, x, target)),
        "smoothgrad": (f"n={samples}", lambda: methods.smoothgrad(model, x, target, n=samples)),
        "ig": (f"steps={steps}", lambda: methods.integrated_gradients(model, x, target, steps=steps)),
        "guided": ("", lambda: methods.guided_backprop(model, x, target)),
        "deconvnet": ("", lambda: methods.deconvnet(model, x, target)),
        "cam": ("", lambda: methods.cam(model, x, target)),
        "gradcam": ("", lambda: methods.grad_cam(model, x, target)),
        "gradcam++": ("", lambda: methods.grad_cam_pp(model, x, target)),
        "scorecam": (f"max_channels={channels}", lambda: methods.score_cam(model, x, target, max_channels=channels)),
        "occlusion": ("window 32, stride 16 (169)", lambda: methods.occlusion(model, x, target, window=32, stride=16)),
    }


def best_forward_size(models: dict[int, object], x: np.ndarray, copies: int = 169) -> tuple[int, dict[int, float]]:
    """The batch size (a key of ``models``) at which ``copies`` plain forwards are fastest."""
    stack = np.repeat(x, copies, axis=0)
    times = interleaved_medians({size: (lambda m=m: m.run(stack)) for size, m in models.items()},
                                repeats=3, warmup=1)
    return min(times, key=times.get), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer samples/steps/channels")
    args = parser.parse_args()

    model = onnxviz.Model(SHIPPED_MODEL, provider=args.provider, threads=args.threads)
    if CAT.exists():
        x = model.preprocess([CAT])
    else:
        x = np.random.default_rng(0).standard_normal(input_shape(model, 1)).astype(np.float32)
    target = int(np.argmax(model.logits(x)[0]))
    # Each method is timed in interleaved rounds with a plain forward (Model.run) and the
    # same forward through a session held here (no per-call Model overhead).
    session = model.session(model.proto)
    plain = {"forward": lambda: model.run(x),
             "raw": lambda: session.run_batched({model.input.name: x}, outputs=model.output_names)}
    rows = []
    for name, (settings, call) in method_calls(model, x, target, args.quick).items():
        heavy = name in ("smoothgrad", "ig", "scorecam", "occlusion")
        t = interleaved_medians({**plain, "method": call}, repeats=5 if heavy else 40, warmup=1 if heavy else 3)
        ratio = t["method"] / t["forward"]
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"<= {goal}x: {'ok' if ratio <= goal else 'MISSED'}"
        rows.append([name, settings, t["method"] * 1e3, t["forward"] * 1e3, ratio, t["method"] / t["raw"], verdict])
    print(f"model {SHIPPED_MODEL.name}, provider={args.provider} ({', '.join(model.providers)}), "
          f"threads={args.threads}, batch_size={model.batch_size}, one 224x224 image, class {target} "
          f"{model.label(target)!r}")
    print(table(["method", "settings", "ms", "forward ms (same rounds)", "x forward", "x held-session forward",
                 "goal (on x forward)"], rows))

    # Occlusion against 169 plain forwards at the batch size that suits the forwards best,
    # timed in interleaved rounds (the machine's speed drifts).
    sizes = {size: onnxviz.Model(SHIPPED_MODEL, provider=args.provider, threads=args.threads, batch_size=size)
             for size in (1, 8, 16, 32, 64)}
    size, times = best_forward_size(sizes, x)
    stack = np.repeat(x, 169, axis=0)
    default = model.batch_size
    t = interleaved_medians({
        "forwards": lambda: sizes[size].run(stack),
        "default": lambda: methods.occlusion(model, x, target, window=32, stride=16),
        "best": lambda: methods.occlusion(sizes[size], x, target, window=32, stride=16),
    }, repeats=5, warmup=1)
    print()
    print(table(["169 plain forwards at batch size", *map(str, times)], [["ms", *[v * 1e3 for v in times.values()]]]))
    print()
    rows = [[f"{default} (model default)", t["default"] * 1e3, t["forwards"] * 1e3, t["default"] / t["forwards"]],
            [f"{size} (best for forwards)", t["best"] * 1e3, t["forwards"] * 1e3, t["best"] / t["forwards"]]]
    for row in rows:
        row.append(f"<= {OCCLUSION_GOAL}x: {'ok' if row[3] <= OCCLUSION_GOAL else 'MISSED'}")
    print(table(["occlusion batch size", "occlusion 169 windows ms", f"169 forwards ms (batch {size})",
                 "ratio", "goal"], rows))


if __name__ == "__main__":
    main()
