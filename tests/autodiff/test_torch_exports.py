"""onnxviz on small modern CNNs exported from torch, against torch autograd.

Each net is built in torch with seeded random weights (batch-norm statistics and
layer-norm affines randomised too), exported by the classic TorchScript exporter the way
users do (``dynamo=False``, a dynamic batch axis, IR version lowered to what onnxruntime
reads), and checked through :class:`onnxviz.Model` alone:

* mobilenetv3 (opsets 13 and 18): Conv+BN+Hardswish stem, inverted residuals with depthwise
  convs, squeeze-excitation (AdaptiveAvgPool -> 1x1 conv -> ReLU -> 1x1 conv -> Hardsigmoid
  -> broadcast Mul), residual Adds; head pool, Flatten, Linear, Hardswish, Dropout, Linear.
  Opset 13 has no HardSwish op: the exporter writes x * HardSigmoid(x).
* convnext (opsets 13, 17, 18): patchify stem, channels-first LayerNorm by hand
  (ReduceMean/Sub/Pow/Sqrt/Div), channels-last blocks (Transpose, LayerNorm, MatMul, exact
  GELU as Erf, layer scale), depthwise 7x7, residuals; head mean over H, W, LayerNorm, Linear.
  nn.LayerNorm is one LayerNormalization op from opset 17, decomposed at 13; opset 18 moves
  ReduceMean's axes to an input. No kinks anywhere.
* resnet (opsets 13 and 17): BatchNormalization left in the graph (after a residual Add,
  where eval-mode export cannot fold it into a Conv), SiLU, MaxPool 3x3/2 pad 1, AvgPool
  (count_include_pad off, ceil mode), an Inception-style Concat, and an FPN merge with a
  nearest Resize by constant scales and a bilinear one to ``size=lateral.shape[-2:]`` (sizes
  computed from Shape ops; onnx names the batch of both ``unk__*``, not ``N``).
* keras: a Keras-style net taking NHWC images with free batch, height and width: per-channel
  normalisation in NHWC, permute to NCHW, ReLU6 (Clip) depthwise-separable blocks, permute
  back to NHWC, mean over H, W (Keras' GlobalAveragePooling2D), Dense, Softmax.

Checks per net: forward against torch float32; input gradients of each sample's top-1 logit
(batch of 2 random inputs) against torch autograd on a float64 copy; guided backprop against
torch backward hooks applying onnxviz's documented rule (nets with ReLU-family activations);
the gradient with respect to an intermediate tensor against ``retain_grad``; Grad-CAM and its
default layer against the same map computed from torch's activations and gradients.

Measure (as tests/autodiff/test_torch_oracle.py): onnxviz runs float32, torch float64. Where
the net has kinks (ReLU, ReLU6, Hardswish, Hardsigmoid, max pooling) a unit sitting within
float32 rounding of one may flip, so we require that under 1 % of the values are off by more
than 1e-3 of the reference's max |value| and a cosine above 0.999; the smooth convnext must
match within 1e-5 of that max everywhere (measured: under 1e-6).

The last test covers dynamic-shape plumbing that real exports contain (torch.chunk, F.pad /
nn.ZeroPad2d, a channel shuffle at opset 13), whose dims onnx's shape inference loses
(``graph.load`` then falls back to onnxruntime's symbolic shape inference).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
import pytest

from onnxviz.methods import default_cam_layer, grad_cam
from onnxviz.model import Model

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402  (needs torch)
from torch.nn import functional as F  # noqa: E402

pytestmark = [  # the classic exporter's notices, once per export
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed"),
    pytest.mark.filterwarnings("ignore:Constant folding - Only steps=1"),
]

IR_VERSION = 8  # onnxruntime here reads IR <= 13; onnx 1.23 writes 14
BATCH = 2


# --------------------------------------------------------------------------- the nets
def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act=None) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, reduced: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, reduced, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, k: int, stride: int, act):
        super().__init__()
        self.expand = conv_bn(cin, mid, 1, act=act)
        self.dw = conv_bn(mid, mid, k, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid, max(8, mid // 4))
        self.project = conv_bn(mid, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class MobileNetV3ish(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2, act=nn.Hardswish)
        self.blocks = nn.Sequential(
            InvertedResidual(16, 32, 16, 3, 1, nn.ReLU),
            InvertedResidual(16, 48, 24, 5, 2, nn.Hardswish),
            InvertedResidual(24, 64, 24, 3, 1, nn.Hardswish),
        )
        self.last = conv_bn(24, 64, 1, act=nn.Hardswish)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 96), nn.Hardswish(), nn.Dropout(0.2),
                                  nn.Linear(96, classes))

    def forward(self, x):
        return self.head(self.pool(self.last(self.blocks(self.stem(x)))))


class LayerNorm2d(nn.Module):
    """ConvNeXt's channels-first LayerNorm, statistics by hand."""

    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXtish(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), LayerNorm2d(16))
        self.stage1 = ConvNeXtBlock(16)
        self.down = nn.Sequential(LayerNorm2d(16), nn.Conv2d(16, 32, 2, stride=2))
        self.stage2 = ConvNeXtBlock(32)
        self.norm = nn.LayerNorm(32, eps=1e-6)
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(self.norm(x.mean([-2, -1])))


class Inception(nn.Module):
    def __init__(self, cin: int, c: int):
        super().__init__()
        self.a = conv_bn(cin, c, 1, act=nn.ReLU)
        self.b = conv_bn(cin, c, 3, act=nn.ReLU)
        self.c = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), conv_bn(cin, c, 1, act=nn.ReLU))

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x), self.c(x)], 1)


class PostAddBN(nn.Module):
    """A basic residual block with its BatchNorm after the Add: nothing to fold it into."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = conv_bn(c, c, 3, act=nn.SiLU)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(x + self.conv2(self.conv1(x))))


class ResNetish(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16, 3, act=nn.SiLU), nn.MaxPool2d(3, 2, 1))  # 32 -> 16
        self.block1 = PostAddBN(16)
        self.mixed = Inception(16, 8)  # c3: 24 x 16 x 16
        self.down1 = nn.Sequential(nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
                                   conv_bn(24, 32, 1, act=nn.SiLU))
        self.block2 = PostAddBN(32)  # c4: 32 x 8 x 8
        self.down2 = conv_bn(32, 32, 3, 2, act=nn.ReLU)  # c5: 32 x 4 x 4
        self.lateral4 = nn.Conv2d(32, 32, 1)
        self.lateral3 = nn.Conv2d(24, 32, 1)
        self.smooth = conv_bn(32, 32, 3, act=nn.ReLU)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        c3 = self.mixed(self.block1(self.stem(x)))
        c4 = self.block2(self.down1(c3))
        c5 = self.down2(c4)
        p4 = self.lateral4(c4) + F.interpolate(c5, scale_factor=2.0, mode="nearest")
        p3 = self.lateral3(c3) + F.interpolate(p4, size=c3.shape[-2:], mode="bilinear", align_corners=False)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.smooth(p3), 1), 1))


class Permute(nn.Module):
    def __init__(self, *dims: int):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


class KerasStyle(nn.Module):
    """NHWC images in, softmax out, like a Keras model; :meth:`logits` is the pre-softmax part."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]))
        self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]))
        self.to_nchw = Permute(0, 3, 1, 2)
        self.features = nn.Sequential(
            conv_bn(3, 16, 3, 2, act=nn.ReLU6),
            conv_bn(16, 16, 3, groups=16, act=nn.ReLU6),
            conv_bn(16, 32, 1, act=nn.ReLU6),
            conv_bn(32, 32, 3, 2, groups=32, act=nn.ReLU6),
            conv_bn(32, 48, 1, act=nn.ReLU6),
        )
        self.to_nhwc = Permute(0, 2, 3, 1)
        self.fc = nn.Linear(48, classes)

    def logits(self, x):
        x = self.to_nhwc(self.features(self.to_nchw((x - self.mean) / self.std)))
        return self.fc(x.mean((1, 2)))

    def forward(self, x):
        return torch.softmax(self.logits(x), dim=-1)


def logits(net: nn.Module, x):
    return net.logits(x) if isinstance(net, KerasStyle) else net(x)


@dataclass(frozen=True)
class Spec:
    """A net and what to look at: ``tap`` and ``cam`` are module paths (the intermediate
    tensor differentiated against, and the layer Grad-CAM should pick by default)."""

    build: type
    sample: tuple  # one input's shape
    tap: str
    cam: str
    smooth: bool = False  # no kinks: tight tolerance
    nhwc_cam: bool = False  # the CAM layer is channels-last
    free_hw: bool = False  # height and width exported as free dims
    required: frozenset = frozenset()  # ops the export must contain (what the case is about)


NETS = {
    "mobilenetv3": Spec(MobileNetV3ish, (3, 32, 32), tap="blocks.1", cam="last",
                        required=frozenset({"HardSigmoid", "GlobalAveragePool", "Relu", "Gemm"})),
    "convnext": Spec(ConvNeXtish, (3, 32, 32), tap="stage1", cam="stage2", smooth=True,
                     required=frozenset({"Transpose", "MatMul", "Erf", "ReduceMean", "Pow", "Sqrt", "Div"})),
    "resnet": Spec(ResNetish, (3, 32, 32), tap="mixed", cam="smooth",
                   required=frozenset({"BatchNormalization", "MaxPool", "AveragePool", "Sigmoid", "Concat", "Resize"})),
    "keras": Spec(KerasStyle, (32, 32, 3), tap="features.2", cam="to_nhwc", nhwc_cam=True, free_hw=True,
                  required=frozenset({"Transpose", "Clip", "ReduceMean", "Softmax"})),
}
CASES = [("mobilenetv3", 13), ("mobilenetv3", 18), ("convnext", 13), ("convnext", 17), ("convnext", 18),
         ("resnet", 13), ("resnet", 17), ("keras", 17)]
IDS = [f"{name}-opset{opset}" for name, opset in CASES]
#: ops the export must (True) or must not (False) contain at that opset
OPSET_OPS = {
    ("mobilenetv3", 13): {"HardSwish": False}, ("mobilenetv3", 18): {"HardSwish": True},
    ("convnext", 13): {"LayerNormalization": False}, ("convnext", 17): {"LayerNormalization": True},
    ("convnext", 18): {"LayerNormalization": True},
}
#: ReLU-family modules, the torch function each applies (guided backprop)
GUIDED = {nn.ReLU: F.relu, nn.ReLU6: F.relu6, nn.Hardswish: F.hardswish, nn.Hardsigmoid: F.hardsigmoid}


def randomize(net: nn.Module, seed: int) -> nn.Module:
    """Seeded weights, with batch-norm statistics and norm affines away from identity."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, LayerNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1)
    return net.eval()


@dataclass
class Exported:
    net: nn.Module  # float32, eval
    net64: nn.Module  # its float64 copy
    model: Model
    proto: onnx.ModelProto
    x: np.ndarray  # a batch of random inputs


def export(net: nn.Module, sample: tuple, opset: int, path, free_hw: bool = False) -> onnx.ModelProto:
    axes = {0: "N", 1: "H", 2: "W"} if free_hw else {0: "N"}
    torch.onnx.export(
        net, (torch.randn(1, *sample),), str(path), dynamo=False, opset_version=opset,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": axes, "logits": {0: "N"}}, training=torch.onnx.TrainingMode.EVAL,
    )
    proto = onnx.load(str(path))
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    onnx.save(proto, str(path))
    return proto


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cache: dict[tuple[str, int], Exported] = {}

    def get(name: str, opset: int) -> Exported:
        if (name, opset) not in cache:
            spec = NETS[name]
            net = randomize(spec.build(), seed=list(NETS).index(name))
            path = tmp_path_factory.mktemp("exports") / f"{name}_{opset}.onnx"
            proto = export(net, spec.sample, opset, path, spec.free_hw)
            x = np.random.default_rng(opset).standard_normal((BATCH, *spec.sample)).astype(np.float32)
            cache[name, opset] = Exported(net, copy.deepcopy(net).double(), Model(path, provider="cpu"), proto, x)
        return cache[name, opset]

    return get


# --------------------------------------------------------------------------- torch side
def onnx_tensor(model: Model, module: str) -> str:
    """The tensor the classic exporter wrote for ``module``'s output: that of the last node
    in its scope (``blocks.1`` -> nodes named ``/blocks/blocks.1/...``)."""
    parts = module.split(".")
    scope = "".join("/" + ".".join(parts[: i + 1]) for i in range(len(parts))) + "/"
    names = [layer.name for layer in model.layers if layer.node_name.startswith(scope)]
    assert names, f"no node in scope {scope}"
    return names[-1]


def guided_hooks(net: nn.Module) -> list:
    """onnxviz's guided rule in torch: each ReLU-family module passes relu(upstream gradient)
    times its slope clipped at 0 (the slope from torch's own autograd of the function)."""
    def keep_input(module, args):
        module.guided_input = args[0].detach()

    def backward(module, grad_input, grad_output):
        x = module.guided_input.clone().requires_grad_(True)
        with torch.enable_grad():
            (slope,) = torch.autograd.grad(GUIDED[type(module)](x).sum(), x)
        return (grad_output[0].clamp(min=0) * slope.clamp(min=0),)

    handles = []
    for m in net.modules():
        if type(m) in GUIDED:
            handles += [m.register_forward_pre_hook(keep_input), m.register_full_backward_hook(backward)]
    assert handles, "the net has no ReLU-family modules"
    return handles


def torch_gradients(net64: nn.Module, x: np.ndarray, targets: np.ndarray, tap: str | None = None,
                    guided: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(d/d input, output of module ``tap``, d/d that output) of sum_i logit[i, targets[i]], float64."""
    kept = {}

    def keep(module, args, out):
        out.retain_grad()
        kept["a"] = out

    handles = guided_hooks(net64) if guided else []
    if tap is not None:
        handles.append(net64.get_submodule(tap).register_forward_hook(keep))
    try:
        inp = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        logits(net64, inp)[torch.arange(len(x)), torch.from_numpy(targets)].sum().backward()
    finally:
        for h in handles:
            h.remove()
    if tap is None:
        return inp.grad.numpy(), None, None
    return inp.grad.numpy(), kept["a"].detach().numpy(), kept["a"].grad.numpy()


def assert_matches(ours: np.ndarray, ref: np.ndarray, smooth: bool, what: str) -> None:
    """The module docstring's measure: few values off by 1e-3 of max |ref| and cosine > 0.999,
    or every value within 1e-5 of max |ref| for nets without kinks."""
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape}, torch {ref.shape}"
    assert np.all(np.isfinite(ours)), f"{what}: not finite"
    ours = ours.astype(np.float64)
    scale = np.abs(ref).max()
    assert scale > 0, f"{what}: torch's reference is all zeros"
    err = np.abs(ours - ref)
    bad = np.mean(err > 1e-3 * scale)
    cosine = np.sum(ours * ref) / (np.linalg.norm(ours) * np.linalg.norm(ref))
    if smooth:
        assert err.max() < 1e-5 * scale, f"{what}: max error {err.max() / scale:.2e} of max |ref|"
    assert bad < 0.01 and cosine > 0.999, f"{what}: {bad:.4f} off, cos {cosine:.6f}"


# --------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("name, opset", CASES, ids=IDS)
def test_export_has_the_patterns(exported, name: str, opset: int) -> None:
    """The exporter wrote the ops each case is about (and e.g. did not fold the post-Add BN)."""
    ops = {node.op_type for node in exported(name, opset).proto.graph.node}
    missing = NETS[name].required - ops
    assert not missing, f"{name} opset {opset}: no {sorted(missing)} in {sorted(ops)}"
    for op, present in OPSET_OPS.get((name, opset), {}).items():
        assert (op in ops) == present, f"{name} opset {opset}: {op} {'missing' if present else 'present'}"


@pytest.mark.parametrize("name, opset", CASES, ids=IDS)
def test_forward_matches_torch(exported, name: str, opset: int) -> None:
    e = exported(name, opset)
    with torch.no_grad():
        ref = logits(e.net, torch.from_numpy(e.x)).numpy()
        out = e.net(torch.from_numpy(e.x)).numpy()
    np.testing.assert_allclose(e.model.logits(e.x), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(e.model.run(e.x), out, rtol=1e-4, atol=1e-5 * np.abs(out).max())


@pytest.mark.parametrize("name, opset", CASES, ids=IDS)
def test_input_gradient_matches_torch_autograd(exported, name: str, opset: int) -> None:
    e = exported(name, opset)
    targets = np.argmax(e.model.logits(e.x), axis=1)
    ours = e.model.gradient(e.x, targets)
    ref, _, _ = torch_gradients(e.net64, e.x, targets)
    assert_matches(ours, ref, NETS[name].smooth, f"{name} opset {opset} d logit / d input")


# Guided backprop of the nets with ReLU-family units. At opset 13 torch exports Hardswish as
# x * HardSigmoid(x); the driver fuses the pair back into one HardSwish for guided rules.
@pytest.mark.parametrize("name, opset", [("mobilenetv3", 13), ("mobilenetv3", 18), ("resnet", 17), ("keras", 17)],
                         ids=["mobilenetv3-opset13", "mobilenetv3-opset18", "resnet-opset17", "keras-opset17"])
def test_guided_matches_torch_hooks(exported, name: str, opset: int) -> None:
    e = exported(name, opset)
    targets = np.argmax(e.model.logits(e.x), axis=1)
    ours = e.model.gradient(e.x, targets, mode="guided")
    ref, _, _ = torch_gradients(e.net64, e.x, targets, guided=True)
    plain, _, _ = torch_gradients(e.net64, e.x, targets)
    assert np.linalg.norm(ref - plain) > 0.1 * np.linalg.norm(plain), "guided equals plain: hooks inactive?"
    assert_matches(ours, ref, False, f"{name} opset {opset} guided")


@pytest.mark.parametrize("mode", ["guided", "deconvnet"])
def test_guided_maps_do_not_depend_on_how_hardswish_was_exported(exported, mode: str) -> None:
    """The same weights exported at opsets 13 (x * HardSigmoid(x)) and 18 (HardSwish)."""
    old, new = exported("mobilenetv3", 13), exported("mobilenetv3", 18)
    assert "HardSwish" not in {n.op_type for n in old.proto.graph.node}
    targets = np.argmax(new.model.logits(new.x), axis=1)
    a = old.model.gradient(new.x, targets, mode=mode)
    b = new.model.gradient(new.x, targets, mode=mode)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max())


@pytest.mark.parametrize("name, opset", CASES, ids=IDS)
def test_intermediate_gradient_matches_retain_grad(exported, name: str, opset: int) -> None:
    e, spec = exported(name, opset), NETS[name]
    tensor = onnx_tensor(e.model, spec.tap)
    targets = np.argmax(e.model.logits(e.x), axis=1)
    _, value, ref = torch_gradients(e.net64, e.x, targets, tap=spec.tap)
    # the tensor is the module's output: same values
    ours_value = e.model.activations(e.x, [tensor])[tensor]
    np.testing.assert_allclose(ours_value, value, rtol=1e-4, atol=1e-5 * np.abs(value).max())
    ours = e.model.gradient(e.x, targets, wrt=tensor)
    assert_matches(ours, ref, spec.smooth, f"{name} opset {opset} d logit / d {tensor}")


@pytest.mark.parametrize("name, opset", CASES, ids=IDS)
def test_grad_cam_matches_torch(exported, name: str, opset: int) -> None:
    """The default layer is the last spatial feature map before the head, and Grad-CAM on it is
    ReLU(sum_k mean_ij(dlogit/dA_kij) A_k) from torch's A and gradient."""
    e, spec = exported(name, opset), NETS[name]
    layer = default_cam_layer(e.model)
    assert layer == onnx_tensor(e.model, spec.cam)
    ours = grad_cam(e.model, e.x)
    targets = np.argmax(e.model.logits(e.x), axis=1)
    _, a, g = torch_gradients(e.net64, e.x, targets, tap=spec.cam)
    if spec.nhwc_cam:
        a, g = np.moveaxis(a, 3, 1), np.moveaxis(g, 3, 1)
    ref = np.maximum(np.einsum("nk,nkhw->nhw", g.mean(axis=(2, 3)), a), 0.0)
    assert ours.shape == (BATCH, *a.shape[2:]) and ref.max() > 0
    assert_matches(ours, ref, spec.smooth, f"{name} opset {opset} Grad-CAM on {layer}")


@pytest.mark.parametrize("size", [(32, 32), (48, 40)])
def test_nhwc_input_layout_and_free_image_size(exported, size: tuple[int, int]) -> None:
    """The Keras-style export is seen as NHWC from its input alone, and its gradients come back
    shaped like the input, at the exported size and at another one (free H and W)."""
    e = exported("keras", 17)
    assert e.model.input.layout == "NHWC"
    assert e.model.ends_in_softmax
    x = np.random.default_rng(size[0]).standard_normal((BATCH, *size, 3)).astype(np.float32)
    targets = np.argmax(e.model.logits(x), axis=1)
    ours = e.model.gradient(x, targets)
    ref, _, _ = torch_gradients(e.net64, x, targets)
    assert ours.shape == x.shape
    assert_matches(ours, ref, False, f"keras {size} d logit / d input")


# --------------------------------------------------------------------------- shape plumbing
class ShuffleUnit(nn.Module):
    """ShuffleNetV2's stride-1 unit as torchvision writes it: chunk, branch, concat, shuffle."""

    def __init__(self, c: int, use_chunk: bool = True):
        super().__init__()
        self.use_chunk, self.half = use_chunk, c // 2
        self.branch = nn.Sequential(conv_bn(c // 2, c // 2, 1, act=nn.ReLU), conv_bn(c // 2, c // 2, 3, groups=c // 2),
                                    conv_bn(c // 2, c // 2, 1, act=nn.ReLU))

    def forward(self, x):
        a, b = x.chunk(2, dim=1) if self.use_chunk else x.split([self.half, self.half], dim=1)
        x = torch.cat([a, self.branch(b)], 1)
        n, c, h, w = x.size()
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)


class Plumbing(nn.Module):
    """stem -> ``body`` -> conv 3x3/2 -> max pool 3x3/2 -> mean -> linear: the strided conv and
    the pool need static spatial sizes for their gradients."""

    def __init__(self, body: nn.Module, same_pad: bool = False):
        super().__init__()
        # TF "same" padding the way efficientnet-pytorch and timm write it
        self.pad = nn.ZeroPad2d((0, 1, 0, 1)) if same_pad else nn.Identity()
        self.stem = conv_bn(3, 16, 3, act=nn.ReLU)
        self.body = body
        self.down = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.down(self.body(self.stem(self.pad(x)))).mean((2, 3)))


@pytest.mark.parametrize("body, same_pad, opset", [
    pytest.param("split", False, 17, id="shuffle-opset17"),
    pytest.param("split", False, 13, id="shuffle-opset13"),
    pytest.param("chunk", False, 17, id="chunk-opset17"),
    pytest.param("split", True, 17, id="zero-pad-opset17"),
])
def test_dynamic_shape_plumbing(tmp_path, body: str, same_pad: bool, opset: int) -> None:
    """Exports whose shapes pass through Shape-computing subgraphs: chunk (Slice ends from
    Shape/Div), nn.ZeroPad2d (pads from a ConstantOfShape/Reshape/Slice/Transpose/Cast chain),
    a ShuffleNet channel shuffle (view from Shape/Gather/Div/Cast).

    onnx's shape inference leaves the dims after these subgraphs unknown (its data
    propagation stops at the Div, the ConstantOfShape chain, the Cast), and strided gradient
    rules need them: this passes through ``graph.load``'s symbolic-inference fallback.
    """
    net = randomize(Plumbing(ShuffleUnit(16, use_chunk=body == "chunk"), same_pad), seed=7)
    export(net, (3, 32, 32), opset, tmp_path / "net.onnx")
    model = Model(tmp_path / "net.onnx", provider="cpu")
    x = np.random.default_rng(0).standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model.logits(x), net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    targets = np.argmax(model.logits(x), axis=1)
    ours = model.gradient(x, targets)
    ref, _, _ = torch_gradients(copy.deepcopy(net).double(), x, targets)
    assert_matches(ours, ref, False, f"{body} pad={same_pad} opset {opset}")
