"""The nine real CNNs that ship with onnx's backend tests, with random weights.

The files under ``onnx/backend/test/data/light/`` are the real architectures
(Caffe2 exports, opset 9, IR 3) with their weights stripped: each weight is
a ``ConstantOfShape`` node filling a constant shape with 0.02. ``load_zoo``
replaces those by seeded random initializers scaled so activations stay
O(1), so that tests see realistic, non-degenerate numbers.
"""

from __future__ import annotations

import functools
import os
import zlib

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from onnxviz.graph._nodes import image_dependent
from onnxviz.graph.load import fix_ir_version
from onnxviz.graph.rewrite import prune

ZOO_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
ZOO_NAMES = (
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
)

# Ops a weight can flow through on its way to the op that uses it.
_PASS_THROUGH = {"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Transpose", "Identity"}


def zoo_path(name: str) -> str:
    """Path of a zoo model's .onnx file."""
    if name not in ZOO_NAMES:
        raise ValueError(f"unknown zoo model {name!r}; pick one of {', '.join(ZOO_NAMES)}")
    return os.path.join(ZOO_DIR, f"light_{name}.onnx")


def load_zoo(name: str, seed: int = 0, opset: int | None = None) -> onnx.ModelProto:
    """A zoo model with seeded random weights, optionally converted to another opset.

    Args:
        name: one of :data:`ZOO_NAMES`.
        seed: weights depend only on (seed, tensor name).
        opset: convert with ``onnx.version_converter`` to this default-domain
            opset; None keeps the file's opset 9. A converted model gets the
            unconverted one's weights, so both compute the same function.

    Returns:
        A fresh copy (callers may modify it) of the cached model.
    """
    model = onnx.ModelProto()
    model.CopyFrom(_load_zoo(name, seed, opset))
    return model


@functools.lru_cache(maxsize=None)
def _load_zoo(name: str, seed: int, opset: int | None) -> onnx.ModelProto:
    if opset is None:
        model = onnx.load(zoo_path(name))
        _materialise_weights(model, seed)
    else:
        # convert the file while its weights are tiny placeholders (much cheaper),
        # then take the weights of the unconverted model: the same function, for comparisons
        model = version_converter.convert_version(onnx.load(zoo_path(name)), opset)
        _use_weights(model, _load_zoo(name, seed, None))
    _drop_shadowing_inputs(model)
    model = prune(fix_ir_version(model))
    if opset is None:
        _calibrate_classifier(model)
    return model


def _use_weights(model: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """Replace placeholders and initializers by ``source``'s initializers of the same names."""
    weights = {init.name: init for init in source.graph.initializer}
    placeholders = {n.output[0] for n in model.graph.node if n.op_type == "ConstantOfShape" and n.output[0] in weights}
    kept = [node for node in model.graph.node if node.output[0] not in placeholders]
    initializers = [weights.get(init.name, init) for init in model.graph.initializer]
    initializers += [weights[name] for name in placeholders]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)


def _materialise_weights(model: onnx.ModelProto, seed: int) -> None:
    """Replace weight placeholders, and BN statistics, by seeded random initializers.

    Placeholders are ConstantOfShape nodes with a constant shape. The few real
    BatchNormalization parameters some files keep are replaced too: trained
    statistics do not match random convolutions, and some variances are 0
    (dead channels), which would amplify random inputs 300-fold.
    """
    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))
    residual = _residual_scales(graph)
    shapes = {
        node.output[0]: tuple(int(d) for d in numpy_helper.to_array(constants[node.input[0]]))
        for node in graph.node
        if node.op_type == "ConstantOfShape" and node.input[0] in constants
    }
    for node in graph.node:
        if node.op_type == "BatchNormalization":
            shapes.update((name, tuple(constants[name].dims)) for name in node.input[1:5] if name in constants)
    replaced = []
    for name, shape in shapes.items():
        role, fan_in = _role(name, shape, consumers)
        if role in ("bn1", "scale") and name in residual:
            role = "residual"
        replaced.append(numpy_helper.from_array(_random(role, shape, fan_in, seed, name), name))
    kept_nodes = [node for node in graph.node if node.output[0] not in shapes]
    kept_inits = [init for init in graph.initializer if init.name not in shapes]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + replaced)


def _residual_scales(graph: onnx.GraphProto) -> set[str]:
    """Scales (BN gamma, or a Mul's other input) of the branches added into a residual Sum/Add.

    With random weights nothing normalises activations, so each residual sum
    x + f(x) doubles their variance; small gammas on f keep a ResNet's
    activations O(1) (as zero-initialised residual gammas do in training).
    When every branch of a sum ends in a BN, the first keeps its normal scale.
    """
    producers = {name: node for node in graph.node for name in node.output}
    weights = {init.name for init in graph.initializer}
    image = next(info.name for info in graph.input if info.name not in weights)
    dependent = image_dependent(graph, image)
    found: set[str] = set()
    for node in graph.node:
        maps = [name for name in node.input if name in dependent]
        if node.op_type not in ("Sum", "Add") or len(maps) < 2:
            continue
        scales = [_branch_scale(name, producers) for name in maps]
        branch = [scale for scale in scales if scale is not None]
        if len(branch) == len(scales):
            branch = branch[1:]
        found.update(branch)
    return found


def _branch_scale(name: str, producers: dict[str, onnx.NodeProto]) -> str | None:
    """The scale tensor of the BN that ends the branch producing ``name`` (through ReLU-like ops)."""
    for _ in range(4):
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type == "BatchNormalization":
            return node.input[1]
        if node.op_type in ("Relu", "Identity", "Add"):  # Add: a post-BN shift (densenet style)
            name = node.input[0]
            continue
        if node.op_type == "Mul":  # a post-BN scale (densenet style): scale that instead
            return _source(node.input[1], producers)
        return None
    return None


def _source(name: str, producers: dict[str, onnx.NodeProto]) -> str:
    """The tensor a weight comes from, before reshapes and unsqueezes."""
    while name in producers and producers[name].op_type in _PASS_THROUGH:
        name = producers[name].input[0]
    return name


def _role(name: str, shape: tuple[int, ...], consumers: dict) -> tuple[str, int]:
    """What a weight is used as, following reshapes, and its fan-in.

    Roles: "conv", "gemm", "bias", "bn1".."bn4" (BN input index), "scale", "shift", "other".
    """
    for _ in range(4):
        users = consumers.get(name, [])
        if len(users) != 1:
            break
        node, index = users[0]
        if node.op_type in _PASS_THROUGH and index == 0:
            name = node.output[0]
            continue
        if node.op_type in ("Conv", "ConvTranspose") and index == 1:
            return "conv", int(np.prod(shape[1:]))
        if node.op_type == "Gemm" and index == 1:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            return "gemm", int(shape[-1] if trans_b else shape[0])
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and index == 2:
            return "bias", 1
        if node.op_type == "BatchNormalization":
            return f"bn{index}", 1
        if node.op_type == "Mul":
            return "scale", 1
        if node.op_type == "Add":
            return "shift", 1
        break
    return "other", 1


def _random(role: str, shape: tuple[int, ...], fan_in: int, seed: int, name: str) -> np.ndarray:
    """Random float32 values for a weight of the given role."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    if role in ("conv", "gemm"):  # He-uniform: keeps the second moment through ReLU layers
        return _uniform(rng, shape, np.sqrt(6.0 / fan_in))
    if role == "residual":  # gamma of a residual branch: small, so sums do not blow up
        return rng.uniform(0.15, 0.3, shape).astype(np.float32)
    if role in ("bn1", "scale"):  # BN gamma, post-BN scale
        return rng.uniform(0.8, 1.2, shape).astype(np.float32)
    if role == "bn4":  # BN running variance: strictly positive
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (rng.standard_normal(shape, dtype=np.float32) * 0.05).astype(np.float32)


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float) -> np.ndarray:
    """Uniform float32 in (-bound, bound) on 65536 levels: ~5x faster than rng.uniform
    for VGG's 100M-element fc6, and fine-grained enough for test weights."""
    count = int(np.prod(shape))
    values = np.frombuffer(rng.bytes(2 * count), dtype="<i2").astype(np.float32)
    values += 0.5
    values *= bound / 32768.0
    return values.reshape(shape)


def _drop_shadowing_inputs(model: onnx.ModelProto) -> None:
    """Make initializers constants: IR 3 listed every one as an overridable graph input,
    which stops onnxruntime from folding or fusing them."""
    names = {init.name for init in model.graph.initializer}
    kept = [info for info in model.graph.input if info.name not in names]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    fix_ir_version(model)  # IR >= 4 lets initializers be absent from the inputs


# Ops between the classifier's linear layer and the logits that scale with it.
_HOMOGENEOUS = {"Reshape", "Flatten", "Squeeze", "Dropout", "Identity", "Relu", "GlobalAveragePool", "AveragePool"}


def _calibrate_classifier(model: onnx.ModelProto, target_rms: float = 2.0) -> None:
    """Scale the last linear layer so the logits of ``zoo_input`` have rms ``target_rms``.

    Random weights leave deep nets' logits at rms 10-100, which saturates
    their softmax to one-hot and kills its gradients. Scaling W and b by c
    scales the logits by c (everything after them is positively homogeneous).
    """
    import onnxruntime as ort

    from onnxviz.graph.rewrite import expose

    graph = model.graph
    producers = {name: node for node in graph.node for name in node.output}
    logits = _logits(graph.output[0].name, producers)
    node = producers.get(logits)
    while node is not None and node.op_type in _HOMOGENEOUS:
        node = producers.get(node.input[0])
    if node is None or node.op_type not in ("Gemm", "Conv"):
        return
    session = ort.InferenceSession(
        expose(model, [logits]).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    values = session.run([logits], zoo_input(model))[0]
    factor = target_rms / float(np.sqrt(np.mean(np.square(values, dtype=np.float64))))
    weights = {init.name: init for init in graph.initializer}
    for name in node.input[1:3]:
        source = _source(name, producers)
        if source in weights:
            scaled = numpy_helper.to_array(weights[source]) * np.float32(factor)
            weights[source].CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), source))


def _logits(name: str, producers: dict[str, onnx.NodeProto]) -> str:
    """The input of the Softmax that makes the output (reshapes skipped), else the output."""
    probe = name
    while probe in producers and producers[probe].op_type in ("Reshape", "Flatten", "Squeeze", "Identity"):
        probe = producers[probe].input[0]
    if probe in producers and producers[probe].op_type == "Softmax":
        return producers[probe].input[0]
    return name


def zoo_input(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """A feed for a zoo model: one random image (N(0, 1), float32) for its only graph input."""
    info = model.graph.input[0]
    shape = [d.dim_value or 1 for d in info.type.tensor_type.shape.dim]
    return {info.name: np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)}
