"""The shipped EfficientNet-Lite0 (models/efficientnet_lite0.onnx) and the sample photos.

Needs only onnxruntime, onnx, opencv and numpy (no torch, no onnxviz): the preprocessing below is
written from the metadata's documented semantics, independently of onnxviz.preprocess, so it
checks the metadata itself. The confidence thresholds fail when the normalisation is wrong: with
the torchvision ImageNet mean/std the espresso probability drops to 0.82, with x/255 the palace
photo becomes "bell cote", with BGR order espresso drops to 0.87, with no normalisation at all
every top-1 is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
IMAGES = ROOT / "examples" / "images"

# photo -> (acceptable top-1 labels, the minimum probability of the top-1)
EXPECTED_TOP1 = {
    "coffee.jpg": ({"espresso"}, 0.93),
    "rocket.jpg": ({"missile", "projectile", "space shuttle"}, 0.3),
    "palace.jpg": ({"palace"}, 0.25),
}
CAT_LABELS = {"tabby cat", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return onnx.load(str(MODEL))


@pytest.fixture(scope="module")
def meta(model) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def pp(meta) -> dict:
    return json.loads(meta["onnxviz.preprocessing"])


@pytest.fixture(scope="module")
def labels(meta) -> list[str]:
    return json.loads(meta["onnxviz.labels"])


def preprocess(path: Path, pp: dict) -> np.ndarray:
    """RGB uint8; short side to pp['resize'] (INTER_AREA shrinking, INTER_LINEAR enlarging);
    centre crop pp['size'] = (H, W); (pixel * scale - mean) / std; HWC -> CHW."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    s = pp["resize"] / min(h, w)
    nh, nw = max(pp["resize"], round(h * s)), max(pp["resize"], round(w * s))
    if (nh, nw) != (h, w):
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    ch, cw = pp["size"]
    y0, x0 = (nh - ch) // 2, (nw - cw) // 2
    crop = rgb[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32)
    x = (crop * np.float32(pp["scale"]) - np.asarray(pp["mean"], np.float32)) / np.asarray(pp["std"], np.float32)
    assert pp["layout"] == "NCHW"
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def predict(session, x: np.ndarray) -> np.ndarray:
    (logits,) = session.run(["logits"], {"input": x})
    return logits


def test_metadata(model, meta, pp, labels):
    assert set(meta) >= {"onnxviz.preprocessing", "onnxviz.labels", "onnxviz.source"}
    assert set(pp) == {"size", "resize", "mean", "std", "scale", "channel_order", "layout"}
    assert pp["size"] == [224, 224] and pp["resize"] == 256
    assert pp["channel_order"] == "RGB" and pp["layout"] == "NCHW"
    assert len(pp["mean"]) == 3 and len(pp["std"]) == 3 and pp["scale"] > 0
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert all(isinstance(s, str) and s.strip() == s and s for s in labels)
    assert labels[130] == "flamingo" and labels[281] == "tabby cat" and labels[967] == "espresso"
    file_labels = (ROOT / "models" / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
    assert file_labels == labels
    assert meta["onnxviz.source"].strip() and "\n" not in meta["onnxviz.source"]


def test_graph_interface(model):
    onnx.checker.check_model(model)
    assert model.ir_version <= 10  # onnxruntime 1.31 rejects onnx 1.23's default IR 14
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] in (17, 18)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    in_dims = inp.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and not in_dims[0].HasField("dim_value")
    assert [d.dim_value for d in in_dims[1:]] == [3, 224, 224]
    out_dims = out.type.tensor_type.shape.dim
    assert out_dims[0].dim_param and out_dims[1].dim_value == 1000


def test_dynamic_batch(session):
    x = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    batched = predict(session, x)
    assert batched.shape == (3, 1000)
    for i in range(3):
        single = predict(session, x[i : i + 1])
        np.testing.assert_allclose(batched[i], single[0], atol=1e-4, rtol=0)


def test_cat_in_top5(session, pp, labels):
    p = softmax(predict(session, preprocess(IMAGES / "cat.jpg", pp)[None]))[0]
    top5 = [labels[i] for i in np.argsort(-p)[:5]]
    assert any("cat" in name for name in top5), top5
    top1 = labels[int(p.argmax())]
    assert top1 in CAT_LABELS, top5
    # the domestic-cat classes together take most of the probability
    cat_mass = sum(p[labels.index(name)] for name in CAT_LABELS)
    assert cat_mass > 0.85, (cat_mass, top5)


@pytest.mark.parametrize("name", sorted(EXPECTED_TOP1))
def test_top1(session, pp, labels, name):
    accepted, min_prob = EXPECTED_TOP1[name]
    p = softmax(predict(session, preprocess(IMAGES / name, pp)[None]))[0]
    i = int(p.argmax())
    top5 = [(labels[j], round(float(p[j]), 3)) for j in np.argsort(-p)[:5]]
    assert labels[i] in accepted, top5
    assert p[i] >= min_prob, top5


def test_cat_box(pp):
    boxes = json.loads((IMAGES / "boxes.json").read_text(encoding="utf-8"))
    entry = boxes["cat.jpg"]
    assert entry["label_contains"] == "cat"
    x0, y0, x1, y1 = entry["box_xyxy"]
    h, w = pp["size"]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    # the box must leave background outside it, or it cannot test localisation
    assert (x1 - x0) * (y1 - y0) < 0.8 * h * w
