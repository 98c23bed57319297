"""scripts/gpu_session.sh --dry-run: every command of the GPU session parses and starts on the CPU
(pytest collects, the benchmark runs one tiny case), so a session on a lent GPU does not die on a typo."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("tests_fp32", "tests_fp16", "tests_bf16", "tests_other", "tests_lookahead", "bench")


def dry_run(results: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("OUT", "TRITON_INTERPRET")}
    full_env.update(GPU_RESULTS=str(results), **env)
    cmd = ["bash", "scripts/gpu_session.sh", "--dry-run", *args]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_dry_run_passes(tmp_path):
    r = dry_run(tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    summary = (tmp_path / "summary.txt").read_text()
    for step in STEPS:
        assert f"{step}: ok, exit 0" in summary, summary
    assert "tests collected" in summary and "dry run passed (6 implementations" in summary
    session = (tmp_path / "session.txt").read_text()
    assert "command: bash scripts/gpu_session.sh --dry-run" in session and "device: " in session


@pytest.mark.slow
def test_a_command_past_its_cap_fails_the_session(tmp_path):
    """The benchmark alone under a cap of one second: stopped, reported, and the exit status is 1."""
    r = dry_run(tmp_path, "bench", CAP_BENCH="1")
    assert r.returncode == 1, r.stdout[-4000:]
    summary = (tmp_path / "summary.txt").read_text()
    assert "bench: FAILED (stopped at its cap of 1s), exit 124" in summary and "tests_" not in summary
