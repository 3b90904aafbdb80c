"""``onnxviz activations``: one layer's channels as a grid, or one channel over the image."""

from __future__ import annotations

from pathlib import Path

import click

from onnxviz.cli.options import (
    default_images,
    layer_option,
    model_options,
    npy_path,
    output_option,
    safe_name,
    save_array_option,
)


@click.command()
@click.argument("image", required=False, metavar="[IMAGE]")
@model_options
@layer_option(required=True, help="Tensor whose activations to show (see `onnxviz inspect`).")
@click.option("--channel", type=int, default=None, metavar="C",
              help="Overlay this one channel's map on the image instead of the grid.")
@output_option(None, "PNG to write (default: <image>_<layer>[_c<C>].png).")
@save_array_option
def activations(image, model, layer, channel, output, save_array) -> None:
    """Show the activations of LAYER for IMAGE (default: the shipped cat photo).

    Without --channel, every channel is tiled in a grid, each normalised on its own and
    labelled with its index; with --channel C, that channel's map is overlaid on the image
    as the model sees it.
    """
    from onnxviz.methods import activation_maps, channel_map
    from onnxviz.render import grid, heatmap, io

    path = image or default_images([])[0]
    m = model.load()
    m.check_tensor(layer)
    x = m.preprocess([path])
    if channel is None:
        raw = activation_maps(m, x, layer)[0]
        picture = grid.channel_grid(raw)
    else:
        raw = channel_map(m, x, layer, channel)[0]
        picture = heatmap.overlay(m.display_image(path), raw)
    if output is None:
        suffix = "" if channel is None else f"_c{channel}"
        output = f"{Path(path).stem}_{safe_name(layer)}{suffix}.png"
    written = io.write_png(output, picture)
    click.echo(f"{written}")
    if save_array:
        click.echo(f"{io.write_npy(npy_path(written), raw)}")
