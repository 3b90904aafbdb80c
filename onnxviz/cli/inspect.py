"""``onnxviz inspect``: what a model is, and the table of its layers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from onnxviz.cli.options import json_option, model_options


@click.command()
@model_options
@json_option
def inspect(model, as_json: bool) -> None:
    """Summarise a model and list its layers.

    Prints inputs, outputs, opset, IR version, parameter count, the detected input
    layout and preprocessing, the execution providers that really work here, whether
    gradients are supported (and which ops block them), and one row per layer:
    tensor name, op type, output shape and receptive field (size, jump, start, in
    input pixels) for spatial tensors. Layer names are what --layer takes.
    """
    from onnxviz.report import describe

    facts = describe(model.load())
    if as_json:
        click.echo(json.dumps(facts, indent=2))
    else:
        click.echo(format_facts(facts))


# --------------------------------------------------------------------------- text
def format_shape(shape: Sequence[Any] | None) -> str:
    from onnxviz.graph.info import dim_text  # here: `onnxviz --help` does not import onnx

    if shape is None:
        return "?"
    return "[" + ", ".join(dim_text(d) for d in shape) + "]"


def _pair(values: Sequence[Any]) -> str:
    """``3`` for a square (3, 3), else ``3x5``."""
    return str(values[0]) if len(set(values)) == 1 else "x".join(str(v) for v in values)


def _tensors(items: list[dict]) -> list[str]:
    width = max((len(i["name"]) for i in items), default=0)
    return [f"{i['name']:<{width}}  {format_shape(i['shape'])}  {i['dtype']}" for i in items] or ["-"]


def _preprocessing(pp: dict) -> str:
    parts = []
    for key, value in pp.items():
        if isinstance(value, (list, tuple)):
            value = "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def table(rows: list[Sequence[str]], header: Sequence[str], right: Sequence[int] = ()) -> list[str]:
    """An aligned plain-text table; columns in ``right`` are right-aligned."""
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            str(v).rjust(w) if c in right else str(v).ljust(w)
            for c, (v, w) in enumerate(zip(r, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_facts(facts: dict) -> str:
    """The text ``onnxviz inspect`` prints."""
    grads = facts["gradients"]
    if grads["supported"]:
        gradients = f"supported (of {facts['logits']!r})"
    else:
        ops = ", ".join(f"{b['op_type']} (node {b['node_name']!r})" for b in grads["blockers"])
        gradients = f"NOT supported: no gradient rule for {ops}"
    image = facts["image_input"]
    fields: list[tuple[str, list[str]]] = [
        ("model", [facts["model"] + (f"  ({facts['path']})" if facts["path"] else "")]),
        ("inputs", _tensors(facts["inputs"])),
        ("outputs", _tensors(facts["outputs"])),
        ("opset", [str(facts["opset"])]),
        ("IR version", [str(facts["ir_version"])]),
        ("producer", [facts["producer"] or "-"]),
        ("parameters", [f"{facts['parameters']:,}"]),
        ("image input", [f"{image['name']} {format_shape(image['shape'])}, layout {image['layout']}"]),
        ("preprocessing", [_preprocessing(facts["preprocessing"])]),
        ("labels", [f"{facts['labels']} classes" if facts["labels"] else "none in metadata"]),
        ("providers", [f"{', '.join(facts['providers'])}  (this model runs on: {', '.join(facts['session_providers'])})"]),
        ("gradients", [gradients]),
    ]
    key_width = max(len(k) for k, _ in fields)
    lines = []
    for key, values in fields:
        for n, value in enumerate(values):
            lines.append(f"{key if n == 0 else '':<{key_width}}  {value}")
    rows = []
    for layer in facts["layers"]:
        rf = layer["receptive_field"]
        rf_cells = ["", "", ""] if rf is None else [_pair(rf["size"]), _pair(rf["jump"]), _pair(rf["start"])]
        rows.append([layer["name"], layer["op_type"], format_shape(layer["shape"]), *rf_cells])
    lines += ["", f"layers ({len(rows)}; receptive field in input pixels: size, jump, start)"]
    lines += table(rows, ["tensor", "op", "shape", "rf size", "jump", "start"], right=(3, 4, 5))
    return "\n".join(lines)
