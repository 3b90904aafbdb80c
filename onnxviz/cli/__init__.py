"""The ``onnxviz`` command line: a click group, one module per command.

The CLI parses, calls the library and writes files; it holds no numpy logic. Heavy
imports (onnxruntime, onnx, cv2, numpy) happen inside the commands, so importing this
package and ``onnxviz --help`` stay instant.

:class:`~onnxviz.errors.OnnxvizError` is caught here, once: it becomes one line
``error: <message>`` on stderr and exit code 1. Click's own usage errors keep exit code 2.
"""

from __future__ import annotations

import click

from onnxviz import __version__
from onnxviz.cli.activations import activations
from onnxviz.cli.attribute import attribution_commands
from onnxviz.cli.filters import filters
from onnxviz.cli.inspect import inspect
from onnxviz.cli.report import report
from onnxviz.errors import OnnxvizError


class _Group(click.Group):
    """A click group that turns an :class:`OnnxvizError` into ``error: ...`` and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OnnxvizError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="onnxviz")
def main() -> None:
    """Look inside any exported CNN from its .onnx file alone.

    With no -m/--model, commands use the shipped EfficientNet-Lite0 (ImageNet); with no
    IMAGE, the shipped sample photos. Start with `onnxviz inspect` or `onnxviz report`.
    """


for _command in (inspect, activations, filters, *attribution_commands(), report):
    main.add_command(_command)

__all__ = ["main"]
