"""Which code paths this install would take: the data behind an `autolora doctor` report.

describe() never builds anything unless asked (build=True compiles the lookahead extension, as its
first use would) and never raises: a part it cannot inspect is reported as such.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch

from autolora import extras
from autolora_kernels import _ext


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_name(device: str | torch.device = "cpu") -> str:
    """The GPU's name for a CUDA device, else the CPU's model name (for benchmark reports)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _layer_backend(cuda: bool) -> dict:
    """The path FusedAutoLoraLinear takes on this machine's device, as autolora_kernels reports it."""
    try:
        import autolora_kernels as k
    except Exception as exc:  # a broken kernels package is exactly what a doctor report is for
        return {"name": "unavailable", "source": f"import autolora_kernels failed: {exc}"}
    return {"name": k.layer_backend("cuda" if cuda else "cpu"), "source": "autolora_kernels.layer_backend()"}


def _kernel_choices() -> dict:
    """AUTOLORA_KERNEL and the fused-or-composite choices dispatch.py has made in this process."""
    from autolora_kernels import dispatch

    try:
        mode = dispatch.kernel_mode()
    except ValueError as exc:
        mode = f"invalid ({exc})"
    return {"mode": mode, "choices": dispatch.choices()}


def gpu_found() -> str | None:
    """How an NVIDIA GPU was found on this machine, whatever the installed torch can use; None if
    none was. The probe of scripts/torch_build.sh, with its AUTOLORA_GPU_PROBE=present|absent."""
    forced = os.environ.get("AUTOLORA_GPU_PROBE")
    if forced in ("present", "absent"):
        return "AUTOLORA_GPU_PROBE=present" if forced == "present" else None
    if shutil.which("nvidia-smi"):
        try:
            if subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0:
                return "nvidia-smi -L"
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "/proc/driver/nvidia" if Path("/proc/driver/nvidia").exists() else None


def torch_build(found: str | None) -> dict:
    """The installed torch's build, whether CUDA works, the GPU a run would use (device "auto"),
    and a warning when `found` (a GPU, see gpu_found) is one this install cannot use."""
    cuda_version, available = torch.version.cuda, torch.cuda.is_available()
    warning = None
    if found and not cuda_version:
        warning = (
            f"an NVIDIA GPU is present ({found}) but torch is the CPU build: uninstall torch, then "
            "AUTOLORA_TORCH_BUILD=cuda bash scripts/setup_env.sh"
        )
    elif found and not available:
        warning = f"an NVIDIA GPU is present ({found}) but CUDA {cuda_version} is unavailable (driver?)"
    gpu = None
    if available:
        index = torch.cuda.current_device()
        gpu = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return {
        "build": f"CUDA {cuda_version}" if cuda_version else "CPU-only",
        "cuda_available": available,
        "gpu": gpu,
        "gpu_found": found,
        "warning": warning,
    }


def describe(build: bool = False) -> dict:
    """Versions, device, the layer and lookahead backends, the extension's build state, the extras.

    build=True builds (or loads from cache) the lookahead extension first; otherwise its state is
    reported as it stands in this process, and lookahead_backend is None if nothing was tried yet.
    """
    cuda = torch.cuda.is_available()
    triton = importlib.util.find_spec("triton") is not None
    device = {
        "type": "cuda" if cuda else "cpu",
        "name": device_name("cuda" if cuda else "cpu"),
        "torch_cuda": torch.version.cuda,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
    if build:
        _ext.load()
    info = _ext.info()
    will_build_cuda, plan = _ext.cuda_plan()
    device_type = device["type"]
    if info["disabled"]:
        lookahead = "foreach"
    elif info["tried"]:
        from autolora_kernels.lookahead import backend

        lookahead = backend(device_type)
    else:
        lookahead = None
    return {
        "versions": {
            "autolora": _version("autolora"),
            "torch": torch.__version__,
            "triton": _version("triton") if triton else None,
            "transformers": _version("transformers"),
            "python": platform.python_version(),
        },
        "device": device,
        "torch_build": torch_build(gpu_found()),
        "layer_backend": _layer_backend(cuda),
        "kernels": _kernel_choices(),
        "lookahead_backend": lookahead,
        "extension": {
            "compiled": info["loaded"],
            "state": (
                "disabled (AUTOLORA_DISABLE_EXT=1)"
                if info["disabled"]
                else "not built yet (describe(build=True) builds it)"
                if not info["tried"]
                else f"loaded ({info['how']})"
                if info["loaded"]
                else "build failed"
            ),
            "cuda_kernels": info["cuda_kernels"],
            "will_build_cuda": will_build_cuda,
            "build_plan": plan,
            "cannot_build": None if info["loaded"] else _ext.missing_tool(),
            "sources": str(_ext.csrc_dir()) if _ext.csrc_dir() else None,
            "error": info["error"],
        },
        "extras": {name: extras.missing(name) for name in extras.PACKAGES if name != "all"},
    }


def format_description(d: dict) -> str:
    """describe()'s dict as aligned `key: value` lines, one section per block."""
    ext, dev, tb = d["extension"], d["device"], d["torch_build"]
    yes = lambda b: "yes" if b else "no"
    lines = [
        "versions:   " + ", ".join(f"{k} {v or '-'}" for k, v in d["versions"].items()),
        f"device:     {dev['type']} ({dev['name']}); torch cuda {dev['torch_cuda'] or '-'}, "
        f"cpu {dev['cpu_capability']}, {dev['threads']} threads",
        f"torch:      {tb['build']} build; CUDA available {yes(tb['cuda_available'])}; "
        f"GPU {tb['gpu'] or '- (runs on the CPU)'}",
        f"layer:      {d['layer_backend']['name']}  [{d['layer_backend']['source']}]",
        f"lookahead:  {d['lookahead_backend'] or 'unknown until the extension is built'}",
        f"extension:  {ext['state']}; cuda kernels {yes(ext['cuda_kernels'])}; "
        f"sources {ext['sources'] or 'missing'}",
        f"  build:    {ext['build_plan']}",
    ]
    if ext["cannot_build"]:
        lines.append(f"  cannot build: {ext['cannot_build']}")
    lines += _format_kernels(d["kernels"])
    if ext["error"]:
        lines.append(f"  error:    {ext['error'].splitlines()[0][:300]}")
    for name, absent in d["extras"].items():
        state = f'missing {", ".join(absent)} (pip install "autolora[{name}]")' if absent else "installed"
        lines.append(f"extra {name + ':':9} {state}")
    if tb["warning"]:
        lines.append(f"warning:    {tb['warning']}")
    return "\n".join(lines)


def _format_kernels(k: dict) -> list[str]:
    """One line for AUTOLORA_KERNEL, then one per choice made: bucket, choice and its timings."""
    made = k["choices"]
    head = f"kernels:    AUTOLORA_KERNEL={k['mode']}; "
    if not made:
        return [head + "no choice made yet in this process (each shape is timed on first use on CUDA)"]
    lines = [head + f"{len(made)} choice(s) made in this process:"]
    for c in made:
        flags = ", ".join(f"{f}={v}" for f, v in c["flags"].items())
        times = ", ".join(f"{n} {ms:.3f} ms" for n, ms in c["ms"].items())
        lines.append(
            f"  {c['direction']:<8} {c['device']} tokens<={c['tokens_bucket']} N={c['n']} K={c['k']} "
            f"r={c['rank']} {c['dtype']} ({flags}): {c['choice']} ({times})"
        )
    return lines
