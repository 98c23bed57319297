"""experiments/converged_comparison.sh refuses bad arguments before it runs anything (its runs are
bench_compare's, tested in test_bench_compare_methods.py; a whole smoke run takes minutes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "converged_comparison.sh"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "0"], "--jobs: expected a positive integer, got '0'"),
        (["--seed", "1"], "unknown argument --seed"),
    ],
)
def test_bad_arguments_fail_before_any_run(tmp_path, args, message):
    work = tmp_path / "work"
    proc = subprocess.run(["bash", str(SCRIPT), *args, "--work", str(work)], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr
    assert not work.exists()  # nothing made
