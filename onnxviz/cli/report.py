"""``onnxviz report``: one self-contained HTML page of every attribution view."""

from __future__ import annotations

import click

from onnxviz.cli.options import (
    check_output, default_images, images_argument, model_options, output_option, quiet_option,
)


@click.command()
@images_argument
@model_options
@output_option("report", "Folder to write index.html into, or a .html file to write.")
@quiet_option
def report(images, model, output, quiet) -> None:
    """Write one HTML page explaining the model's top class for each IMAGE.

    Per image: the photo, the top-5 predictions with probabilities, and every
    attribution view (saliency, SmoothGrad, integrated gradients, guided backprop,
    deconvnet, CAM, Grad-CAM, Grad-CAM++, Score-CAM, occlusion) for the top class,
    captioned with its settings. With no IMAGE: every sample photo in examples/images/.
    The page embeds its images and opens offline.
    """
    import time

    from onnxviz.report import build_report

    start = time.perf_counter()
    from onnxviz.render.report import Report

    paths = default_images(images, all_samples=True)
    check_output(Report.target(output))
    m = model.load()
    page = build_report(m, paths, progress=not quiet).write(output)
    if not quiet:
        click.echo(f"{len(paths)} image(s) in {time.perf_counter() - start:.1f} s", err=True)
    click.echo(str(page))
