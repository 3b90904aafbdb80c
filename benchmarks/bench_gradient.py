"""Forward+backward (the appended ONNX backward graph) vs forward, and vs torch autograd.

For the shipped EfficientNet-Lite0 (and, when torch is installed, a ResNet-18 exported
here with random weights) at batch 1 and 16 on CPU: forward time, forward+backward time
(one session run returning logits and the input gradient), their ratio, and torch
autograd forward+backward on the same model and thread count, as a ratio.
Goals: fwd+bwd <= 3.5x fwd for mobile nets (<= 3x for ResNet-style); >= 1.5x faster
than torch autograd on EfficientNet-Lite0.

    python benchmarks/bench_gradient.py [--threads 2] [--provider cpu|cuda]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from _timing import ROOT, SHIPPED_MODEL, input_shape, interleaved_medians, table

import onnxviz


def torch_models() -> dict:
    """name -> torch module in eval mode, for the nets we can build here (needs torch)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return {}
    out = {}
    sys.path.insert(0, str(ROOT / "models"))
    try:
        from export_efficientnet_lite0 import build_model as build_torch_model

        out["efficientnet_lite0"] = build_torch_model()
    except Exception as exc:  # the source packages are optional
        print(f"(no torch EfficientNet-Lite0: {exc})")
    out["resnet18"] = resnet18()
    return out


def resnet18():
    """A torchvision-shaped ResNet-18 (random weights, eval mode): no torchvision here."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    torch.manual_seed(0)
    return nn.Sequential(*layers).eval()


def export(module, path: Path) -> None:
    import torch

    x = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(module, (x,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=17,
                      dynamo=False)


def torch_fwd_bwd(module, x: np.ndarray, target: int, threads: int):
    import torch

    torch.set_num_threads(threads)
    xt = torch.from_numpy(x)

    def step():
        inp = xt.clone().requires_grad_(True)
        logits = module(inp)
        logits[:, target].sum().backward()
        return inp.grad

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--provider", default="cpu")
    args = parser.parse_args()

    torch_nets = torch_models()
    nets = {"efficientnet_lite0": SHIPPED_MODEL}
    tmp = Path(tempfile.mkdtemp())
    if "resnet18" in torch_nets:
        nets["resnet18"] = tmp / "resnet18.onnx"
        export(torch_nets["resnet18"], nets["resnet18"])

    rows = []
    rng = np.random.default_rng(0)
    for name, path in nets.items():
        model = onnxviz.Model(path, provider=args.provider, threads=args.threads)
        for batch in (1, 16):
            x = rng.standard_normal(input_shape(model, batch)).astype(np.float32)
            seed = model.one_hot(x, np.full(batch, 1, dtype=np.int64))
            fns = {"fwd": lambda: model.logits(x), "both": lambda: model.vjp(x, seed)}
            if name in torch_nets:
                fns["torch"] = torch_fwd_bwd(torch_nets[name], x, 1, args.threads)
            t = interleaved_medians(fns, repeats=20 if batch == 1 else 8, budget=90.0)
            fwd, both = t["fwd"], t["both"]
            row = [name, batch, fwd * 1e3, both * 1e3, both / fwd]
            if name in torch_nets:
                row += [t["torch"] * 1e3, t["torch"] / both]
            else:
                row += ["-", "-"]
            rows.append(row)
    print(f"provider={args.provider} ({model.providers}), threads={args.threads}")
    print(table(["model", "batch", "forward ms", "fwd+bwd ms", "fwd+bwd / fwd",
                 "torch fwd+bwd ms", "onnxviz speed-up vs torch"], rows))


if __name__ == "__main__":
    main()
