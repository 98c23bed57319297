"""autolora.doctor: the doctor report's data and its text form."""

from __future__ import annotations

import sys

import torch

import autolora_kernels
from autolora import doctor as backends
from autolora_kernels import _ext


def test_describe_reports_versions_device_and_backends():
    d = backends.describe(build=True)
    assert d["versions"]["torch"] == torch.__version__
    assert d["device"]["type"] == ("cuda" if torch.cuda.is_available() else "cpu")
    # The path of the device a run would use, as autolora_kernels reports it (not the other device's).
    want_layer = autolora_kernels.layer_backend(d["device"]["type"])
    assert d["layer_backend"] == {"name": want_layer, "source": "autolora_kernels.layer_backend()"}
    assert d["extension"]["compiled"] == _ext.info()["loaded"]
    expected = (
        {"cpu": "cpu-ext", "cuda": "cuda-ext"}[d["device"]["type"]] if _ext.info()["loaded"] else "foreach"
    )
    if d["device"]["type"] == "cuda" and not _ext.info()["cuda_kernels"]:
        expected = "foreach"
    assert d["lookahead_backend"] == expected
    text = backends.format_description(d)
    assert f"lookahead:  {expected}" in text and torch.__version__ in text


def test_describe_with_extension_disabled(monkeypatch):
    monkeypatch.setenv("AUTOLORA_DISABLE_EXT", "1")
    d = backends.describe()
    assert d["lookahead_backend"] == "foreach"
    assert d["extension"]["state"].startswith("disabled")


def test_layer_backend_reports_the_path_autolora_linear_takes(monkeypatch):
    from autolora_kernels import layer_backend

    monkeypatch.delenv("AUTOLORA_FORCE_REFERENCE", raising=False)
    monkeypatch.delenv("AUTOLORA_TRITON_ON_CPU", raising=False)
    monkeypatch.delenv("AUTOLORA_KERNEL", raising=False)
    # triton is a dependency of the test environment: on CUDA the dispatcher chooses per shape
    assert layer_backend("cuda").startswith("auto: triton or composite")
    assert layer_backend("cpu") == "reference (cpu tensors)"
    monkeypatch.setenv("AUTOLORA_KERNEL", "fused")
    assert layer_backend("cuda") == "triton (AUTOLORA_KERNEL=fused)"
    monkeypatch.setenv("AUTOLORA_KERNEL", "composite")
    assert layer_backend("cpu") == layer_backend("cuda") == "composite (AUTOLORA_KERNEL=composite)"
    monkeypatch.setenv("AUTOLORA_FORCE_REFERENCE", "1")
    assert layer_backend("cuda") == "reference (AUTOLORA_FORCE_REFERENCE=1)"


def test_report_says_why_the_extension_cannot_build_and_lists_the_extras(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    error = "RuntimeError: no C++ compiler: 'no-such-compiler-xyz' is not on PATH\nthe log's tail"
    monkeypatch.setattr(
        _ext, "_state", {"tried": True, "loaded": False, "error": error, "how": None, "cuda": False}
    )
    lines = backends.format_description(backends.describe()).splitlines()
    assert f"  build:    {_ext.cuda_plan()[1]}" in lines
    assert "  cannot build: no C++ compiler: 'no-such-compiler-xyz' is not on PATH" in "\n".join(lines)
    assert "  error:    RuntimeError: no C++ compiler: 'no-such-compiler-xyz' is not on PATH" in lines
    assert "the log's tail" not in "\n".join(lines)
    assert 'extra plots:    missing matplotlib (pip install "autolora[plots]")' in lines
    assert 'extra cli:      missing matplotlib (pip install "autolora[cli]")' in lines
    assert "extra peft:     installed" in lines
