"""What every benchmark records and how it writes: the machine, the command line, --out, and results
as JSON + markdown written atomically (a run stopped mid-write leaves the previous files whole).

A result is only comparable with another when both say where they ran: CPU model and cores, the GPU,
the library versions and the commit (with the package files edited on top of it).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

from autolora.io.atomic import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def resolve_out(text: str | Path, results: Path = RESULTS) -> Path:
    """An --out folder: absolute as given, relative against `results` (benchmarks/results/ by
    default), so that a run writes to the same place from any working directory."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else results / path


def add_out_argument(parser: argparse.ArgumentParser, results: Path = RESULTS) -> None:
    """--out DIR, resolved by `resolve_out` against `results`, which is also the default."""
    where = os.path.relpath(results, HERE.parent)
    parser.add_argument(
        "--out",
        type=lambda text: resolve_out(text, results),
        default=results,
        help=f"folder for the .json and .md results; relative paths are taken under {where}/",
    )


def command_line() -> str:
    """The command as it can be rerun from the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), HERE.parent)
    return " ".join(["python", script, *sys.argv[1:]])


def load_average() -> list[float]:
    """1, 5 and 15 minute load: other processes on the machine make times noisy."""
    return [round(x, 2) for x in os.getloadavg()]


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def git_state() -> dict:
    """The commit measured, and package files edited in the working tree on top of it."""

    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], capture_output=True, text=True, cwd=HERE).stdout

    dirty = git("status", "--porcelain", "python", "autolora_kernels", "csrc").splitlines()
    return {
        "git_commit": git("rev-parse", "HEAD").strip(),
        "git_modified": [ln[3:] for ln in dirty if ln.strip()],
    }


def machine() -> dict:
    """CPU model and cores, the GPU (None without CUDA), library versions, the commit and the load."""
    import torch

    from autolora.doctor import device_name

    return {
        "cpu": device_name("cpu"),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **git_state(),
        "load_average": load_average(),
    }


def write_results(out: Path, stem: str, report: dict, markdown: str) -> Path:
    """out/stem.json and out/stem.md, each written atomically; returns out/stem."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{stem}.json", report)
    atomic_write_text(out / f"{stem}.md", markdown)
    return out / stem
