"""onnxruntime sessions: built once per model, checked inputs, batched runs.

Every method rewrites the model for what it needs (exposed tensors, a backward
graph) and may ask for the same rewrite again, so :func:`get_session` keeps the
last few sessions keyed by a hash of the serialized model and its weights: the
same model is never compiled twice. Large weights go to onnxruntime as arrays
beside the model bytes (:func:`pack`), not serialized into them. :class:`Session`
checks feeds before onnxruntime sees them, so a wrongly sized image gets a message
that says what to do instead of a C++ shape error.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort

from onnxviz.errors import ImageError, ModelLoadError, OnnxvizError, UnknownTensorError
from onnxviz.graph.load import without_initializers
from onnxviz.runtime.progress import progress as progress_bar
from onnxviz.runtime.providers import resolve_providers

#: Default number of samples sent to onnxruntime in one call.
DEFAULT_BATCH_SIZE = 32
#: How many sessions :func:`get_session` keeps.
CACHE_SIZE = 16

Dim = int | str | None

# onnxruntime type strings -> numpy dtypes, for converting feeds
_DTYPES: dict[str, np.dtype] = {
    f"tensor({name})": np.dtype(dtype)
    for name, dtype in {
        "float": np.float32,
        "float16": np.float16,
        "double": np.float64,
        "int8": np.int8,
        "int16": np.int16,
        "int32": np.int32,
        "int64": np.int64,
        "uint8": np.uint8,
        "uint16": np.uint16,
        "uint32": np.uint32,
        "uint64": np.uint64,
        "bool": np.bool_,
    }.items()
}


class Session:
    """An ``onnxruntime.InferenceSession`` with checked feeds and batched runs.

    Args:
        model: a ModelProto (IR version onnxruntime reads: see
            ``graph.load.fix_ir_version``), its serialized bytes, or :func:`pack` of it.
        providers: onnxruntime provider names in order of preference (default:
            ``resolve_providers("auto")``).
        threads: intra-op threads (None: onnxruntime's default, one per core).
        order: the order onnxruntime runs the nodes in (see :func:`session_options`).

    Raises:
        ModelLoadError: onnxruntime cannot load the model.
    """

    def __init__(
        self,
        model: onnx.ModelProto | bytes | Packed,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        order: str = "default",
    ) -> None:
        packed = model if isinstance(model, Packed) else pack(model)
        providers = list(providers) if providers is not None else resolve_providers("auto")
        options = session_options(threads, order)
        if packed.names:  # copied into the session: the arrays may go once it is built
            options.add_external_initializers(
                packed.names, [ort.OrtValue.ortvalue_from_numpy(a) for a in packed.arrays])
        try:
            self._session = ort.InferenceSession(packed.data, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind classes
            raise ModelLoadError(
                f"onnxruntime {ort.__version__} cannot load the model ({_first_line(exc)}); "
                f"check that its ops and opset are ones onnxruntime supports"
            ) from exc
        inputs = self._session.get_inputs()
        self.input_names: list[str] = [i.name for i in inputs]
        self.output_names: list[str] = [o.name for o in self._session.get_outputs()]
        self.input_shapes: dict[str, tuple[Dim, ...]] = {i.name: tuple(i.shape) for i in inputs}
        self.input_types: dict[str, str] = {i.name: i.type for i in inputs}

    @property
    def providers(self) -> list[str]:
        """The providers onnxruntime really uses (CUDA is dropped when it failed)."""
        return self._session.get_providers()

    @property
    def input_batch_sizes(self) -> dict[str, int | None]:
        """Static batch dimension (axis 0) per input, or None where it is dynamic."""
        return {
            name: shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
            for name, shape in self.input_shapes.items()
        }

    def __repr__(self) -> str:
        return f"Session(inputs={self.input_names}, outputs={self.output_names}, providers={self.providers})"

    # ----------------------------------------------------------------- running
    def run(
        self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run once on exactly the given arrays.

        Args:
            feeds: input name -> array. Float inputs are converted to the model's
                float type (float32 for most models).
            outputs: names of outputs to compute (default: all).

        Returns:
            Output name -> numpy array (on the host).

        Raises:
            ImageError: a missing input, a wrong rank, size or static batch.
            UnknownTensorError: a feed or output name the model does not have.
        """
        return self._run(self._prepare(feeds, free_batch=()), self._outputs(outputs))

    def run_batched(
        self,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        batch_size: int | None = None,
        batched: Iterable[str] | None = None,
        progress: bool | str = False,
    ) -> dict[str, np.ndarray]:
        """Run in chunks along axis 0 and concatenate the outputs along axis 0.

        Args:
            feeds: input name -> array.
            outputs: names of outputs to compute (default: all). Each must have
                the batch as its axis 0.
            batch_size: samples per onnxruntime call (default 32). A static batch
                dimension overrides it: a model fixed at batch 1 runs one sample
                at a time; one fixed at B > 1 gets chunks of B, the last padded by
                repeating its last sample and the padding cut off again.
            batched: the inputs to split (default: all fed inputs); the others
                are passed whole to every call.
            progress: draw a progress bar on stderr; a string is its label.

        Returns:
            Output name -> array with one row per sample.

        Raises:
            ImageError: bad inputs (see :meth:`run`), batched inputs of
                different lengths, or an empty batch.
        """
        names = list(feeds) if batched is None else list(dict.fromkeys(batched))
        missing = [n for n in names if n not in feeds]
        if missing:
            raise ImageError(
                f"batched input(s) {missing} are not in the feeds ({list(feeds)}); "
                f"feed them or leave them out of `batched`"
            )
        prepared = self._prepare(feeds, free_batch=names)
        wanted = self._outputs(outputs)
        if not names:
            return self._run(prepared, wanted)
        n = _common_length(prepared, names)
        chunk, static = self._chunk_size(names, batch_size)
        label = progress if isinstance(progress, str) else ""
        if n <= chunk and (static is None or n == static):  # one call, no copies
            for _ in progress_bar(range(1), 1, label, enabled=bool(progress)):
                whole = self._run(prepared, wanted)
            return whole
        starts = range(0, n, chunk)
        results: dict[str, np.ndarray] = {}
        for start in progress_bar(starts, len(starts), label, enabled=bool(progress)):
            stop = min(start + chunk, n)
            part = dict(prepared)
            for name in names:
                rows = prepared[name][start:stop]
                part[name] = rows if static is None else pad_rows(rows, static)
            sent = stop - start if static is None else static
            for name, value in self._run(part, wanted).items():
                _store(results, name, value, sent, start, stop, n)
        return results

    def _chunk_size(self, names: Sequence[str], batch_size: int | None) -> tuple[int, int | None]:
        """(samples per call, the static batch size to pad to or None)."""
        if batch_size is not None:
            check_batch_size(batch_size)
        statics = {self.input_batch_sizes.get(n) for n in names} - {None}
        if len(statics) > 1:
            raise ImageError(
                f"the batched inputs have different static batch sizes {sorted(statics)}; "
                f"batch only inputs that share one (the `batched` argument)"
            )
        if statics:
            (static,) = statics
            return static, static
        return int(batch_size or DEFAULT_BATCH_SIZE), None

    def _run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        try:
            values = self._session.run(outputs, feeds)
        except Exception as exc:  # onnxruntime's pybind classes
            kind = type(exc).__name__
            shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in feeds.items())
            cls = ImageError if kind == "InvalidArgument" else OnnxvizError
            raise cls(
                f"onnxruntime could not run the model on inputs ({shapes}): {_first_line(exc)}; "
                f"check the inputs against the model's (`onnxviz inspect` lists them)"
            ) from exc
        return dict(zip(outputs, values))

    # ----------------------------------------------------------------- checking
    def _outputs(self, outputs: Sequence[str] | None) -> list[str]:
        if outputs is None:
            return list(self.output_names)
        wanted = list(dict.fromkeys(outputs))
        known = set(self.output_names)
        unknown = [o for o in wanted if o not in known]
        if unknown:
            raise UnknownTensorError(
                f"the model has no output(s) {unknown}; its outputs are {self.output_names} "
                f"(expose a tensor as an output first: graph.rewrite.expose)"
            )
        return wanted

    def _prepare(self, feeds: Mapping[str, np.ndarray], free_batch: Iterable[str]) -> dict[str, np.ndarray]:
        """Check every feed against the model's inputs; convert dtypes; make contiguous.

        Inputs in ``free_batch`` may have any length on axis 0 (run_batched splits
        and pads them).
        """
        unknown = [name for name in feeds if name not in self.input_shapes]
        if unknown:
            raise UnknownTensorError(
                f"the model has no input(s) {unknown}; its inputs are {self.input_names}"
            )
        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            expected = ", ".join(f"{n!r} of shape {_format(self.input_shapes[n])}" for n in missing)
            raise ImageError(
                f"no array given for model input(s) {expected}; feed every input by name, "
                f"e.g. {{{missing[0]!r}: x}}"
            )
        free = set(free_batch)
        return {
            name: self._check(name, np.asarray(value), name not in free) for name, value in feeds.items()
        }

    def _check(self, name: str, x: np.ndarray, check_batch: bool) -> np.ndarray:
        expected = self.input_shapes[name]
        if x.ndim != len(expected) or any(
            isinstance(want, int) and want > 0 and want != got
            for want, got in zip(expected[1:], x.shape[1:])
        ):
            raise ImageError(
                f"model input {name!r} expects {_format(expected)}, got {tuple(x.shape)}: "
                f"{_shape_hint(expected, x.shape)}"
            )
        static = expected[0] if expected and isinstance(expected[0], int) and expected[0] > 0 else None
        if check_batch and static is not None and x.shape[0] != static:
            raise ImageError(
                f"model input {name!r} is fixed at batch {static}, got {x.shape[0]} sample(s): "
                f"use Session.run_batched, which splits and pads batches"
            )
        return self._convert(name, x)

    def _convert(self, name: str, x: np.ndarray) -> np.ndarray:
        want = _DTYPES.get(self.input_types[name])
        if want is not None and x.dtype != want:
            if not np.can_cast(x.dtype, want, "same_kind"):
                raise ImageError(
                    f"model input {name!r} takes {self.input_types[name]}, got an array of "
                    f"{x.dtype}; convert it first"
                )
            x = x.astype(want)
        return np.ascontiguousarray(x)


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as an int, or an OnnxvizError when it is not a positive integer."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise OnnxvizError(f"batch size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


# --------------------------------------------------------------------------- options and cache
#: ``order`` values of :func:`session_options`
EXECUTION_ORDERS = {"default": ort.ExecutionOrder.DEFAULT, "priority": ort.ExecutionOrder.PRIORITY_BASED}


def session_options(threads: int | None = None, order: str = "default") -> ort.SessionOptions:
    """Quiet logging, all graph optimisations, ``threads`` intra-op threads, one inter-op,
    no spinning, nodes run in ``order``.

    onnxruntime's worker threads spin for a while after each run by default. A method
    here runs several sessions back to back (the forward model for the top class, then
    the gradient model), and the first session's spinning threads then take the cores
    from the second: with 2 cores that made the second run up to 1.5x slower.

    ``order="priority"`` suits a model whose outputs are many intermediate tensors: in
    the default order onnxruntime copies them out of its blocked layout only after the
    last layer, from memory, and in priority order each right after its producer, from
    cache (6-9% faster for every tensor of the shipped model at batch 1, the same at 16;
    an input gradient runs 5% slower in it).
    """
    if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
        raise OnnxvizError(f"threads must be a positive integer or None, got {threads!r}")
    if order not in EXECUTION_ORDERS:
        raise OnnxvizError(f"order must be one of {sorted(EXECUTION_ORDERS)}, got {order!r}")
    options = ort.SessionOptions()
    options.execution_order = EXECUTION_ORDERS[order]
    options.log_severity_level = 4  # FATAL only: an error's text is in the exception we raise
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


_cache: OrderedDict[tuple, Session] = OrderedDict()
_cache_lock = threading.Lock()


def get_session(model: onnx.ModelProto | bytes, provider: str = "auto", threads: int | None = None,
                order: str = "default") -> Session:
    """A session for ``model``, reused while the same model is asked for again.

    Args:
        model: a ModelProto or its serialized bytes.
        provider: "auto", "cpu" or "cuda" (see ``resolve_providers``).
        threads: intra-op threads (None: onnxruntime's default).
        order: "default" or "priority" (see :func:`session_options`).

    Returns:
        A cached :class:`Session` when one exists for the same model bytes,
        providers, threads and order (the last :data:`CACHE_SIZE` are kept), else a new one.
    """
    providers = resolve_providers(provider)
    packed = pack(model)
    key = (packed.key, tuple(providers), threads, order)
    with _cache_lock:  # held while building, so two threads never build the same model
        session = _cache.get(key)
        if session is not None:
            _cache.move_to_end(key)
            return session
        session = Session(packed, providers, threads, order)
        _cache[key] = session
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return session


def clear_cache() -> None:
    """Forget every cached session (frees their memory once no one else holds them)."""
    with _cache_lock:
        _cache.clear()


# --------------------------------------------------------------------------- helpers
# Initializers with at least this many bytes of raw data travel to onnxruntime as arrays
# beside the model bytes (SessionOptions.add_external_initializers) instead of inside them.
EXTERNAL_MIN_BYTES = 16 * 1024

# ONNX tensor types that go to onnxruntime as numpy arrays
_NUMPY_TYPES = {
    onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT8: np.int8, onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.UINT16: np.uint16, onnx.TensorProto.INT32: np.int32, onnx.TensorProto.INT64: np.int64,
}


@dataclass(frozen=True)
class Packed:
    """A model as it goes to onnxruntime: serialized bytes whose large initializers are
    references to ``arrays`` (same order as ``names``), and a key that identifies it."""

    data: bytes
    names: list[str] = field(default_factory=list)
    arrays: list[np.ndarray] = field(default_factory=list, repr=False)
    key: tuple = ()


def pack(model: onnx.ModelProto | bytes | Packed) -> Packed:
    """Serialize ``model`` for onnxruntime, its large weights left out of the bytes.

    Serialising weights costs seconds on a VGG (protobuf writes about 200 MB/s here), and
    onnxruntime parses them back; passed as arrays, they are copied once. The key is
    Python's 64-bit hash of the bytes and of each weight: a cryptographic digest runs at
    250 MB/s on a small machine, and the session cache lives and dies with this process.

    Raises:
        ModelLoadError: the graph itself is over protobuf's 2 GiB limit.
    """
    if isinstance(model, Packed):
        return model
    if isinstance(model, bytes):
        return Packed(model, key=(len(model), hash(model)))
    graph = model.graph
    moved = [i for i, init in enumerate(graph.initializer)  # sized from dims: raw_data reads copy
             if init.data_type in _NUMPY_TYPES and init.HasField("raw_data")
             and init.data_location != onnx.TensorProto.EXTERNAL
             and math.prod(init.dims) * np.dtype(_NUMPY_TYPES[init.data_type]).itemsize >= EXTERNAL_MIN_BYTES]
    if not moved or not hasattr(ort.SessionOptions, "add_external_initializers"):
        data = _serialize(model)
        return Packed(data, key=(len(data), hash(data)))
    bare = without_initializers(model)
    moving = set(moved)
    names, arrays, raw_keys = [], [], []
    for index, init in enumerate(graph.initializer):
        if index not in moving:
            bare.graph.initializer.append(init)
            continue
        raw = init.raw_data
        stub = bare.graph.initializer.add(name=init.name, data_type=init.data_type, dims=init.dims,
                                          data_location=onnx.TensorProto.EXTERNAL)
        for key, value in (("location", "onnxviz-arrays"), ("offset", "0"), ("length", str(len(raw)))):
            stub.external_data.add(key=key, value=value)
        names.append(init.name)
        arrays.append(np.frombuffer(raw, dtype=np.dtype(_NUMPY_TYPES[init.data_type]).newbyteorder("<"))
                      .reshape(tuple(init.dims)))
        raw_keys.append((init.name, hash(raw)))
    data = _serialize(bare)
    return Packed(data, names, arrays, key=(len(data), hash(data), tuple(raw_keys)))


def _serialize(model: onnx.ModelProto) -> bytes:
    try:
        return model.SerializeToString()
    except ValueError as exc:  # protobuf refuses messages over 2 GiB
        raise ModelLoadError(
            f"the model cannot be serialized in memory ({_first_line(exc)}); models over "
            f"2 GiB must keep their weights in external data files"
        ) from exc


def _common_length(feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> int:
    lengths = {name: (feeds[name].shape[0] if feeds[name].ndim else None) for name in names}
    if None in lengths.values():
        scalars = [n for n, length in lengths.items() if length is None]
        raise ImageError(f"input(s) {scalars} have no batch axis to split; leave them out of `batched`")
    if len(set(lengths.values())) > 1:
        raise ImageError(
            f"inputs batched together must have the same number of samples, got "
            f"{', '.join(f'{n}: {length}' for n, length in lengths.items())}"
        )
    n = next(iter(lengths.values()))
    if n == 0:
        raise ImageError("empty batch: give at least one sample")
    return n


def pad_rows(rows: np.ndarray, size: int) -> np.ndarray:
    """Fill a short chunk up to ``size`` rows by repeating its last row.

    A real sample, not zeros: zeros can be far outside the data a model was
    trained on (NaN after some normalisations); the padded rows are cut off anyway.
    """
    if rows.shape[0] == size:
        return rows
    extra = np.repeat(rows[-1:], size - rows.shape[0], axis=0)
    return np.concatenate([rows, extra], axis=0)


def _store(
    results: dict[str, np.ndarray], name: str, value: np.ndarray, sent: int, start: int, stop: int, n: int
) -> None:
    """Copy one chunk's output rows into the full-size result array."""
    value = np.asarray(value)
    if value.ndim == 0 or value.shape[0] != sent:
        raise OnnxvizError(
            f"output {name!r} has shape {value.shape} for a chunk of {sent} samples, so its "
            f"axis 0 is not the batch; run it unbatched with Session.run"
        )
    if name not in results:
        results[name] = np.empty((n, *value.shape[1:]), dtype=value.dtype)
    elif results[name].shape[1:] != value.shape[1:]:
        raise OnnxvizError(
            f"output {name!r} changes shape between chunks ({results[name].shape[1:]} vs "
            f"{value.shape[1:]}); run it unbatched with Session.run"
        )
    results[name][start:stop] = value[: stop - start]


def _format(shape: Sequence[Dim]) -> str:
    """``(N, 3, 224, 224)``: a dynamic batch is N, other dynamic axes their name or ?."""
    dims = []
    for axis, dim in enumerate(shape):
        if isinstance(dim, int) and dim > 0:
            dims.append(str(dim))
        elif axis == 0:
            dims.append("N")
        else:
            dims.append(dim if isinstance(dim, str) and dim else "?")
    return "(" + ", ".join(dims) + (",)" if len(dims) == 1 else ")")


def _shape_hint(expected: Sequence[Dim], given: Sequence[int]) -> str:
    """What to do about an array whose shape does not fit."""
    if len(given) == len(expected) - 1 and _fits(expected[1:], given):
        return "add a batch axis (x[None]) to feed one sample"
    if len(expected) == 4 and len(given) == 4:
        nhwc_to_nchw = (given[0], given[3], given[1], given[2])
        nchw_to_nhwc = (given[0], given[2], given[3], given[1])
        if _fits(expected, nhwc_to_nchw):
            return (
                "the array looks NHWC but the model wants NCHW: transpose it "
                "(x.transpose(0, 3, 1, 2)) or preprocess with layout='NCHW'"
            )
        if _fits(expected, nchw_to_nhwc):
            return (
                "the array looks NCHW but the model wants NHWC: transpose it "
                "(x.transpose(0, 2, 3, 1)) or preprocess with layout='NHWC'"
            )
    if len(expected) == 4:
        return "preprocess the image with the model's preprocessing, e.g. Model.preprocess(path)"
    return f"give an array of shape {_format(expected)}"


def _fits(expected: Sequence[Dim], given: Sequence[int]) -> bool:
    return len(expected) == len(given) and all(
        not (isinstance(e, int) and e > 0) or e == g for e, g in zip(expected, given)
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:400]


__all__ = ["CACHE_SIZE", "DEFAULT_BATCH_SIZE", "Session", "clear_cache", "get_session", "session_options"]
