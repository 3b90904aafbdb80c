"""The graph layer on the nine real CNNs of onnx's backend test data (random weights, see tests/zoo.py).

For each model: expose every intermediate tensor, check that the final output
does not change under onnxruntime and that every exposed tensor matches
``onnx.reference.ReferenceEvaluator`` on the unmodified model; check that the
opset-17 conversion computes the same function; and check the layer list and
receptive fields against published values.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from fixtures import ort_run
from onnxviz.graph.info import image_input, opset_version, parameter_count
from onnxviz.graph.layers import list_layers
from onnxviz.graph.rewrite import expose, prune
from zoo import ZOO_NAMES, load_zoo, zoo_input, zoo_path

# Every test of these is marked slow: the reference evaluator's pooling is a python loop per
# output element (5-9 s on the inceptions), and VGG-19's 144M weights take seconds to
# generate, serialise and load into each session.
SLOW = {"inception_v1", "inception_v2", "vgg19"}

PARAMETERS = {  # published parameter counts, which the random weights must reproduce exactly
    "bvlc_alexnet": 60_965_224,  # Caffe's BVLC AlexNet (grouped convolutions)
    "resnet50": 25_557_032 + 53_120,  # torchvision's count + the BN running means and variances
    "vgg19": 143_667_240,
    "squeezenet": 1_235_496,  # SqueezeNet 1.1
}


class LRN(OpRun):
    """LRN as the spec defines it (window over channels).

    onnx 1.23's reference LRN loops over the batch axis instead of the
    channels (onnx/onnx#7805, fixed after 1.23 by onnx/onnx#8331), so for a
    batch of 1 it normalises channel 0 only.
    """

    op_domain = ""

    def _run(self, x, alpha=None, beta=None, bias=None, size=None):
        squares = np.square(x.astype(np.float64))
        below, above = (size - 1) // 2, -(-(size - 1) // 2)
        padded = np.pad(squares, [(0, 0), (below, above)] + [(0, 0)] * (x.ndim - 2))
        window = sum(padded[:, i : i + x.shape[1]] for i in range(size))
        return ((x / (bias + alpha / size * window) ** beta).astype(x.dtype),)


class BatchNormalization(OpRun):
    """Inference-mode BatchNormalization (a single output), from the spec's formula.

    onnx 1.23's reference BatchNormalization-9 picks training mode whenever
    ``momentum`` is set, and the schema default (0.9) always sets it, so it
    normalises with batch statistics (open fix: onnx/onnx#8442).
    """

    op_domain = ""

    def _run(self, x, scale, bias, mean, var, epsilon=1e-5, **_):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        scale, bias, mean, var = (np.reshape(a, shape) for a in (scale, bias, mean, var))
        return ((scale * (x - mean) / np.sqrt(var + epsilon) + bias).astype(x.dtype),)


class Softmax(OpRun):
    """Softmax with the pre-13 semantics: the input is flattened to 2-D at ``axis``.

    onnx 1.23's reference applies the opset-13 definition (one axis) at every
    opset, so squeezenet's Softmax(axis=1) over [1, 1000, 1, 1] gives all ones.
    """

    op_domain = ""

    def _run(self, x, axis=None):  # noqa: ARG002 - read from the node itself
        legacy = self.run_params["opsets"].get("", 13) < 13
        declared = [a.i for a in self.onnx_node.attribute if a.name == "axis"]
        # the evaluator fills a missing axis from the latest schema (-1): use the node's own default
        axis = declared[0] if declared else (1 if legacy else -1)
        shape = x.shape
        if legacy:
            x = x.reshape(int(np.prod(shape[:axis])), -1)
            axis = 1
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return ((e / e.sum(axis=axis, keepdims=True)).reshape(shape).astype(x.dtype),)


# Reference ops replaced by spec-conformant versions (see their docstrings).
REFERENCE_FIXES = [LRN, BatchNormalization, Softmax]


def zoo_params(names=ZOO_NAMES):
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in names]


@functools.lru_cache(maxsize=None)
def plain_output(name: str) -> np.ndarray:
    """onnxruntime's output of the unmodified model on ``zoo_input`` (cached: VGG's session takes seconds)."""
    model = load_zoo(name)
    return ort_run(model, zoo_input(model))[0]


def assert_close(name: str, value: np.ndarray, expected: np.ndarray, rtol: float = 1e-3) -> None:
    """``rtol``, with an absolute tolerance scaled to the tensor's magnitude."""
    assert value.shape == expected.shape, name
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(value, expected, rtol=rtol, atol=rtol / 10 * max(scale, 1e-6), err_msg=name)


@pytest.mark.parametrize("name", zoo_params())
def test_exposing_every_tensor(name):
    model = load_zoo(name)
    feeds = zoo_input(model)
    names = [out for node in model.graph.node for out in node.output if out]
    # Dropout-7's inference-mode mask is unspecified: onnxruntime returns 0s, the reference 1s
    masks = {node.output[1] for node in model.graph.node if node.op_type == "Dropout" and len(node.output) > 1}
    exposed = expose(model, names)
    if parameter_count(exposed) < 16_000_000:  # the checker serialises the model: skip it for VGG-sized weights
        onnx.checker.check_model(exposed)
    got = dict(zip([o.name for o in exposed.graph.output], ort_run(exposed, feeds)))
    final = model.graph.output[0].name
    # exposing tensors stops some onnxruntime fusions (Conv+BN+Relu...): float rounding may move
    assert_close(final, got[final], plain_output(name), rtol=1e-4)
    reference = ReferenceEvaluator(model, new_ops=REFERENCE_FIXES).run(None, feeds, intermediate=True)
    for tensor in names:
        if tensor in masks:
            continue
        assert_close(tensor, got[tensor], np.asarray(reference[tensor]))


@pytest.mark.parametrize("name", zoo_params())
def test_opset_17_conversion_is_equivalent(name):
    original, converted = load_zoo(name), load_zoo(name, opset=17)
    assert len(converted.graph.initializer) == len(original.graph.initializer)
    onnx.checker.check_model(converted)
    assert opset_version(converted) == 17 and converted.ir_version == 8
    assert_close("output", ort_run(converted, zoo_input(original))[0], plain_output(name), rtol=1e-4)


@pytest.mark.parametrize("name", zoo_params())
def test_zoo_models_are_clean(name):
    model = load_zoo(name)
    onnx.checker.check_model(model)
    assert not [n for n in model.graph.node if n.op_type == "ConstantOfShape"]
    assert [i.name for i in model.graph.input] == [image_input(model).name]
    assert image_input(model).shape == (1, 3, 224, 224)
    count = parameter_count(model)
    assert count == sum(int(np.prod(i.dims)) for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
    if name in PARAMETERS:
        assert count == PARAMETERS[name]
    # placeholders are counted by their shape (the file's unused initializers are pruned here)
    assert count == parameter_count(prune(onnx.load(zoo_path(name))))


def test_weights_are_seeded():
    a, b, c = load_zoo("squeezenet"), load_zoo("squeezenet"), load_zoo("squeezenet", seed=1)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.SerializeToString() != c.SerializeToString()
    a.graph.node.pop()  # callers get copies: the cache stays intact
    assert len(load_zoo("squeezenet").graph.node) == len(b.graph.node)


def test_outputs_are_not_saturated():
    # random weights must keep activations O(1): a softmax that is one-hot has no gradient
    for name in ("resnet50", "shufflenet", "squeezenet", "zfnet512"):
        model = load_zoo(name)
        prob = ort_run(model, zoo_input(model))[0]
        assert prob.max() < 0.5, name


# Receptive field (size, jump) of the last spatial layer, computed by hand from the architectures.
LAST_FIELDS = {
    "bvlc_alexnet": ("MaxPool", 195, 32),
    "vgg19": ("MaxPool", 268, 32),  # conv5_4: 252, + pool5
    "zfnet512": ("MaxPool", 155, 32),
    # Caffe2's ResNet-50 strides in the 3x3 convs ("v1.5"): 427 at res5 (483 with the
    # stride in the 1x1 convs), then the 7x7 average pool
    "resnet50": ("AveragePool", 427 + 6 * 32, 32),
    "squeezenet": ("Relu", 207, 16),
}


@pytest.mark.parametrize("name", zoo_params())
def test_layers_and_receptive_fields(name):
    model = load_zoo(name)
    layers = list_layers(model)
    names = [l.name for l in layers]
    assert len(names) == len(set(names))
    computed = {out for node in model.graph.node for out in node.output if out}
    assert set(names) <= computed
    spatial = [l for l in layers if l.receptive_field is not None]
    # everything up to the head is spatial; jumps grow to the network's total stride
    assert len(spatial) >= len(layers) - 12
    assert max(l.receptive_field.jump[0] for l in spatial) in (16, 32)
    for layer in spatial:
        field = layer.receptive_field
        assert field.size[0] == field.size[1] and field.jump[0] == field.jump[1]
        assert len(layer.shape) in (4, 5)  # shufflenet's channel shuffle is 5-D
    if name in LAST_FIELDS:
        op, size, jump = LAST_FIELDS[name]
        last = spatial[-1]
        assert (last.op_type, last.receptive_field.size[0], last.receptive_field.jump[0]) == (op, size, jump)
