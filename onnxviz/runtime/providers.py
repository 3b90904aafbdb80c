"""Which onnxruntime execution providers really work here, and which to use.

``onnxruntime.get_available_providers()`` lists the providers a build was
compiled with, not those that work: onnxruntime-gpu lists CUDA on a machine
without a GPU (or without the CUDA/cuDNN libraries), then silently falls back to
CPU when a session is made, printing errors to the C-level stderr. So CUDA
counts as available only after a tiny model really ran on it, and that probe runs
once per process with file descriptor 2 captured, so a CPU machine prints nothing.

TensorRT is never picked automatically: it compiles engines for minutes on first
use and needs its own libraries.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

from onnxviz.errors import RuntimeProviderError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

#: What ``--provider`` / ``provider=`` accept.
CHOICES = ("auto", "cpu", "cuda")

#: Environment variable that replaces ``"auto"`` (e.g. ``ONNXVIZ_PROVIDER=cpu``).
ENV_VAR = "ONNXVIZ_PROVIDER"

# onnxruntime's default logger severity (WARNING); there is no getter to save it.
_ORT_DEFAULT_SEVERITY = 2
_QUIET_SEVERITY = 3  # ERROR: hides the warnings; errors go to the captured fd 2
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_DIRS = re.compile(r"(?<![\w.])/(?:[^\s/]+/)+")
_probe_lock = threading.Lock()


def available_providers() -> list[str]:
    """The execution providers that really work on this machine, best first.

    ``CPUExecutionProvider`` always; ``CUDAExecutionProvider`` before it when a
    tiny model really ran on CUDA (probed once per process, quietly).

    Returns:
        A new list, e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]``.
    """
    return [CUDA, CPU] if cuda_status()[0] else [CPU]


def cuda_status() -> tuple[bool, str]:
    """Whether CUDA really works here, and why not when it does not (probed once)."""
    with _probe_lock:  # two threads probing at once would interleave the fd swaps
        return _probe_cuda()


@functools.cache
def _probe_cuda() -> tuple[bool, str]:
    """Run one Add on CUDA and check the provider stuck and the numbers are right."""
    import numpy as np
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return False, (
            "this onnxruntime build has no CUDA provider (install onnxruntime-gpu "
            "instead of onnxruntime)"
        )
    a = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    b = np.array([0.5, 4.0, -1.0], dtype=np.float32)
    captured = ""
    try:
        with _captured_stderr() as read_captured:
            try:
                ort.set_default_logger_severity(_QUIET_SEVERITY)
                options = ort.SessionOptions()
                options.log_severity_level = _QUIET_SEVERITY
                session = ort.InferenceSession(
                    _add_model_bytes(), sess_options=options, providers=[CUDA, CPU]
                )
                used = session.get_providers()
                out = session.run(None, {"a": a, "b": b})[0] if CUDA in used else None
            finally:
                ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)
                captured = read_captured()
    except Exception as exc:  # any failure at all means: not usable
        return False, f"a test session on CUDA failed ({_first_line(str(exc))})"
    if CUDA not in used:
        detail = _ort_error(captured)
        why = f": {detail}" if detail else " (no GPU, or the CUDA/cuDNN libraries are missing)"
        return False, f"onnxruntime could not start its CUDA provider{why}"
    if not np.allclose(out, a + b):
        return False, "a test Add on CUDA returned wrong numbers"
    return True, ""


def resolve_providers(provider: str = "auto") -> list[str]:
    """The provider list to give onnxruntime for a ``--provider`` choice.

    Args:
        provider: "auto" (CUDA when it really works, else CPU), "cpu" or "cuda"
            (case-insensitive). The ``ONNXVIZ_PROVIDER`` environment variable,
            when set, replaces "auto".

    Returns:
        ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` (CPU runs the ops
        CUDA lacks) or ``["CPUExecutionProvider"]``.

    Raises:
        RuntimeProviderError: an unknown choice, or "cuda" where CUDA does not work.
    """
    choice = _normalise(provider, "provider")
    if choice == "auto":
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            choice = _normalise(env, f"environment variable {ENV_VAR}")
    if choice == "cpu":
        return [CPU]
    if choice == "auto":
        return available_providers()
    works, why = cuda_status()
    if not works:
        raise RuntimeProviderError(
            f"CUDA is not usable here: {why}; use --provider cpu or --provider auto "
            f"(provider='cpu' or 'auto' from Python)"
        )
    return [CUDA, CPU]


def _normalise(value: object, what: str) -> str:
    choice = str(value).strip().lower()
    if choice not in CHOICES:
        raise RuntimeProviderError(
            f"unknown execution provider {value!r} ({what}); choose one of "
            f"{', '.join(CHOICES)}"
        )
    return choice


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """Point file descriptor 2 at a temporary file; yield a function reading it.

    onnxruntime logs from C++ straight to fd 2, which ``sys.stderr`` swaps cannot
    catch. The original descriptor is always restored. Where fd 2 is not open
    (some GUI launchers) nothing is redirected.
    """
    with tempfile.TemporaryFile(mode="w+b") as sink:

        def read() -> str:
            sink.flush()
            sink.seek(0)
            return sink.read().decode("utf-8", "replace")

        _flush_stderr()
        try:
            saved = os.dup(2)
        except OSError:
            saved = None
        if saved is None:
            yield lambda: ""
            return
        try:
            os.dup2(sink.fileno(), 2)
            yield read
        finally:
            _flush_stderr()  # Python-level writes made meanwhile stay in the sink
            os.dup2(saved, 2)
            os.close(saved)


def _flush_stderr() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()


def _ort_error(text: str) -> str:
    """The gist of onnxruntime's last logged error, e.g. the missing library's name."""
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    last = lines[-1]
    for marker in ("FAIL : ", "] "):
        if marker in last:
            last = last.rsplit(marker, 1)[1]
            break
    return _DIRS.sub("", last)[:300]  # library names say enough; their folders are long


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def _add_model_bytes() -> bytes:
    """A one-Add model (IR 8, opset 13: every onnxruntime we support reads it)."""
    from onnx import TensorProto, helper

    vec = [3]
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "onnxviz_cuda_probe",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, vec),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, vec),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, vec)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


__all__ = ["CHOICES", "CPU", "CUDA", "ENV_VAR", "available_providers", "cuda_status", "resolve_providers"]
