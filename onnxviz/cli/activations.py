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
    as the model sees it. A layer with no spatial extent (after global pooling, the logits)
    is drawn as a bar chart of its values instead, --channel C marking entry C; the
    model's class names label the largest entries of its logits and outputs.
    """
    from onnxviz.methods import activation_maps, check_channel
    from onnxviz.render import grid, heatmap, io, plot

    path = image or default_images([])[0]
    m = model.load()
    m.check_tensor(layer)
    x = m.preprocess([path])
    maps = activation_maps(m, x, layer)[0]
    if channel is not None:
        check_channel(layer, maps.shape[0], channel)
    if maps.shape[1:] == (1, 1):
        raw = maps[:, 0, 0]
        classes = layer in (m.logit_name, *m.output_names) and m.labels and len(m.labels) == raw.size
        picture = plot.bar_chart(raw, labels=m.labels if classes else None, highlight=channel,
                                 title=f"{layer}: {raw.size} values")
    elif channel is None:
        raw = maps
        picture = grid.channel_grid(raw)
    else:
        raw = maps[channel]
        picture = heatmap.overlay(m.display_image(path), raw)
    if output is None:
        suffix = "" if channel is None else f"_c{channel}"
        output = f"{Path(path).stem}_{safe_name(layer)}{suffix}.png"
    written = io.write_png(output, picture)
    click.echo(f"{written}")
    if save_array:
        click.echo(f"{io.write_npy(npy_path(written), raw)}")
