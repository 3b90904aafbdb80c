"""``onnxviz filters``: the first convolution's kernels as a colour tile grid."""

from __future__ import annotations

import click

from onnxviz.cli.options import model_options, npy_path, output_option, save_array_option


@click.command()
@model_options
@output_option("filters.png", "PNG to write.")
@save_array_option
def filters(model, output, save_array) -> None:
    """Draw the first convolution's kernels as a grid of small colour images.

    Kernels share one scale centred on zero (mid-grey); with three input channels each
    kernel is shown in colour, in the model's channel order corrected to RGB.
    """
    from onnxviz.methods import first_conv
    from onnxviz.render import grid, io

    m = model.load()
    name, weights = first_conv(m)
    picture = grid.filter_grid(weights, channel_order=m.preprocessing.channel_order)
    written = io.write_png(output, picture)
    click.echo(f"{written}  ({name}: {weights.shape[0]} kernels of {weights.shape[2]}x{weights.shape[3]})")
    if save_array:
        click.echo(f"{io.write_npy(npy_path(written), weights)}")
