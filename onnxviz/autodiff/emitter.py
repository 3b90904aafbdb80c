"""The one place where backward nodes are created, named and recorded."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper


class Emitter:
    """Records the nodes and constants of a backward graph.

    Every node goes through :meth:`op`, which gives it a unique name and unique
    output names, so rules never invent names themselves.

    Args:
        taken: names already used in the forward graph (tensors and nodes).
        prefix: prefix of every emitted name, so backward tensors are easy to spot.
    """

    def __init__(self, taken: Iterable[str] = (), prefix: str = "vjp/") -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._taken = set(taken)
        self._prefix = prefix
        self._counter = itertools.count()
        self._consts: dict[tuple, str] = {}
        self.scope = ""

    def fresh(self, hint: str = "t") -> str:
        """Return a tensor/node name not used anywhere yet."""
        base = f"{self._prefix}{self.scope}{hint}"
        while True:
            name = f"{base}_{next(self._counter)}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def op(
        self,
        op_type: str,
        *inputs: str | None,
        outputs: int | Sequence[str] = 1,
        **attrs,
    ) -> str | list[str]:
        """Emit one node of the default ONNX domain.

        Args:
            op_type: the ONNX operator.
            *inputs: input tensor names; ``None`` or ``""`` for a skipped optional input.
            outputs: how many outputs (named automatically) or explicit output names.
            **attrs: node attributes; ``None`` values are left out.

        Returns:
            The output name, or a list of names when more than one output was asked for.
        """
        hint = op_type.lower()
        if isinstance(outputs, int):
            out_names = [self.fresh(hint) for _ in range(outputs)]
        else:
            out_names = list(outputs)
            self._taken.update(out_names)
        clean = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(
            op_type,
            [name or "" for name in inputs],
            out_names,
            name=self.fresh(hint + "_node"),
            **clean,
        )
        self.nodes.append(node)
        if isinstance(outputs, int) and outputs == 1:
            return out_names[0]
        return out_names

    def const(self, value, dtype: np.dtype | type | None = None, hint: str = "const") -> str:
        """Add (or reuse) an initializer holding ``value`` and return its name."""
        array = np.asarray(value, dtype=dtype)
        if array.dtype == np.float64 and dtype is None:
            array = array.astype(np.float32)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            name = self.fresh(hint)
            self.initializers.append(numpy_helper.from_array(array, name))
            self._consts[key] = name
        return self._consts[key]

    def ints(self, values: Sequence[int]) -> str:
        """A 1-D int64 constant, e.g. for axes, shapes and pads inputs."""
        return self.const(np.asarray(list(values), dtype=np.int64), hint="ints")
