"""autolora_kernels/_ext.py: which build the first use starts, and why one cannot start.

The probes are replaced (torch.version.cuda, torch.cuda.is_available, CUDA_HOME, the compiler) to
play the machines this one is not: a CUDA torch without a GPU (a Docker image build), a CUDA torch
without nvcc (a runtime-only CUDA image), and a full CUDA install. test_lookahead.py builds and loads
the real CPU-only extension on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autolora_kernels import _ext

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cuda_torch(monkeypatch, tmp_path):
    """A CUDA 12.8 torch with a visible GPU and a CUDA toolkit (bin/nvcc) at the returned path."""
    for name in ("AUTOLORA_SKIP_CUDA_BUILD", "TORCH_CUDA_ARCH_LIST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "nvcc").write_text("")
    monkeypatch.setattr(_ext.cpp_extension(), "CUDA_HOME", str(home))
    return home


def test_cuda_build_when_torch_gpu_and_nvcc_are_all_there(cuda_torch):
    with_cuda, why = _ext.cuda_plan()
    assert with_cuda and why == f"CPU and CUDA 12.8 (nvcc {cuda_torch / 'bin' / 'nvcc'})"


def test_cuda_torch_without_a_gpu_builds_cpu_only(cuda_torch, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _ext.cuda_plan() == (
        False,
        "CPU-only (no CUDA GPU visible; TORCH_CUDA_ARCH_LIST=9.0 etc. builds CUDA without one)",
    )
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")  # the architectures named: no GPU needed
    assert _ext.cuda_plan()[0]


@pytest.mark.parametrize(
    "case, why",
    [
        ("no toolkit", "CPU-only (no CUDA toolkit: nvcc is not on PATH and CUDA_HOME is not set)"),
        ("runtime only", "CPU-only (no nvcc in the CUDA toolkit at {home}: a runtime-only install?)"),
        ("cpu torch", "CPU-only (torch is a CPU build)"),
        ("skip", "CPU-only (AUTOLORA_SKIP_CUDA_BUILD=1)"),
    ],
)
def test_cpu_only_build_says_why(cuda_torch, monkeypatch, case, why):
    if case == "no toolkit":
        monkeypatch.setattr(_ext.cpp_extension(), "CUDA_HOME", None)
    elif case == "runtime only":
        (cuda_torch / "bin" / "nvcc").unlink()
    elif case == "cpu torch":
        monkeypatch.setattr(torch.version, "cuda", None)
    else:
        monkeypatch.setenv("AUTOLORA_SKIP_CUDA_BUILD", "1")
    assert _ext.cuda_plan() == (False, why.format(home=cuda_torch))


def test_first_use_without_a_gpu_compiles_no_cuda_source(cuda_torch, monkeypatch, tmp_path):
    """What reaches torch.utils.cpp_extension.load for a CUDA torch on a machine without a GPU: the
    C++ source alone and with_cuda=False, so torch never looks for GPU architectures."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    monkeypatch.setattr(_ext, "missing_tool", lambda: None)  # the compiler is not what is tested
    calls = []
    monkeypatch.setattr(_ext.cpp_extension(), "load", lambda **kw: calls.append(kw))
    _ext._jit_build(verbose=False)
    (call,) = calls
    assert call["with_cuda"] is False
    assert [Path(s).name for s in call["sources"]] == ["lookahead.cpp"]
    assert Path(call["build_directory"]).name.endswith("-cpu")


def test_with_a_gpu_and_nvcc_the_cuda_sources_are_compiled(cuda_torch, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    monkeypatch.setattr(_ext, "missing_tool", lambda: None)  # the compiler is not what is tested
    calls = []
    monkeypatch.setattr(_ext.cpp_extension(), "load", lambda **kw: calls.append(kw))
    _ext._jit_build(verbose=False)
    (call,) = calls
    assert call["with_cuda"] is True
    assert [Path(s).name for s in call["sources"]] == ["lookahead.cpp", "lookahead_cuda.cu"]
    assert Path(call["build_directory"]).name.endswith("-cuda")


def test_missing_compiler_or_ninja_is_named(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    assert _ext.missing_tool() == (
        "no C++ compiler: 'no-such-compiler-xyz' is not on PATH (install g++ or clang++, or set CXX)"
    )
    monkeypatch.setenv("CXX", sys.executable)  # any program on disk passes the compiler probe
    monkeypatch.setattr(_ext.cpp_extension(), "is_ninja_available", lambda: False)
    monkeypatch.setattr(_ext, "pip_ninja_dir", lambda: None)
    assert _ext.missing_tool().startswith("ninja is not installed (pip install ninja)")


def test_pip_ninja_beside_a_venv_python_that_is_not_on_path(monkeypatch, tmp_path):
    """`.venv/bin/autolora` without the venv activated: pip's ninja is in .venv/bin, off PATH; the
    build puts that folder on PATH rather than fail with torch's "Ninja is required"."""
    ninja = pytest.importorskip("ninja")
    monkeypatch.setenv("PATH", str(tmp_path))  # no ninja on it
    monkeypatch.setenv("CXX", sys.executable)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    cpp = _ext.cpp_extension()
    assert not cpp.is_ninja_available()
    assert _ext.pip_ninja_dir() == ninja.BIN_DIR and _ext.missing_tool() is None
    monkeypatch.setattr(cpp, "load", lambda **kw: None)
    _ext._jit_build(verbose=False)
    assert os.environ["PATH"].split(os.pathsep)[0] == ninja.BIN_DIR and cpp.is_ninja_available()


def test_failed_first_use_warns_with_the_cause(monkeypatch):
    monkeypatch.setattr(
        _ext, "_state", {"tried": False, "loaded": False, "error": None, "how": None, "cuda": False}
    )
    monkeypatch.setattr(_ext, "_registered", lambda: False)
    monkeypatch.setattr(_ext, "_load_prebuilt", lambda: False)
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.warns(RuntimeWarning, match="Cause: RuntimeError: no C.. compiler: 'no-such-compiler-xyz'"):
        assert not _ext.load()
    assert _ext.info()["error"].startswith("RuntimeError: no C++ compiler")


def test_a_build_log_is_reduced_to_its_first_error():
    log = (
        "Error building extension 'autolora_lookahead': [1/2] c++ -MMD -c lookahead.cpp -o lookahead.o\n"
        "FAILED: lookahead.o\n"
        "lookahead.cpp:3:5: error: 'foo' was not declared in this scope\n"
        "ninja: build stopped: subcommand failed."
    )
    text = _ext.describe_failure(RuntimeError(log))
    first, rest = text.split("\n", 1)
    assert first == "the compiler failed: lookahead.cpp:3:5: error: 'foo' was not declared in this scope"
    assert rest == log  # the whole log stays in info()["error"]
    assert _ext.describe_failure(OSError("libc10.so: cannot open")) == "OSError: libc10.so: cannot open"


@pytest.mark.slow
def test_a_real_compiler_error_is_reported(tmp_path):
    """A source that does not compile, built by torch.utils.cpp_extension in a fresh process (so its
    name is not versioned in this one): the cause names the compiler's own error line."""
    src = tmp_path / "csrc"
    src.mkdir()
    (src / "lookahead.cpp").write_text('#error "autolora test: this source does not compile"\n')
    probe = (
        "import warnings; from pathlib import Path; from autolora_kernels import _ext\n"
        f"_ext.csrc_dir = lambda: Path({str(src)!r})\n"
        "warnings.simplefilter('ignore')\n"
        "assert not _ext.load()\n"
        "print(_ext.info()['error'].splitlines()[0])\n"
    )
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), "AUTOLORA_SKIP_CUDA_BUILD": "1"}
    env.pop("AUTOLORA_DISABLE_EXT", None)
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("the compiler failed: ") and "autolora test: this source does not compile" in line


@pytest.mark.slow
def test_torch_cuda_runtime_warning_is_kept_out(tmp_path):
    """torch.utils.cpp_extension logs "No CUDA runtime is found" on import when a CUDA_HOME exists but
    no GPU does; the plan there is CPU-only, so _ext imports it quietly (a plain reload still logs)."""
    probe = (
        "import importlib, torch\n"
        "torch.cuda._is_compiled = lambda: True\n"  # a CUDA torch without a GPU (the CPU build never looks)
        "torch.cuda.is_available = lambda: False\n"
        "torch.version.cuda = '12.8'\n"
        "from autolora_kernels import _ext\n"
        "cpp = _ext.cpp_extension()\n"
        "print('QUIET', flush=True)\n"
        "importlib.reload(cpp)\n"
    )
    env = {**os.environ, "CUDA_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "QUIET" in done.stdout
    assert done.stderr.count("No CUDA runtime is found") == 1  # from the reload alone
