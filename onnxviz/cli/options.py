"""Option decorators shared by the commands, and the small helpers that turn them into library calls.

Nothing here imports onnx, onnxruntime, cv2 or numpy at module level: the model is only
loaded when a command runs (:meth:`ModelSpec.load`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from onnxviz.errors import ModelLoadError, OnnxvizError

if TYPE_CHECKING:
    from onnxviz.model import Model

#: The repository root: the shipped model and sample photos live next to the package.
ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLE_IMAGES = ROOT / "examples" / "images"
SAMPLE_PHOTO = SAMPLE_IMAGES / "cat.jpg"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


# --------------------------------------------------------------------------- value types
class _Floats(click.ParamType):
    """One number or a comma-separated list of numbers (one per channel)."""

    name = "FLOAT[,FLOAT...]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            numbers = tuple(float(v) for v in str(value).replace(" ", "").split(",") if v)
        except ValueError:
            self.fail(f"{value!r} is not a number or a comma-separated list of numbers", param, ctx)
        if not numbers:
            self.fail("give at least one number", param, ctx)
        return numbers


class _Size(click.ParamType):
    """``224`` (square) or ``HxW`` / ``H,W``."""

    name = "N|HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).lower().replace(",", "x").split("x")
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            dims = ()
        if len(dims) == 1:
            dims = dims * 2
        if len(dims) != 2 or min(dims) <= 0:
            self.fail(f"{value!r} is not a size: give N or HxW, e.g. 224 or 224x192", param, ctx)
        return dims


class _Resize(click.ParamType):
    """Short side to resize to before the centre crop, or ``none`` (resize straight to --size)."""

    name = "N|none"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        if str(value).lower() in ("none", "0", "no"):
            return 0
        try:
            size = int(value)
        except ValueError:
            size = -1
        if size <= 0:
            self.fail(f"{value!r} is not a size: give a positive integer or 'none'", param, ctx)
        return size


class _Baseline(click.ParamType):
    """A number in model-input space, or one of ``words`` (``mean`` / ``blur`` for occlusion)."""

    def __init__(self, *words: str) -> None:
        self.words = words
        self.name = "|".join(["NUMBER", *words])

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).lower()
        if text in self.words:
            return text
        try:
            return float(text)
        except ValueError:
            self.fail(f"{value!r} is not a number or one of {', '.join(self.words)}", param, ctx)


FLOATS = _Floats()
SIZE = _Size()
RESIZE = _Resize()
BASELINE = _Baseline("mean", "blur")
IG_BASELINE = _Baseline("black")


def _stack(options: Sequence[Decorator]) -> Decorator:
    """Apply option decorators so that they list in the given order in --help."""

    def apply(f):
        for option in reversed(options):
            f = option(f)
        return f

    return apply


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class ModelSpec:
    """What the model options asked for; :meth:`load` builds the :class:`~onnxviz.Model`."""

    path: str | None = None
    provider: str = "auto"
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def resolved_path(self) -> Path:
        """The model file: the one given, else the shipped model (an error when it is missing)."""
        if self.path is not None:
            return Path(self.path)
        if not SHIPPED_MODEL.is_file():
            raise ModelLoadError(
                f"the shipped model {SHIPPED_MODEL} is missing (this install has no models/ "
                f"folder); pass your own with -m/--model MODEL.onnx"
            )
        return SHIPPED_MODEL

    def load(self) -> Model:
        """Load the model with its provider and preprocessing (preset, then overrides)."""
        from onnxviz.model import Model

        model = Model(self.resolved_path(), provider=self.provider, preprocessing=self.preset)
        if self.overrides:
            # The overrides refine whatever the model resolved (metadata or preset sized to
            # its input); Model.preprocess and display_image read this attribute on each call.
            model.preprocessing = model.preprocessing.replace(**self.overrides)
        return model


_MODEL_OPTIONS: list[Decorator] = [
    click.option("-m", "--model", "model_path", metavar="MODEL.onnx", default=None,
                 help="ONNX model file (default: the shipped EfficientNet-Lite0)."),
    click.option("--provider", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                 show_default=True, help="Execution provider; auto uses CUDA only when it really works."),
    click.option("--preset", type=click.Choice(["torchvision", "caffe", "tf", "raw"]), default=None,
                 help="Preprocessing convention (default: the model's metadata, else torchvision)."),
    click.option("--mean", type=FLOATS, default=None, metavar="FLOAT[,...]",
                 help="Per-channel mean, e.g. 0.485,0.456,0.406."),
    click.option("--std", type=FLOATS, default=None, metavar="FLOAT[,...]",
                 help="Per-channel std, e.g. 0.229,0.224,0.225."),
    click.option("--size", type=SIZE, default=None, metavar="N|HxW", help="Model input size: N or HxW."),
    click.option("--resize", type=RESIZE, default=None, metavar="N|none",
                 help="Resize the short side to N before the centre crop; 'none' resizes straight to --size."),
    click.option("--bgr/--rgb", "bgr", default=None, help="Channel order the model expects."),
    click.option("--layout", type=click.Choice(["NCHW", "NHWC"], case_sensitive=False), default=None,
                 help="Input layout (default: detected from the model)."),
]


def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the model and preprocessing options; the command receives ``model: ModelSpec``."""

    @functools.wraps(f)
    def wrapper(*args, model_path, provider, preset, mean, std, size, resize, bgr, layout, **kw):
        overrides: dict[str, Any] = {}
        if mean is not None:
            overrides["mean"] = mean
        if std is not None:
            overrides["std"] = std
        if size is not None:
            overrides["size"] = size
        if resize is not None:
            overrides["resize"] = resize or None
        if bgr is not None:
            overrides["channel_order"] = "BGR" if bgr else "RGB"
        if layout is not None:
            overrides["layout"] = layout.upper()
        spec = ModelSpec(model_path, provider, preset, overrides)
        return f(*args, model=spec, **kw)

    return _stack(_MODEL_OPTIONS)(wrapper)


# --------------------------------------------------------------------------- other options
def target_option(f):
    return click.option(
        "--target", default="top", show_default=True, metavar="INDEX|LABEL|top",
        help="Class to explain: an index, a label from the model's metadata (e.g. flamingo), "
             "or top for each image's top-1 class.",
    )(f)


def layer_option(required: bool = False, help: str = "Tensor name (see `onnxviz inspect`).") -> Decorator:
    return click.option("--layer", metavar="NAME", required=required, help=help)


def output_option(default: str | None, help: str) -> Decorator:
    return click.option("-o", "--output", metavar="PATH", default=default,
                        show_default=default is not None, help=help)


save_array_option = click.option(
    "--save-array", is_flag=True, help="Also write the raw array as .npy next to each PNG."
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
images_argument = click.argument("images", nargs=-1, metavar="[IMAGE...]")


def parse_target(text: str | None) -> str | None:
    """``top`` (or nothing) means each image's top-1 class: None for the library."""
    if text is None or text.strip().lower() == "top":
        return None
    return text.strip()


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def default_images(images: Sequence[str], all_samples: bool = False) -> list[str]:
    """The images given (a folder stands for the images in it), else the shipped sample
    photo (or, with ``all_samples``, every sample photo)."""
    if images:
        found: list[str] = []
        for image in images:
            if Path(image).is_dir():
                inside = _images_in(Path(image))
                if not inside:
                    raise OnnxvizError(
                        f"folder {image!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                        f"give image files or another folder"
                    )
                found += [str(p) for p in inside]
            else:
                found.append(image)
        return found
    if all_samples:
        samples = _images_in(SAMPLE_IMAGES) if SAMPLE_IMAGES.is_dir() else []
    else:
        samples = [SAMPLE_PHOTO] if SAMPLE_PHOTO.is_file() else []
    if not samples:
        raise OnnxvizError(
            f"no IMAGE given and the sample photos in {SAMPLE_IMAGES} are missing; pass image files"
        )
    return [str(p) for p in samples]


# --------------------------------------------------------------------------- outputs
def is_folder(output: str, n_images: int) -> bool:
    """Whether ``-o`` names a folder: an existing folder, a trailing slash, no suffix, or
    several images (which need one file each)."""
    path = Path(output)
    return (
        n_images > 1
        or output.endswith(("/", "\\"))
        or path.is_dir()
        or path.suffix == ""
    )


def output_paths(output: str, images: Sequence[str], method: str) -> list[Path]:
    """One PNG path per image: ``-o file.png`` for one image, else ``folder/<stem>_<method>.png``.

    Raises:
        click.UsageError: ``-o`` names one file but several images are given.
    """
    if not is_folder(output, len(images)):
        if Path(output).suffix.lower() != ".png":
            raise click.UsageError(f"-o {output}: give a .png file or a folder")
        return [Path(output)]
    if Path(output).suffix.lower() == ".png" and not Path(output).is_dir():
        raise click.UsageError(
            f"-o {output} names one PNG but {len(images)} images were given; give a folder"
        )
    folder = Path(output)
    paths: list[Path] = []
    seen: set[str] = set()
    for image in images:
        stem = Path(str(image)).stem or "image"
        name, n = f"{stem}_{method}.png", 2
        while name in seen:  # two photos with the same stem from different folders
            name, n = f"{stem}_{method}_{n}.png", n + 1
        seen.add(name)
        paths.append(folder / name)
    for path in paths:
        check_output(path)
    return paths


def check_output(path: Path) -> Path:
    """``path`` if a file can be written there, checked before any work is done: not an
    existing folder, and the nearest existing folder above it is a writable folder.

    Raises:
        click.UsageError: what stands in the way.
    """
    if path.is_dir():
        raise click.UsageError(f"-o: {str(path)!r} is a folder; give a file name or another folder")
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise click.UsageError(f"-o: cannot write {str(path)!r}: {str(above)!r} is a file, not a folder")
    if not os.access(above, os.W_OK):
        raise click.UsageError(f"-o: cannot write {str(path)!r}: folder {str(above)!r} is not writable")
    return path


def npy_path(png: Path) -> Path:
    return png.with_suffix(".npy")


def safe_name(text: str) -> str:
    """A tensor name made safe for a file name."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep.strip("._") or "tensor"
