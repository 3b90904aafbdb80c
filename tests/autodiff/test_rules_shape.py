"""Rules of onnxviz/autodiff/rules/shape.py (Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
Concat, Split, Slice, Gather, GatherElements, Tile) and resample.py (Resize, Upsample, Pad,
DepthToSpace, SpaceToDepth), plus the meta-tests over the four modules conv/pool/resample/shape.

float64 wherever onnxruntime has a double kernel (every shape op, Pad, DepthToSpace,
SpaceToDepth); Resize and Upsample have float kernels only, so their rows run in float32
with the harness's float32 eps and tolerance (resampling is linear: rounding error only).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import helper, numpy_helper

from onnxviz.autodiff import RULES, driver, gradient_model
from onnxviz.graph.load import make_model
from tests.autodiff import test_rules_conv, test_rules_pool
from tests.autodiff.harness import assert_standard_backward, backward_ops, check_op, session, single_op_model
from tests.autodiff.test_rules_elementwise import seeded_rng  # noqa: F401  (autouse fixture)
from tests.autodiff.test_rules_elementwise import case, f32, normal

X = (2, 3, 4, 5)

# onnxruntime logs a deprecation warning per session for tf_half_pixel_for_nn rows
onnxruntime.set_default_logger_severity(3)


def ints(*values):
    return np.array(values, dtype=np.int64)


def slice_case(starts, ends, axes=None, steps=None, name=""):
    inputs = {"x": normal(*X), "starts": ints(*starts), "ends": ints(*ends),
              "axes": None if axes is None else ints(*axes), "steps": None if steps is None else ints(*steps)}
    if steps is None:
        del inputs["steps"]
        if axes is None:
            del inputs["axes"]
    return case("Slice", inputs, wrt=["x"], constants=["starts", "ends", "axes", "steps"],
                id=name or f"Slice-{starts}:{ends}:{steps}@{axes}")


SHAPE_CASES = [
    case("Reshape", {"x": normal(*X), "s": ints(0, -1, 5)}, wrt=["x"], constants=["s"], id="Reshape-0-and-minus1"),
    case("Reshape", {"x": normal(*X), "s": ints(-1, 0, 5)}, wrt=["x"], constants=["s"], id="Reshape-copy-dim"),
    case("Reshape", {"x": normal(2, 0, 3), "s": ints(0, 3, 0)}, wrt=["x"], attrs={"allowzero": 1},
         constants=["s"], id="Reshape-allowzero-empty"),
    case("Flatten", {"x": normal(*X)}, attrs={"axis": 2}),
    case("Flatten", {"x": normal(*X)}, attrs={"axis": -1}, id="Flatten-axis-1"),
    case("Squeeze", {"x": normal(2, 1, 4, 1), "a": ints(1, -1)}, wrt=["x"], constants=["a"]),
    case("Squeeze", {"x": normal(2, 1, 4, 1)}, id="Squeeze-all"),
    case("Unsqueeze", {"x": normal(*X), "a": ints(0, -1)}, wrt=["x"], constants=["a"]),
    case("Transpose", {"x": normal(*X)}, attrs={"perm": [2, 0, 3, 1]}),
    case("Transpose", {"x": normal(*X)}, id="Transpose-reverse"),
    case("Concat", {"a": normal(*X), "b": normal(2, 1, 4, 5), "c": normal(2, 2, 4, 5)}, attrs={"axis": -3}),
    case("Concat", {"a": normal(2, 3), "w": normal(2, 4)}, wrt=["a"], attrs={"axis": 1}, constants=["w"],
         id="Concat-const-part"),
    case("Split", {"x": normal(*X), "s": ints(2, 1, 2)}, wrt=["x"], attrs={"axis": 3}, constants=["s"],
         id="Split-input"),
    case("Split", {"x": normal(*X)}, attrs={"axis": 3, "num_outputs": 3}, opset=18, id="Split-num_outputs"),
    case("Split", {"x": normal(*X)}, attrs={"axis": -3}, id="Split-equal"),
    slice_case([1], [3], [1], [1]),
    slice_case([-1], [-10 ** 9], [3], [-1], name="Slice-reverse-all"),
    slice_case([4, 0], [0, 10], [3, 2], [-2, 3], name="Slice-neg-step-and-clamp"),
    slice_case([0], [5], [3], [2], name="Slice-step2"),
    slice_case([-2, 1], [10 ** 10, -1], [2, 3], name="Slice-clamped-no-steps"),
    slice_case([3], [-6], [3], [-1], name="Slice-neg-step-clamped-end"),
    slice_case([0, 1, 1], [1, 3, 4], name="Slice-default-axes"),
    case("Gather", {"x": normal(*X), "i": ints(2, 0, -1, 2).reshape(2, 2)}, wrt=["x"], attrs={"axis": 1},
         constants=["i"], id="Gather-repeated-negative"),
    case("Gather", {"x": normal(*X), "i": np.array(1)}, wrt=["x"], attrs={"axis": 3}, constants=["i"],
         id="Gather-scalar-index"),
    case("Gather", {"x": normal(*X), "i": ints(2, 0, -1, 2).reshape(2, 2)}, wrt=["x"], attrs={"axis": 1},
         constants=["i"], opset=15, id="Gather-opset15-onehot"),
    case("Gather", {"x": normal(*X), "i": ints(1, 1, 0)}, wrt=["x"], constants=["i"], opset=13,
         id="Gather-opset13-axis0"),
    case("GatherElements", {"x": normal(*X), "i": np.random.default_rng(0).integers(-4, 4, (2, 3, 6, 5))},
         wrt=["x"], attrs={"axis": 2}, constants=["i"]),
    case("Tile", {"x": normal(*X), "r": ints(1, 2, 1, 3)}, wrt=["x"], constants=["r"]),
]


def resize(mode, scales=None, sizes=None, shape=(2, 3, 5, 7), opset=17, roi=None, **attrs):
    inputs = {"x": f32(normal(*shape)), "roi": roi,
              "scales": None if scales is None else np.asarray(scales, dtype=np.float32)}
    if sizes is not None:
        inputs["sizes"] = ints(*sizes)
    label = f"Resize-{mode}-" + (f"scales{list(scales)}" if scales is not None else f"sizes{list(sizes)}")
    label += "".join(f"-{k}{v}" for k, v in attrs.items())
    return case("Resize", inputs, wrt=["x"], attrs={"mode": mode, **attrs}, opset=opset,
                constants=["roi", "scales", "sizes"], id=label)


CTMS = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn"]
RESAMPLE_CASES = [
    resize("nearest", scales=[1, 1, 2, 2]),
    resize("nearest", scales=[1, 1, 2, 3], coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    resize("nearest", sizes=[2, 3, 9, 4]),  # a rounding tie onnxruntime 1.31 breaks away from its float32 formula
    resize("nearest", scales=[1, 1, 1.5, 0.6], coordinate_transformation_mode="half_pixel_symmetric", opset=19),
    resize("linear", scales=[1, 1, 2, 2]),
    resize("linear", sizes=[2, 3, 10, 14]),
    resize("linear", scales=[1, 1, 1.5, 0.6], coordinate_transformation_mode="pytorch_half_pixel"),
    resize("linear", sizes=[2, 3, 9, 4], coordinate_transformation_mode="align_corners"),
    resize("linear", scales=[1, 1, 0.6, 0.5], antialias=1, opset=18),
    resize("linear", sizes=[9, 4], axes=[2, 3], opset=18),
    resize("linear", sizes=[2, 3, 4, 6], coordinate_transformation_mode="tf_crop_and_resize",
           roi=np.array([0, 0, 0.1, 0.2, 1, 1, 0.9, 1.1], np.float32), extrapolation_value=2.0),
    resize("cubic", scales=[1, 1, 2, 1.5]),
    resize("cubic", sizes=[2, 3, 8, 9], exclude_outside=1, cubic_coeff_a=-0.5),
    resize("nearest", scales=[1, 2, 1.5], shape=(2, 5, 4)),
    resize("linear", scales=[1, 1, 2, 1.5, 0.8], shape=(1, 2, 3, 4, 5)),
    *[resize(mode, scales=[1, 1, 1.5, 0.75], coordinate_transformation_mode=ctm, nearest_mode=nm)
      for ctm in CTMS for mode, nm in [("nearest", "round_prefer_ceil"), ("nearest", "floor"),
                                       ("nearest", "ceil"), ("linear", "round_prefer_floor")]],
    *[case("Pad", {"x": normal(*X), "pads": ints(*pads)}, wrt=["x"], attrs={"mode": mode},
           constants=["pads"], opset=19 if mode == "wrap" else 17, id=f"Pad-{mode}-{pads}")
      for mode in ("constant", "reflect", "edge", "wrap")
      for pads in ([0, 0, 1, 2, 0, 0, 2, 1], [0, 1, 3, 0, 1, 0, 0, 3], [0, 0, -1, 2, 0, 0, 1, -2])],
    case("Pad", {"x": normal(*X), "pads": ints(0, 0, 4, 5, 0, 0, 4, 5)}, wrt=["x"], attrs={"mode": "wrap"},
         constants=["pads"], opset=19, id="Pad-wrap-beyond-length"),
    case("Pad", {"x": normal(*X), "pads": ints(0, 0, 1, 2, 0, 0, 2, 1), "v": np.array([0.7])},
         wrt=["x", "v"], attrs={"mode": "constant"}, constants=["pads"], id="Pad-constant-value-grad"),
    case("Pad", {"x": normal(*X), "pads": ints(1, 2, 2, 1), "v": None, "axes": ints(1, -1)}, wrt=["x"],
         attrs={"mode": "reflect"}, constants=["pads", "axes"], opset=18, id="Pad-axes"),
    case("DepthToSpace", {"x": normal(2, 8, 3, 4)}, attrs={"blocksize": 2}, id="DepthToSpace-DCR"),
    case("DepthToSpace", {"x": normal(2, 18, 3, 4)}, attrs={"blocksize": 3, "mode": "CRD"}, id="DepthToSpace-CRD"),
    case("SpaceToDepth", {"x": normal(2, 3, 4, 6)}, attrs={"blocksize": 2}),
]

CASES = SHAPE_CASES + RESAMPLE_CASES


@pytest.mark.parametrize("op, inputs, wrt, attrs, opset, constants", CASES)
def test_rule_directional_derivative(op, inputs, wrt, attrs, opset, constants) -> None:
    check_op(op, inputs, wrt, attrs, constants=constants, opset=opset,
             n_outputs=3 if op == "Split" else 1, output="y1" if op == "Split" else "y0", seeds=(0,))


# --- hand computations ----------------------------------------------------------------------


def _vjp(model, feeds, wrt, seed, output=None):
    gg = gradient_model(model, wrt=wrt, output=output)
    return session(gg.model).run([gg.gradients[w] for w in wrt], {**feeds, gg.seed: seed})


def test_split_outputs_without_gradient_get_zeros() -> None:
    x = normal(2, 6)
    model = single_op_model("Split", {"x": x}, {"axis": 1, "num_outputs": 3}, n_outputs=3, opset=18)
    dy = normal(2, 2)
    (dx,) = _vjp(model, {"x": x}, ["x"], dy, output="y1")
    np.testing.assert_array_equal(dx, np.concatenate([np.zeros((2, 2)), dy, np.zeros((2, 2))], axis=1))


def test_slice_negative_step_writes_back_reversed() -> None:
    x = np.arange(6.0).reshape(1, 6)
    model = single_op_model("Slice", {"x": x, "s": ints(4), "e": ints(-10), "a": ints(1), "p": ints(-2)},
                            constants=["s", "e", "a", "p"])
    (dx,) = _vjp(model, {"x": x}, ["x"], np.array([[10.0, 20.0, 30.0]]))  # reads x[4], x[2], x[0]
    np.testing.assert_array_equal(dx, [[30.0, 0, 20.0, 0, 10.0, 0]])


def test_gather_repeated_indices_add_up() -> None:
    x = normal(4, 2)
    model = single_op_model("Gather", {"x": x, "i": ints(1, 3, 1, -3)}, constants=["i"])
    (dx,) = _vjp(model, {"x": x}, ["x"], np.ones((4, 2)))
    np.testing.assert_array_equal(dx, [[0, 0], [3, 3], [0, 0], [1, 1]])


def test_pad_edge_sums_the_strips_into_the_border() -> None:
    x = np.arange(3.0).reshape(1, 3)
    model = single_op_model("Pad", {"x": x, "p": ints(0, 2, 0, 1)}, {"mode": "edge"}, constants=["p"])
    (dx,) = _vjp(model, {"x": x}, ["x"], np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]))
    np.testing.assert_array_equal(dx, [[1 + 2 + 3, 4, 5 + 6]])


def test_nearest_upsampling_is_summed_over_blocks() -> None:
    """An integer nearest upsampling needs no matrix: each input sums its s x s block of dY."""
    x = f32(normal(1, 2, 3, 4))
    model = single_op_model("Resize", {"x": x, "roi": None, "scales": f32([1, 1, 2, 2])}, {"mode": "nearest"},
                            constants=["scales"])
    assert [n.op_type for n in backward_ops(model, ["x"])] == ["Reshape", "ReduceSum", "Identity"]
    dy = f32(normal(1, 2, 6, 8))
    (dx,) = _vjp(model, {"x": x}, ["x"], dy)
    np.testing.assert_allclose(dx, dy.reshape(1, 2, 3, 2, 4, 2).sum(axis=(3, 5)), rtol=1e-6)


@pytest.mark.parametrize("mode, align", [("nearest", None), ("linear", False), ("linear", True)])
def test_resize_matches_torch_interpolate(mode, align) -> None:
    torch = pytest.importorskip("torch")
    x = f32(normal(1, 2, 5, 7))
    attrs = {"mode": mode}
    if mode == "nearest":
        attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        attrs["coordinate_transformation_mode"] = "align_corners" if align else "pytorch_half_pixel"
    model = single_op_model("Resize", {"x": x, "roi": None, "scales": None, "sizes": ints(1, 2, 9, 12)}, attrs,
                            constants=["sizes"])
    dy = f32(normal(1, 2, 9, 12))
    (dx,) = _vjp(model, {"x": x}, ["x"], dy)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, size=(9, 12), mode="nearest" if mode == "nearest" else "bilinear",
                                         align_corners=align)
    np.testing.assert_allclose(ty.detach().numpy(), session(model).run(None, {"x": x})[0], atol=1e-5)
    ty.backward(torch.from_numpy(dy.astype(np.float64)))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-5)


def _resize_to_run_time_sizes(mode: str, batch_factor: int = 1) -> onnx.ModelProto:
    """torch's ``interpolate(x, size=(9, 12))`` with a dynamic batch: sizes =
    Concat(Shape(x)[:2] (the batch times ``batch_factor``), [9, 12]), so shape inference
    knows the output's spatial dims but not its batch (``unk__0``)."""
    d = onnx.TensorProto.FLOAT
    attrs = ({"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"} if mode == "nearest"
             else {"coordinate_transformation_mode": "pytorch_half_pixel"})
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "two"], ["nc"]),
        helper.make_node("Mul", ["nc", "factor"], ["nc2"]),
        helper.make_node("Concat", ["nc2", "hw"], ["sizes"], axis=0),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode, **attrs),
    ]
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", d, ["N", 2, 5, 7])], [helper.make_tensor_value_info("y", d, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in
                     [("zero", ints(0)), ("two", ints(2)), ("factor", ints(batch_factor, 1)), ("hw", ints(9, 12))]])
    return make_model(graph, opset=17)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_to_run_time_sizes_with_a_free_batch(mode) -> None:
    """The FPN/U-Net upsampling ``interpolate(top, size=lateral.shape[-2:])`` of a dynamic-batch
    export: the batch axis, free in input and output, is taken as not resized."""
    torch = pytest.importorskip("torch")
    model = _resize_to_run_time_sizes(mode)
    x, dy = f32(normal(3, 2, 5, 7)), f32(normal(3, 2, 9, 12))
    (dx,) = _vjp(model, {"x": x}, ["x"], dy)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, size=(9, 12), mode="nearest" if mode == "nearest" else "bilinear",
                                         align_corners=None if mode == "nearest" else False)
    ty.backward(torch.from_numpy(dy.astype(np.float64)))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-5)


def test_resize_of_a_free_axis_by_run_time_sizes_fails_loudly() -> None:
    """Should a run-time size resize the free batch axis after all, the gradient run raises
    instead of returning a gradient of the wrong shape."""
    model = _resize_to_run_time_sizes("nearest", batch_factor=2)
    x = f32(normal(3, 2, 5, 7))
    with pytest.raises(Exception, match="Reshape node. Name:.vjp/Resize"):
        _vjp(model, {"x": x}, ["x"], f32(normal(6, 2, 9, 12)))


# --- run-time values ------------------------------------------------------------------------


def _model(nodes, inputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "m", inputs, [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits])
    return make_model(graph, opset=opset)


def test_slice_with_run_time_ends() -> None:
    """x[:, 1:W-1:2] with W read from the input's shape (no constant ends)."""
    x = normal(2, 7)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "one", "two"], ["w"]),
        helper.make_node("Sub", ["w", "one"], ["end"]),
        helper.make_node("Slice", ["x", "one", "end", "one", "two"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, [2, "W"])]
    model = _model(nodes, inputs, [("one", ints(1)), ("two", ints(2))])
    dy = normal(2, 3)
    (dx,) = _vjp(model, {"x": x}, ["x"], dy)
    expected = np.zeros_like(x)
    expected[:, 1:6:2] = dy
    np.testing.assert_array_equal(dx, expected)


def test_gather_and_tile_with_run_time_indices_and_repeats() -> None:
    x = normal(3, 2)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),               # (3, 2)
        helper.make_node("Sub", ["shape", "one"], ["idx"]),        # (2, 1): computed indices
        helper.make_node("Gather", ["x", "idx"], ["g"], axis=0),  # rows 2, 1
        helper.make_node("Tile", ["g", "shape"], ["y"]),          # computed repeats (3, 2)
    ]
    inputs = [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, [3, 2])]
    model = _model(nodes, inputs, [("one", ints(1))])
    dy = normal(6, 4)
    (dx,) = _vjp(model, {"x": x}, ["x"], dy)
    per_copy = dy.reshape(3, 2, 2, 2).sum(axis=(0, 2))  # Tile: sum the 3 x 2 copies
    expected = np.zeros_like(x)
    expected[2] += per_copy[0]
    expected[1] += per_copy[1]
    np.testing.assert_allclose(dx, expected, rtol=1e-12)


def test_upsample_without_conversion(monkeypatch) -> None:
    """The Upsample rule (opset 7-9 models the driver did not convert): asymmetric coordinates."""
    monkeypatch.setattr(driver, "upgrade_opset", lambda model: model)
    x = f32(normal(1, 2, 4, 4))
    check_op("Upsample", {"x": x, "s": f32([1, 1, 2, 1.5])}, ["x"], {"mode": "linear"}, constants=["s"], opset=9)
    check_op("Upsample", {"x": x}, ["x"], {"mode": "nearest", "scales": [1.0, 1.0, 2.0, 3.0]}, opset=7)


# --- meta-tests over conv, pool, resample and shape -------------------------------------------

OWN_MODULES = {f"onnxviz.autodiff.rules.{m}" for m in ("conv", "pool", "resample", "shape")}
ALL_CASES = test_rules_conv.CASES + test_rules_pool.CASES + CASES


def test_every_rule_has_a_case() -> None:
    own = {op for op, rule in RULES.items() if rule.__module__ in OWN_MODULES}
    covered = {c.values[0] for c in ALL_CASES} | {"Upsample"}  # Upsample: test_upsample_without_conversion
    assert own - covered == set()


def test_backward_graphs_use_standard_ops_only() -> None:
    assert_standard_backward(CASES)


@pytest.mark.parametrize("op, opset, attrs", [
    ("Upsample", 9, {"mode": "linear"}), ("Upsample", 9, {"mode": "nearest"}),
    ("Resize", 10, {"mode": "linear"}), ("Resize", 10, {"mode": "nearest"}),
])
def test_converted_upsampling_keeps_its_values(op, opset, attrs) -> None:
    """The version converter makes old Upsample/Resize-10 half-pixel; upgrade_opset restores
    their asymmetric coordinates, so the converted model computes the same values, and the
    gradient of the converted model passes the finite-difference check."""
    x = f32(normal(1, 2, 4, 5))
    model = single_op_model(op, {"x": x, "s": f32([1, 1, 2, 1.5])}, attrs, constants=["s"], opset=opset)
    converted = driver.upgrade_opset(model)
    assert driver.default_opset(converted) == driver.CONVERT_TO
    want = session(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(session(converted).run(None, {"x": x})[0], want, rtol=1e-6, atol=1e-6)
    check_op(op, {"x": x, "s": f32([1, 1, 2, 1.5])}, ["x"], attrs, constants=["s"], opset=opset)
