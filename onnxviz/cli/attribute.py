"""The attribution commands (saliency, gradcam, occlusion, ...): one factory, one table.

Each command is made by :func:`make_command` from its ``onnxviz.methods.ATTRIBUTIONS`` key.
:data:`COMMANDS` holds only what the CLI adds: a one-line help and the method's own
options. It is static so that ``onnxviz --help`` does not import the methods (and
onnxruntime); a test checks that its keys are exactly those of ``ATTRIBUTIONS``. The
command looks the method up in ``ATTRIBUTIONS`` when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import click

from onnxviz.cli.options import (
    BASELINE,
    IG_BASELINE,
    Decorator,
    default_images,
    images_argument,
    layer_option,
    model_options,
    npy_path,
    output_option,
    output_paths,
    parse_target,
    quiet_option,
    save_array_option,
    target_option,
)

_CAM_LAYER = layer_option(help="Feature map to use (default: the last spatial one before global pooling).")


@dataclass(frozen=True)
class CommandSpec:
    """The CLI side of one attribution method.

    Attributes:
        help: one line for ``onnxviz --help``.
        options: click options of the method's own keyword arguments; each option's
            destination is the keyword passed to the method (only when given).
    """

    help: str
    options: tuple[Decorator, ...] = ()


COMMANDS: dict[str, CommandSpec] = {
    "saliency": CommandSpec("Vanilla gradient saliency: max over colour channels of |d logit / d x|."),
    "smoothgrad": CommandSpec(
        "SmoothGrad: saliency averaged over noisy copies of the image.",
        (
            click.option("--samples", type=click.IntRange(min=1), default=None, help="Noisy copies (default 25)."),
            click.option("--noise", type=click.FloatRange(min=0.0), default=None,
                         help="Noise level as a fraction of the input range (default 0.15)."),
        ),
    ),
    "ig": CommandSpec(
        "Integrated gradients (Sundararajan et al. 2017) from a black image.",
        (
            click.option("--steps", type=click.IntRange(min=1), default=None, help="Riemann steps (default 32)."),
            click.option("--baseline", type=IG_BASELINE, default=None,
                         help="Path start: black (a black image, default) or a number in model-input space."),
        ),
    ),
    "guided": CommandSpec("Guided backpropagation (Springenberg et al. 2015)."),
    "deconvnet": CommandSpec("Deconvnet (Zeiler and Fergus 2014)."),
    "cam": CommandSpec("Class activation map (Zhou et al. 2016); needs global average pooling then at most one linear layer."),
    "gradcam": CommandSpec("Grad-CAM (Selvaraju et al. 2017).", (_CAM_LAYER,)),
    "gradcam++": CommandSpec("Grad-CAM++ (Chattopadhay et al. 2018).", (_CAM_LAYER,)),
    "scorecam": CommandSpec(
        "Score-CAM (Wang et al. 2020): channels weighted by the score of the masked image.",
        (
            _CAM_LAYER,
            click.option("--max-channels", "max_channels", type=click.IntRange(min=1), default=None,
                         help="Use only the N most active channels (faster)."),
        ),
    ),
    "occlusion": CommandSpec(
        "Occlusion (Zeiler and Fergus 2014): score drop when a window is masked.",
        (
            click.option("--window", type=click.IntRange(min=1), default=None,
                         help="Window side in pixels (default 32)."),
            click.option("--stride", type=click.IntRange(min=1), default=None,
                         help="Window step in pixels (default 16)."),
            click.option("--baseline", type=BASELINE, default=None,
                         help="Fill value in model-input space, or mean / blur (default 0)."),
            click.option("--score", type=click.Choice(["logit", "prob"]), default=None,
                         help="Score whose drop is measured (default logit)."),
        ),
    ),
}


def make_command(name: str, spec: CommandSpec) -> click.Command:
    """The click command for attribution method ``name``."""

    def run(images, model, target, output, save_array, quiet, **options) -> None:
        _attribute(name, images, model, target, output, save_array, options, quiet)

    run.__doc__ = (
        f"{spec.help}\n\n"
        "Writes one PNG per IMAGE (default: the shipped cat photo): -o FILE.png for one image, "
        f"-o FOLDER/ (or several images) for FOLDER/<stem>_{name}.png. Heatmaps are overlaid on "
        "the image as the model sees it; gradients are shown as images. Prints the class "
        "explained and its probability."
    )
    command: Callable = run
    for option in reversed(spec.options):
        command = option(command)
    command = quiet_option(command)
    command = save_array_option(command)
    command = output_option(".", "PNG file (one image) or folder.")(command)
    command = target_option(command)
    command = model_options(command)
    command = images_argument(command)
    return click.command(name, short_help=spec.help)(command)


def attribution_commands() -> list[click.Command]:
    return [make_command(name, spec) for name, spec in COMMANDS.items()]


def _attribute(name, images, model, target, output, save_array, options, quiet=False) -> None:
    """Load, check, compute every map, then write: an error leaves no file behind."""
    from onnxviz.render import io
    from onnxviz.report import explain

    paths = default_images(images)
    outputs = output_paths(output, paths, name)
    m = model.load()
    given = {k: v for k, v in options.items() if v is not None}
    if "layer" in given:
        m.check_tensor(given["layer"])
    target = parse_target(target)
    if target is not None:
        target = m.class_index(target)
    x = m.preprocess(paths)
    views = [m.display_image(p) for p in paths]
    results = explain(m, name, x, views, target, progress=not quiet and name, **given)
    for path, png, e in zip(paths, outputs, results):
        io.write_png(png, e.picture)
        label = f" {e.label!r}" if m.labels else ""  # unlabelled models: no made-up "class 3" name
        line = f"{path}: class {e.target}{label} p={e.probability:.3f} -> {png}"
        if save_array:
            line += f", {io.write_npy(npy_path(png), e.raw)}"
        click.echo(line)
