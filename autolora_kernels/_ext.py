"""Build and load the lookahead C++ extension (csrc/) on first use, never at import time.

Order: a library built at install time (``AUTOLORA_BUILD_EXT=1 pip install ...``), else a JIT build
with torch.utils.cpp_extension.load (ninja), cached in ``$TORCH_EXTENSIONS_DIR/autolora`` or
``~/.cache/autolora/torch_extensions``. It needs a C++ compiler and ninja. The CUDA sources are
compiled too only when torch is a CUDA build, a GPU is visible (or TORCH_CUDA_ARCH_LIST names the
targets) and the CUDA toolkit's nvcc is found, unless ``AUTOLORA_SKIP_CUDA_BUILD=1``; otherwise the
build is CPU-only (cuda_plan says which and why). ``AUTOLORA_DISABLE_EXT=1`` turns the extension off
(the torch._foreach path runs, silently: it was asked for). A failed build warns once, naming the
cause (no compiler, no ninja, the compiler's first error), and the foreach path runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

import torch

from autolora_kernels.env import env_flag

_OPS = (
    "backup", "backup_into_", "restore_", "sgd_step_", "backup_and_sgd_step_", "adam_step_",
    "backup_and_adam_step_", "global_norm", "fd_eps", "set_perturbed_",
)  # fmt: skip
_state: dict = {"tried": False, "loaded": False, "error": None, "how": None, "cuda": False}


def disabled() -> bool:
    return env_flag("AUTOLORA_DISABLE_EXT")


def csrc_dir() -> Path | None:
    """csrc/ shipped inside the package (wheel installs) or at the repository root (editable)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "csrc", here.parent / "csrc"):
        if (cand / "lookahead.cpp").is_file():
            return cand
    return None


def cpu_flags() -> list[str]:
    """-O3 and OpenMP (at::parallel_for is inline OpenMP code); AVX2 when this CPU has it.

    The define selects at::vec's AVX2 Vectorized; the build directory is keyed by it (see
    build_dir), so a cache shared between machines never loads AVX2 code on a CPU without it.
    """
    flags = ["-O3", "-fopenmp"]
    if sys.platform.startswith("linux") and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return flags


def cpp_extension():
    """torch.utils.cpp_extension, imported without its "No CUDA runtime is found" warning: that fires
    for a CUDA torch on a machine without a GPU, where cuda_plan chooses the CPU-only build anyway."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as cpp
    finally:
        logger.setLevel(level)
    return cpp


def cuda_plan() -> tuple[bool, str]:
    """(whether the build compiles the CUDA sources too, why). torch.utils.cpp_extension derives the
    GPU architectures from the visible GPUs unless TORCH_CUDA_ARCH_LIST names them (with neither it
    fails with an IndexError), and compiles .cu files with CUDA_HOME/bin/nvcc."""
    if env_flag("AUTOLORA_SKIP_CUDA_BUILD"):
        return False, "CPU-only (AUTOLORA_SKIP_CUDA_BUILD=1)"
    if torch.version.cuda is None:
        return False, "CPU-only (torch is a CPU build)"
    if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return False, "CPU-only (no CUDA GPU visible; TORCH_CUDA_ARCH_LIST=9.0 etc. builds CUDA without one)"
    home = cpp_extension().CUDA_HOME
    if home is None:
        return False, "CPU-only (no CUDA toolkit: nvcc is not on PATH and CUDA_HOME is not set)"
    nvcc = Path(home) / "bin" / ("nvcc.exe" if sys.platform == "win32" else "nvcc")
    if not nvcc.is_file():
        return False, f"CPU-only (no nvcc in the CUDA toolkit at {home}: a runtime-only install?)"
    return True, f"CPU and CUDA {torch.version.cuda} (nvcc {nvcc})"


def pip_ninja_dir() -> str | None:
    """The folder holding the ninja of pip's ninja package (a venv's bin/), or None. torch runs
    `ninja` from PATH, and that folder is not on PATH when a venv's python runs without the venv
    activated (`.venv/bin/autolora run`, a Docker ENTRYPOINT)."""
    try:
        import ninja
    except ImportError:
        return None
    exe = Path(ninja.BIN_DIR) / ("ninja.exe" if sys.platform == "win32" else "ninja")
    return ninja.BIN_DIR if exe.is_file() else None


def missing_tool() -> str | None:
    """Why no build can start here (no C++ compiler, no ninja), or None."""
    cpp = cpp_extension()
    compiler = cpp.get_cxx_compiler()
    if shutil.which(compiler) is None:
        return f"no C++ compiler: {compiler!r} is not on PATH (install g++ or clang++, or set CXX)"
    if not cpp.is_ninja_available() and pip_ninja_dir() is None:
        return "ninja is not installed (pip install ninja); torch.utils.cpp_extension builds with it"
    return None


def build_dir(with_cuda: bool) -> Path:
    cap = "avx2" if "-mavx2" in cpu_flags() else "generic"
    tag = f"torch{torch.__version__.replace('+', '_')}-py{sys.version_info[0]}{sys.version_info[1]}-{cap}"
    tag += "-cuda" if with_cuda else "-cpu"
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    base = Path(root) / "autolora" if root else Path.home() / ".cache" / "autolora" / "torch_extensions"
    return base / tag


def _has_ops() -> bool:
    return all(hasattr(torch.ops.autolora, op) for op in _OPS) if _registered() else False


def _registered() -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("autolora::sgd_step_", "CPU")
    except RuntimeError:
        return False


def _load_prebuilt() -> bool:
    spec = importlib.util.find_spec("autolora_kernels._lookahead_C")
    if spec is None or spec.origin is None:
        return False
    torch.ops.load_library(spec.origin)
    _state["how"] = f"prebuilt {spec.origin}"
    return True


def _jit_build(verbose: bool) -> None:
    src = csrc_dir()
    if src is None:
        raise FileNotFoundError("csrc/lookahead.cpp not found next to the package or the repository root")
    blocker = missing_tool()
    if blocker is not None:
        raise RuntimeError(blocker)
    if not cpp_extension().is_ninja_available():  # pip's ninja, off PATH: put its folder first
        os.environ["PATH"] = pip_ninja_dir() + os.pathsep + os.environ.get("PATH", "")
    with_cuda, _ = cuda_plan()
    sources = [str(src / "lookahead.cpp")]
    if with_cuda:
        sources += sorted(str(p) for p in (src / "cuda").glob("*.cu"))
    out = build_dir(with_cuda)
    out.mkdir(parents=True, exist_ok=True)
    cpp_extension().load(
        name="autolora_lookahead",
        sources=sources,
        extra_cflags=cpu_flags(),
        extra_cuda_cflags=["-O3", "-lineinfo"],
        extra_ldflags=["-fopenmp"],
        extra_include_paths=[str(src)],
        build_directory=str(out),
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=verbose,
    )
    _state["how"] = f"jit {out}"


def load(verbose: bool = False) -> bool:
    """Load the extension, building it on the first call; True when its ops are registered.

    Never raises for a failed build: it warns once and returns False (callers fall back to foreach).
    """
    if disabled():
        return False
    if _state["tried"]:
        return _state["loaded"]
    _state["tried"] = True
    try:
        if not _registered() and not _load_prebuilt():
            _jit_build(verbose)
        if not _has_ops():
            raise RuntimeError("the library loaded but does not register every autolora:: op")
        _state["loaded"] = True
        _state["cuda"] = torch._C._dispatch_has_kernel_for_dispatch_key("autolora::sgd_step_", "CUDA")
    except Exception as exc:  # a compiler error, a missing ninja/compiler, a bad prebuilt library
        _state["error"] = describe_failure(exc)
        why = _state["error"].splitlines()[0]
        warnings.warn(
            "autolora: the lookahead C++ extension is unavailable, using the slower torch._foreach "
            f"path (set AUTOLORA_DISABLE_EXT=1 to choose that silently). Cause: {why}",
            RuntimeWarning,
            stacklevel=3,
        )
    return _state["loaded"]


def describe_failure(exc: Exception) -> str:
    """Why a load failed, in one line, then the raw message's tail (the build log) when it has more.
    A compiler failure (torch's "Error building extension 'x': <log>") is named by the log's first
    line that reports an error."""
    text = str(exc).strip()
    lines = text.splitlines() or [""]
    cause = f"{type(exc).__name__}: {lines[0]}"
    if lines[0].startswith("Error building extension"):
        first = next((ln.strip() for ln in lines if "error:" in ln.lower()), None)
        cause = f"the compiler failed: {first}" if first else cause
    return cause if len(lines) == 1 else f"{cause}\n{text[-2000:]}"


def has_device(device_type: str) -> bool:
    """True when the loaded extension has kernels for this device type ("cpu" or "cuda")."""
    if not load():
        return False
    if device_type == "cpu":
        return True
    return device_type == "cuda" and _state["cuda"]


def info() -> dict:
    """What load() did: loaded, how (prebuilt or jit + build dir), cuda kernels, error, disabled."""
    return {
        "disabled": disabled(),
        "tried": _state["tried"],
        "loaded": _state["loaded"],
        "how": _state["how"],
        "cuda_kernels": _state["cuda"],
        "error": _state["error"],
    }
