"""A minimal progress bar on stderr.

stdout stays clean for the CLI's real output (``--json``, tables), so the bar only
ever writes to ``sys.stderr``, looked up when the bar starts (pytest and callers may
swap it). On a terminal it redraws in place; elsewhere click prints the label once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    label: str = "",
    enabled: bool = True,
) -> Iterator[T]:
    """Yield the items of ``iterable``, drawing a progress bar on stderr.

    Args:
        iterable: the items to go through.
        total: the number of items, when ``len(iterable)`` does not say.
        label: text shown before the bar.
        enabled: False yields the items silently (no output at all).

    Yields:
        The items of ``iterable``, in order.
    """
    if not enabled:
        yield from iterable
        return
    import click

    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with click.progressbar(iterable, length=total, label=label, file=sys.stderr) as bar:
        yield from bar
