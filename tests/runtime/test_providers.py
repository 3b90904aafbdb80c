"""Provider probing and resolution: quiet fail-over to CPU, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import onnxruntime as ort
import pytest

from onnxviz.errors import RuntimeProviderError
from onnxviz.runtime import providers
from onnxviz.runtime.providers import CPU, CUDA, ENV_VAR, available_providers, resolve_providers


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Each test probes anew (and leaves no mocked result cached for later tests)."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    providers._probe_cuda.cache_clear()
    yield
    providers._probe_cuda.cache_clear()


def fake_cuda(monkeypatch, works: bool) -> None:
    monkeypatch.setattr(providers, "cuda_status", lambda: (works, "" if works else "no GPU (test)"))


# --------------------------------------------------------------------------- the probe
def test_cpu_is_always_available_and_last():
    found = available_providers()
    assert found[-1] == CPU
    assert set(found) <= {CUDA, CPU}
    assert "TensorrtExecutionProvider" not in found


def test_probe_fails_over_quietly_when_cuda_is_listed_but_broken(monkeypatch, capfd):
    """onnxruntime lists CUDA, the session silently drops it and logs to fd 2 from C++."""
    real_session = ort.InferenceSession
    asked: list[list[str]] = []

    def broken_cuda_session(model, sess_options=None, providers=None, **kw):
        asked.append(list(providers))
        os.write(2, b"[E:onnxruntime:Default] FAIL : libcublasLt.so.13: cannot open shared object file\n")
        return real_session(model, sess_options=sess_options, providers=[CPU])

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", broken_cuda_session)

    assert available_providers() == [CPU]
    assert asked == [[CUDA, CPU]]  # CUDA first, never TensorRT
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    works, why = providers.cuda_status()
    assert not works and "libcublasLt.so.13" in why


def test_probe_fails_over_quietly_when_the_cuda_session_raises(monkeypatch, capfd):
    def raising(*args, **kw):
        os.write(2, b"noise from C++\n")
        raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", raising)
    assert available_providers() == [CPU]
    assert capfd.readouterr() == ("", "")
    assert "no CUDA-capable device" in providers.cuda_status()[1]


def test_probe_accepts_cuda_that_really_runs(monkeypatch):
    """A session that keeps CUDA and returns a + b counts as working."""
    real_session = ort.InferenceSession

    class FakeCudaSession:
        def __init__(self, model, sess_options=None, providers=None):
            self.inner = real_session(model, sess_options=sess_options, providers=[CPU])

        def get_providers(self):
            return [CUDA, CPU]

        def run(self, outputs, feeds):
            return self.inner.run(outputs, feeds)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", FakeCudaSession)
    assert available_providers() == [CUDA, CPU]
    assert resolve_providers("cuda") == [CUDA, CPU]


def test_probe_rejects_cuda_with_wrong_numbers(monkeypatch):
    import numpy as np

    class WrongSession:
        def __init__(self, *args, **kw):
            pass

        def get_providers(self):
            return [CUDA, CPU]

        def run(self, outputs, feeds):
            return [np.zeros(3, np.float32)]

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", WrongSession)
    assert available_providers() == [CPU]
    assert "wrong numbers" in providers.cuda_status()[1]


def test_probe_without_cuda_build_makes_no_session(monkeypatch):
    def forbidden(*args, **kw):
        raise AssertionError("no session should be built")

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    monkeypatch.setattr(ort, "InferenceSession", forbidden)
    assert available_providers() == [CPU]
    assert "onnxruntime-gpu" in providers.cuda_status()[1]


def test_probe_runs_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(ort, "get_available_providers", lambda: calls.append(1) or [CPU])
    for _ in range(3):
        available_providers()
    assert len(calls) == 1


PROBE_SCRIPT = textwrap.dedent(
    """
    import sys
    import onnxruntime as ort
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        # a CPU-only build: pretend CUDA is listed so the real session is asked for it
        listed = ["CUDAExecutionProvider", *ort.get_available_providers()]
        ort.get_available_providers = lambda: listed
    from onnxviz.runtime.providers import available_providers, resolve_providers, cuda_status
    print(available_providers(), resolve_providers("auto"), cuda_status()[0])
    try:
        resolve_providers("cuda")
        print("cuda ok")
    except Exception as exc:
        print(type(exc).__name__)
    print("stderr still works", file=sys.stderr)
    """
)


def test_import_and_real_probe_print_nothing_to_stderr():
    """The real probe in a fresh process: nothing on stderr, and fd 2 restored afterwards."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "stderr still works\n"
    lines = result.stdout.splitlines()
    if "True" in lines[0]:  # a machine with a working GPU
        assert lines[1] == "cuda ok"
    else:
        assert lines[0] == "['CPUExecutionProvider'] ['CPUExecutionProvider'] False"
        assert lines[1] == "RuntimeProviderError"


# --------------------------------------------------------------------------- resolution
@pytest.mark.parametrize("works", [True, False])
def test_auto_uses_cuda_only_when_it_works(monkeypatch, works):
    fake_cuda(monkeypatch, works)
    assert resolve_providers("auto") == ([CUDA, CPU] if works else [CPU])
    assert resolve_providers() == resolve_providers("AUTO")


@pytest.mark.parametrize("works", [True, False])
def test_cpu_is_cpu_only(monkeypatch, works):
    fake_cuda(monkeypatch, works)
    assert resolve_providers("cpu") == [CPU]
    assert resolve_providers(" CPU ") == [CPU]


def test_cuda_falls_back_to_cpu_for_missing_ops(monkeypatch):
    fake_cuda(monkeypatch, True)
    assert resolve_providers("cuda") == [CUDA, CPU]


def test_cuda_raises_when_unusable(monkeypatch):
    fake_cuda(monkeypatch, False)
    with pytest.raises(RuntimeProviderError, match=r"CUDA is not usable here: no GPU \(test\); use --provider cpu"):
        resolve_providers("cuda")


@pytest.mark.parametrize("name", ["gpu", "tensorrt", "CUDAExecutionProvider", ""])
def test_unknown_provider_lists_the_choices(name):
    with pytest.raises(RuntimeProviderError, match=r"unknown execution provider .*choose one of auto, cpu, cuda"):
        resolve_providers(name)


def test_env_var_overrides_auto_only(monkeypatch):
    fake_cuda(monkeypatch, True)
    monkeypatch.setenv(ENV_VAR, "cpu")
    assert resolve_providers("auto") == [CPU]
    assert resolve_providers("cuda") == [CUDA, CPU]  # an explicit choice wins
    monkeypatch.setenv(ENV_VAR, "auto")
    assert resolve_providers("auto") == [CUDA, CPU]


def test_env_var_cuda_raises_when_unusable(monkeypatch):
    fake_cuda(monkeypatch, False)
    monkeypatch.setenv(ENV_VAR, "cuda")
    with pytest.raises(RuntimeProviderError, match="CUDA is not usable here"):
        resolve_providers("auto")
    assert resolve_providers("cpu") == [CPU]


def test_bad_env_var_is_named(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "tpu")
    with pytest.raises(RuntimeProviderError, match=f"'tpu' \\(environment variable {ENV_VAR}\\)"):
        resolve_providers("auto")
