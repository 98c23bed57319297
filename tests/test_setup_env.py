"""scripts/torch_build.sh: which PyTorch build scripts/setup_env.sh installs, tested without a GPU by
replacing the probe (AUTOLORA_GPU_PROBE, or a fake nvidia-smi on PATH)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs scripts/setup_env.sh in subprocesses

ROOT = Path(__file__).resolve().parents[1]


def _choose(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("AUTOLORA_TORCH_BUILD", "AUTOLORA_GPU"))
    }
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "torch_build.sh")],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("env", "build", "why"),
    [
        ({"AUTOLORA_GPU_PROBE": "present"}, "cuda", "auto: an NVIDIA GPU"),
        ({"AUTOLORA_GPU_PROBE": "absent"}, "cpu", "auto: no NVIDIA GPU"),
        ({"AUTOLORA_GPU_PROBE": "present", "AUTOLORA_TORCH_BUILD": "auto"}, "cuda", "auto: an NVIDIA GPU"),
        ({"AUTOLORA_GPU_PROBE": "present", "AUTOLORA_TORCH_BUILD": "cpu"}, "cpu", "AUTOLORA_TORCH_BUILD=cpu"),
        (
            {"AUTOLORA_GPU_PROBE": "absent", "AUTOLORA_TORCH_BUILD": "cuda"},
            "cuda",
            "AUTOLORA_TORCH_BUILD=cuda",
        ),
    ],
)
def test_the_build_follows_the_probe_unless_overridden(tmp_path, env, build, why):
    done = _choose(tmp_path, **env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].split()[0] == build and why in lines[0]


def test_nvidia_smi_listing_a_gpu_means_cuda(tmp_path):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n[ "$1" = -L ] && echo "GPU 0: NVIDIA H200 (UUID: GPU-0)"\n')
    fake.chmod(0o755)
    done = _choose(tmp_path, PATH=f"{fake.parent}:{os.environ['PATH']}")
    assert done.stdout.strip() == "cuda (auto: an NVIDIA GPU, found by nvidia-smi -L)"


@pytest.mark.skipif(Path("/proc/driver/nvidia").exists(), reason="an NVIDIA driver is loaded here")
def test_a_failing_nvidia_smi_and_no_driver_mean_cpu(tmp_path):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    fake.chmod(0o755)
    done = _choose(tmp_path, PATH=f"{fake.parent}:{os.environ['PATH']}")
    assert done.stdout.split()[0] == "cpu"


@pytest.mark.parametrize(("var", "value"), [("AUTOLORA_TORCH_BUILD", "gpu"), ("AUTOLORA_GPU_PROBE", "maybe")])
def test_a_bad_value_is_named(tmp_path, var, value):
    done = _choose(tmp_path, **{var: value})
    assert done.returncode == 2 and done.stdout == ""
    assert f"{var}: expected" in done.stderr and repr(value) in done.stderr


def test_setup_env_stops_on_a_bad_value_before_creating_the_venv(tmp_path):
    venv = tmp_path / "venv"
    env = {**os.environ, "AUTOLORA_TORCH_BUILD": "gpu", "AUTOLORA_VENV": str(venv)}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup_env.sh")], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0 and "AUTOLORA_TORCH_BUILD: expected" in done.stderr
    assert not venv.exists()
