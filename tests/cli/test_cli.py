"""The ``onnxviz`` command line, through click's CliRunner, on a tiny model and the shipped one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tests.cli.tiny import LABELS, SIZE, tiny_cnn
from onnxviz.cli import main
from onnxviz.cli.attribute import COMMANDS
from onnxviz.cli.options import SAMPLE_PHOTO, SHIPPED_MODEL

METHODS = list(COMMANDS)
GRADIENT_IMAGES = {"guided", "deconvnet"}  # (C, H, W) arrays; the others are 2-D maps
# options that keep each method fast on the 32x32 tiny model
FAST = {"smoothgrad": ["--samples", "4"], "ig": ["--steps", "8"], "occlusion": ["--window", "8", "--stride", "8"]}


def _op_without_rule() -> str:
    from onnxviz.autodiff import RULES

    return next(op for op in ("Hardmax", "Round", "Sign", "Floor", "Ceil") if op not in RULES)


BLOCKER = _op_without_rule()  # inserted after the tiny model's first ReLU


def _runner() -> CliRunner:
    try:  # click 8.1 mixes stderr into stdout unless told not to; 8.2 keeps them apart
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def run(*args: object):
    return _runner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def png(path: Path) -> np.ndarray:
    """Read a written PNG back (also checks that it is one)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint8
    return image


def user_error(result, *fragments: str) -> None:
    """Exit code 1 and one ``error: ...`` line on stderr naming the problem."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def tiny(files):
    from onnxviz.model import Model

    return Model(files["model"])


# --------------------------------------------------------------------------- the group
ALL_COMMANDS = ["inspect", "activations", "filters", "report", *METHODS]


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and f"Usage: main {command}" in result.output


def test_group_help_and_version():
    result = run("--help")
    assert result.exit_code == 0 and all(c in result.output for c in ALL_COMMANDS)
    assert run("--version").output.strip().endswith("0.1.0")


def test_commands_match_attributions():
    from onnxviz.methods import ATTRIBUTIONS

    assert set(COMMANDS) == set(ATTRIBUTIONS)


def test_cli_import_is_light():
    """`onnxviz --help` must not pay for onnxruntime, onnx, opencv or numpy."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import onnxviz.cli"],
        capture_output=True, text=True, check=True,
    ).stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.splitlines() if "|" in line}
    assert not imported & {"onnxruntime", "cv2", "onnx", "numpy"}, imported & {"onnxruntime", "cv2", "onnx", "numpy"}


def test_public_api_names_resolve():
    import onnxviz

    assert onnxviz.__version__ == "0.1.0"
    for name in onnxviz.__all__:
        assert getattr(onnxviz, name) is not None, name
    assert onnxviz.render.grid.tile is not None and issubclass(onnxviz.errors.ChannelError, onnxviz.errors.OnnxvizError)
    with pytest.raises(AttributeError):
        onnxviz.no_such_name  # noqa: B018


def test_usage_error_keeps_exit_2(files):
    result = run("activations", "-m", files["model"])  # --layer missing
    assert result.exit_code == 2


# --------------------------------------------------------------------------- inspect
def test_inspect_text(files, tiny):
    result = run("inspect", "-m", files["model"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "opset" in out and "17" in out and "NCHW" in out and "5 classes" in out
    assert f"{sum(w.size for w in map(onnx.numpy_helper.to_array, tiny.proto.graph.initializer)):,}" in out
    table = out[out.index("\nlayers"):].splitlines()
    for layer in tiny.layers:
        row = next(r for r in table if r.split()[:2] == [layer.name, layer.op_type])
        if layer.receptive_field is not None:  # size, jump, start at the end of the row
            assert row.split()[-3] == str(int(layer.receptive_field.size[0]))


def test_inspect_json_matches_layers(files, tiny):
    result = run("inspect", "-m", files["model"], "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["opset"] == 17 and facts["ir_version"] == tiny.proto.ir_version
    assert facts["inputs"] == [{"name": "input", "shape": ["N", 3, SIZE, SIZE], "dtype": "float32"}]
    assert facts["image_input"]["layout"] == "NCHW" and facts["labels"] == len(LABELS)
    assert facts["gradients"] == {"supported": True, "blockers": []}
    assert "CPUExecutionProvider" in facts["providers"]
    assert [(l["name"], l["op_type"], l["node_name"], tuple(l["shape"])) for l in facts["layers"]] == [
        (l.name, l.op_type, l.node_name, tuple(l.shape)) for l in tiny.layers
    ]
    # receptive fields by hand: conv3x3 -> 3 (jump 1, start 0); then conv3x3/2 -> 5, jump 2, start 0
    rf = {l["name"]: l["receptive_field"] for l in facts["layers"]}
    assert rf["c1"] == {"size": [3, 3], "jump": [1, 1], "start": [0, 0]}
    assert rf["features"] == {"size": [5, 5], "jump": [2, 2], "start": [0, 0]}
    assert rf["logits"] is None


def test_inspect_preprocessing_overrides(files):
    args = ["--preset", "caffe", "--size", "24x20", "--resize", "none", "--rgb", "--mean", "1,2,3"]
    facts = json.loads(run("inspect", "-m", files["model"], "--json", *args).stdout)
    pp = facts["preprocessing"]
    assert list(pp["size"]) == [24, 20] and pp["resize"] is None
    assert pp["channel_order"] == "RGB" and list(pp["mean"]) == [1, 2, 3]


def test_a_size_or_layout_the_model_does_not_take_is_named(files, out_dir):
    """They failed in onnxruntime with advice for Python users (Model.preprocess, x.transpose)."""
    args = [files["red"], "-m", files["model"], "-o", out_dir / "g.png"]
    user_error(run("gradcam", *args, "--size", "20"), f"takes {SIZE}x{SIZE} images but the preprocessing makes 20x20",
               "drop --size")
    user_error(run("gradcam", *args, "--layout", "nhwc"), "is NCHW but the preprocessing makes NHWC", "drop --layout")


def test_inspect_reports_gradient_blockers(files, tmp_path):
    path = tmp_path / "blocked.onnx"
    onnx.save(tiny_cnn(blocker=BLOCKER), path)
    facts = json.loads(run("inspect", "-m", path, "--json").stdout)
    assert facts["gradients"] == {"supported": False, "blockers": [{"op_type": BLOCKER, "node_name": "the_blocker"}]}
    assert f"no gradient rule for {BLOCKER}" in run("inspect", "-m", path).stdout


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="shipped model missing")
def test_inspect_shipped_model():
    result = run("inspect", "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["outputs"][0]["name"] == "logits" and facts["labels"] == 1000
    assert facts["preprocessing"]["size"] in ([224, 224], (224, 224))
    assert facts["parameters"] > 4_000_000
    assert len(facts["layers"]) > 50
    assert "Conv" in run("inspect").stdout


# --------------------------------------------------------------------------- activations / filters
def test_activations_grid_and_array(files, tiny, tmp_path):
    out = tmp_path / "grid.png"
    result = run("activations", files["red"], "-m", files["model"], "--layer", "features", "-o", out, "--save-array")
    assert result.exit_code == 0, result.output
    from onnxviz.render import grid

    x = tiny.preprocess([files["red"]])
    acts = tiny.activations(x, ["features"])["features"][0]
    np.testing.assert_allclose(np.load(out.with_suffix(".npy")), acts, rtol=1e-5, atol=1e-6)
    assert png(out).shape == grid.channel_grid(acts).shape


def test_activations_one_channel(files, tmp_path):
    out = tmp_path / "c2.png"
    result = run("activations", files["red"], "-m", files["model"], "--layer", "c1", "--channel", "2", "-o", out)
    assert result.exit_code == 0, result.output
    assert png(out).shape == (SIZE, SIZE, 3)


def test_activations_default_image(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("activations", "-m", files["model"], "--layer", "r1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{SAMPLE_PHOTO.stem}_r1.png").is_file()


def test_activations_of_a_vector_layer_are_a_bar_chart(files, tiny, tmp_path, monkeypatch):
    """Logits and pooled features have no spatial extent: a grid of 1x1 maps, each
    normalised on its own, would be flat; they are plotted as bars, class names on logits."""
    from onnxviz.render import plot

    drawn = []
    real = plot.bar_chart
    monkeypatch.setattr(plot, "bar_chart", lambda values, **kw: drawn.append((values, kw)) or real(values, **kw))
    x = tiny.preprocess([files["red"]])
    out = tmp_path / "logits.png"
    result = run("activations", files["red"], "-m", files["model"], "--layer", "logits", "-o", out, "--save-array")
    assert result.exit_code == 0, result.output
    logits = tiny.activations(x, ["logits"])["logits"][0]
    np.testing.assert_allclose(np.load(out.with_suffix(".npy")), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(drawn[-1][0], logits, rtol=1e-5, atol=1e-6)
    assert drawn[-1][1]["labels"] == LABELS and drawn[-1][1]["highlight"] is None
    assert png(out).shape == (400, 960, 3)

    out = tmp_path / "gap.png"
    result = run("activations", files["red"], "-m", files["model"], "--layer", "gap", "--channel", "2", "-o", out)
    assert result.exit_code == 0, result.output
    gap = tiny.activations(x, ["gap"])["gap"][0, :, 0, 0]
    np.testing.assert_allclose(drawn[-1][0], gap, rtol=1e-5, atol=1e-6)
    assert drawn[-1][1]["labels"] is None and drawn[-1][1]["highlight"] == 2  # 6 features, not classes
    assert (png(out)[..., ::-1] == plot.HIGHLIGHT).all(axis=-1).any()  # the PNG reads back as BGR
    user_error(run("activations", files["red"], "-m", files["model"], "--layer", "gap", "--channel", "6",
                   "-o", tmp_path / "bad.png"), "channel 6", "6 channels")
    assert not (tmp_path / "bad.png").exists()


def test_filters(files, tmp_path):
    out = tmp_path / "f.png"
    result = run("filters", "-m", files["model"], "-o", out, "--save-array")
    assert result.exit_code == 0, result.output
    w1 = onnx.numpy_helper.to_array(tiny_cnn().graph.initializer[0])
    np.testing.assert_array_equal(np.load(out.with_suffix(".npy")), w1)
    from onnxviz.render import grid

    assert png(out).shape == grid.filter_grid(w1).shape


# --------------------------------------------------------------------------- attribution commands
@pytest.mark.parametrize("method", METHODS)
def test_attribution_command(method, files, tmp_path):
    out = tmp_path / "map.png"
    result = run(method, files["red"], "-m", files["model"], "-o", out, "--save-array", *FAST.get(method, []))
    assert result.exit_code == 0, result.output
    assert png(out).shape == (SIZE, SIZE, 3)
    raw = np.load(out.with_suffix(".npy"))
    assert raw.ndim == (3 if method in GRADIENT_IMAGES else 2) and np.isfinite(raw).all()
    assert f"-> {out}" in result.stdout and "p=" in result.stdout


def test_ig_baseline_option(files, tiny, tmp_path):
    """--baseline black (the default) or a number in model-input space; the arrays are the
    library's integrated gradients from that baseline."""
    from onnxviz.methods import integrated_gradients

    x = tiny.preprocess([files["red"]])
    for given, baseline in ((None, "black"), ("black", "black"), ("0.25", 0.25)):
        out = tmp_path / f"ig_{given}.png"
        extra = [] if given is None else ["--baseline", given]
        result = run("ig", files["red"], "-m", files["model"], "-o", out, "--steps", "4", "--save-array", *extra)
        assert result.exit_code == 0, result.output
        expected = integrated_gradients(tiny, x, steps=4, baseline=baseline).map[0]
        np.testing.assert_allclose(np.load(out.with_suffix(".npy")), expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(np.load(tmp_path / "ig_black.npy"), np.load(tmp_path / "ig_0.25.npy"))
    result = run("ig", files["red"], "-m", files["model"], "-o", tmp_path / "w.png", "--baseline", "white")
    assert result.exit_code == 2 and "'white' is not a number or one of black" in result.output


def test_a_grey_model_runs_from_colour_photos(files, tmp_path):
    """A one-channel model gets the luma of the photo (it got 3 channels and every command
    failed, telling the user to preprocess as it had just done)."""
    from tests.fixtures import gap_gemm

    path = tmp_path / "grey.onnx"
    onnx.save(gap_gemm(channels=1, size=SIZE), str(path))
    out = tmp_path / "g.png"
    result = run("saliency", files["red"], "-m", path, "-o", out, "--save-array")
    assert result.exit_code == 0, result.output
    assert np.load(out.with_suffix(".npy")).shape == (SIZE, SIZE)
    assert "channel_order=GRAY" in run("inspect", "-m", path).stdout
    assert run("activations", files["red"], "-m", path, "--layer", "relu1", "-o", tmp_path / "a.png").exit_code == 0
    user_error(run("saliency", files["red"], "-m", path, "--bgr", "-o", tmp_path / "b.png"),
               "takes 1 channel(s) but the preprocessing makes 3", "drop --rgb/--bgr")


def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(files, tmp_path, monkeypatch):
    """A file where a folder must be: refused up front (it failed after the method ran)."""
    import onnxviz.report as report_module

    blocker = tmp_path / "existing"
    blocker.write_text("not a folder")
    monkeypatch.setattr(report_module, "explain", lambda *a, **k: pytest.fail("ran before checking -o"))
    monkeypatch.setattr(report_module, "build_report", lambda *a, **k: pytest.fail("ran before checking -o"))
    result = run("gradcam", files["red"], "-m", files["model"], "-o", f"{blocker}/")
    assert result.exit_code == 2 and "'existing' is a file, not a folder" in result.output.replace(str(tmp_path) + "/", "")
    result = run("report", files["red"], "-m", files["model"], "-o", blocker / "r.html")
    assert result.exit_code == 2 and "is a file, not a folder" in result.output
    folder = tmp_path / "maps.png"  # an existing folder, whatever its name
    folder.mkdir()
    monkeypatch.undo()
    assert run("saliency", files["red"], "-m", files["model"], "-o", folder).exit_code == 0
    assert (folder / "red_saliency.png").is_file()


def test_quiet_attribution_prints_no_progress(files, tmp_path):
    args = ("smoothgrad", files["red"], "-m", files["model"], "-o", tmp_path / "s.png", "--samples", "2")
    assert "smoothgrad" in run(*args).stderr  # the progress label
    quiet = run(*args, "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    assert "p=" in quiet.stdout


def test_unlabelled_model_prints_the_class_index_alone(files, tmp_path):
    import onnx

    model = onnx.load(files["model"])
    kept = [p for p in model.metadata_props if p.key != "onnxviz.labels"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    path = tmp_path / "unlabelled.onnx"
    onnx.save(model, path)
    result = run("saliency", files["red"], "-m", path, "--target", "4", "-o", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    assert ": class 4 p=" in result.stdout


def test_saliency_matches_api_and_target_label(files, tiny, tmp_path):
    """The CLI's array is the library's, for the class named by its label."""
    import onnxviz

    out = tmp_path / "s.png"
    result = run("saliency", files["red"], "-m", files["model"], "--target", "flamingo", "-o", out, "--save-array")
    assert result.exit_code == 0, result.output
    assert "class 4 'flamingo'" in result.stdout
    x = tiny.preprocess([files["red"]])
    expected = onnxviz.saliency(tiny, x, 4)[0]
    np.testing.assert_allclose(np.load(out.with_suffix(".npy")), expected, rtol=1e-5, atol=1e-7)
    p = tiny.probabilities(x)[0, 4]
    assert f"p={p:.3f}" in result.stdout


def test_several_images_to_folder(files, tmp_path):
    out = tmp_path / "maps"
    result = run("gradcam", files["red"], files["blue"], "-m", files["model"], "-o", out, "--target", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["blue_gradcam.png", "red_gradcam.png"]
    assert result.stdout.count("class 2 'cat'") == 2


def test_image_folder(files, tmp_path):
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("red", "blue"):
        shutil.copy(files[name], photos)
    result = run("occlusion", photos, "-m", files["model"], "-o", tmp_path / "maps", "--window", "16")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["blue_occlusion.png", "red_occlusion.png"]


def test_one_png_for_several_images_is_a_usage_error(files, tmp_path):
    result = run("cam", files["red"], files["blue"], "-m", files["model"], "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and not list(tmp_path.iterdir())


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="shipped model missing")
def test_gradcam_shipped_model_target_by_label(tmp_path):
    out = tmp_path / "cat.png"
    result = run("gradcam", "--target", "flamingo", "-o", out)
    assert result.exit_code == 0, result.output
    assert "class 130 'flamingo'" in result.stdout
    assert png(out).shape == (224, 224, 3)


# --------------------------------------------------------------------------- errors
@pytest.fixture
def out_dir(tmp_path):
    """An output folder that must stay empty."""
    folder = tmp_path / "out"
    folder.mkdir()
    yield folder
    assert not list(folder.iterdir()), list(folder.iterdir())


def test_missing_model(out_dir):
    user_error(run("saliency", "-m", out_dir / "nope.onnx", "-o", out_dir), "does not exist")


def test_corrupt_model(files, out_dir):
    user_error(run("filters", "-m", files["corrupt"], "-o", out_dir / "f.png"), "not an ONNX model")


def test_not_an_image_model(files, out_dir):
    user_error(run("inspect", "-m", files["vector"]), "no 4-D image input")
    user_error(run("gradcam", files["red"], "-m", files["vector"], "-o", out_dir), "no 4-D image input")


def test_missing_shipped_model(monkeypatch, out_dir):
    import onnxviz.cli.options as options

    monkeypatch.setattr(options, "SHIPPED_MODEL", out_dir / "gone.onnx")
    user_error(run("inspect"), "shipped model", "-m/--model")


def test_unknown_layer(files, out_dir):
    result = run("activations", files["red"], "-m", files["model"], "--layer", "featurez", "-o", out_dir / "a.png")
    user_error(result, "featurez", "'features'")
    user_error(run("gradcam", files["red"], "-m", files["model"], "--layer", "c3", "-o", out_dir), "'c3'")


def test_channel_out_of_range(files, out_dir):
    args = ["-m", files["model"], "--layer", "c1", "-o", out_dir / "a.png"]
    user_error(run("activations", files["red"], *args, "--channel", "4"), "channel 4", "4 channels")
    user_error(run("activations", files["red"], *args, "--channel", "-1"), "channel -1")


def test_unknown_target_label(files, out_dir):
    user_error(run("saliency", files["red"], "-m", files["model"], "--target", "zebra", "-o", out_dir), "zebra")
    user_error(run("saliency", files["red"], "-m", files["model"], "--target", "7", "-o", out_dir), "out of range")


def test_unreadable_and_missing_image(files, out_dir):
    user_error(run("cam", files["broken_image"], "-m", files["model"], "-o", out_dir), "broken.jpg")
    # the good first image must not be written either
    user_error(run("cam", files["red"], out_dir / "none.png", "-m", files["model"], "-o", out_dir), "none.png")


def test_op_without_gradient_rule(tmp_path, files, out_dir):
    path = tmp_path / "blocked.onnx"
    onnx.save(tiny_cnn(blocker=BLOCKER), path)
    user_error(run("saliency", files["red"], "-m", path, "-o", out_dir), BLOCKER, "no gradient rule")


# --------------------------------------------------------------------------- report
def test_report_tiny_model(files, tmp_path):
    from onnxviz.methods import ATTRIBUTIONS

    out = tmp_path / "rep"
    result = run("report", files["red"], files["blue"], "-m", files["model"], "-o", out)
    assert result.exit_code == 0, result.output
    page = Path(result.stdout.strip().splitlines()[-1])
    assert page == out / "index.html"
    html = page.read_text(encoding="utf-8")
    import html as html_lib

    for spec in ATTRIBUTIONS.values():
        assert html_lib.escape(spec.title) in html, spec.title
    assert "Methods skipped" not in html  # every method runs on the tiny model
    assert "red.png" in html and "blue.png" in html
    assert html.count("Top-5 predictions") == 2 or html.count("<table class=\"preds\">") == 2
    assert "http://" not in html and "https://" not in html  # self-contained


def test_report_says_what_does_not_apply_and_names_classes_once(files, tmp_path):
    """A Flatten head (no CAM) and no labels: CAM's absence is in the header and on stderr,
    its reason renders commands as code, and captions say "class 3" once (they said
    "class 3 class 3"); free image dims keep their names (all were shown as N)."""
    import re

    from tests.fixtures import vgg_like

    proto = vgg_like(size=SIZE)
    for dim, name in zip(proto.graph.input[0].type.tensor_type.shape.dim[2:], ("H", "W")):
        dim.Clear()
        dim.dim_param = name
    path = tmp_path / "vgg.onnx"
    onnx.save(proto, str(path))
    out = tmp_path / "page.html"
    result = run("report", files["red"], "-m", path, "-o", out, "--size", str(SIZE))
    assert result.exit_code == 0, result.output
    assert "CAM: skipped, " in result.stderr
    page = out.read_text(encoding="utf-8")
    assert "not applicable</dt><dd>CAM (why: end of page)" in page
    assert "<code>" in page and "`" not in page.split("Methods skipped")[1]
    assert "N×3×H×W" in page
    assert re.search(r"class (\d+) class \1\b", page) is None and re.search(r"class \d+ \(", page)


def test_report_to_an_html_file(files, tmp_path):
    out = tmp_path / "pages" / "tiny.HTML"
    result = run("report", files["red"], "-m", files["model"], "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()) == out and out.is_file()
    assert "red.png" in out.read_text(encoding="utf-8")


def test_inspect_shows_named_dims_and_hides_made_up_ones():
    from onnxviz.cli.inspect import format_shape

    assert format_shape(("N", 3, "unk__2", "floor(H/2 - 1/2) + 1", None, "W")) == "[N, 3, ?, ?, ?, W]"
    assert format_shape(None) == "?"


def test_report_headings_tell_two_photos_of_one_name_apart(files, tmp_path):
    import shutil

    from onnxviz.report import image_names

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(files["red"], tmp_path / folder / "cat.png")
    a, b = tmp_path / "a" / "cat.png", tmp_path / "b" / "cat.png"
    assert image_names([a, b, a, files["blue"]]) == ["a/cat.png", "b/cat.png", "a/cat.png", "blue.png"]
    assert image_names([a, a]) == ["cat.png", "cat.png"]  # the same photo twice: its name
    assert image_names([np.zeros((4, 4, 3), np.uint8)]) == ["image 0"]
