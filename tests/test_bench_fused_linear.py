"""benchmarks/bench_fused_linear.py without a GPU: the ratios and the table from given times, and the
dry run (one tiny case through every implementation on the CPU)."""

from __future__ import annotations

import pytest
from helpers import benchmark_module

MS = {  # made-up medians: only the arithmetic is under test
    "base": {"fwd": 1.0, "fwd_bwd": 3.0},
    "fused": {"fwd": 1.04, "fwd_bwd": 3.3},
    "composite": {"fwd": 1.2, "fwd_bwd": 3.2},
    "auto": {"fwd": 1.05, "fwd_bwd": 3.3},
    "peft": {"fwd": 1.3, "fwd_bwd": 4.8},
    "ref": {"fwd": 2.0, "fwd_bwd": 6.0},
}


def test_ratios_and_targets_from_one_run():
    with benchmark_module("bench_fused_linear") as bench:
        mem = {name: {"fwd": 10.0, "fwd_bwd": 100.0} for name in MS}
        mem["peft"]["fwd_bwd"] = 90.0
        r = bench.ratios(MS, mem)
    assert r["fwd_vs_base"] == pytest.approx(1.04)
    assert r["fused_vs_composite"] == pytest.approx({"fwd": 1.04 / 1.2, "fwd_bwd": 3.3 / 3.2})
    assert r["auto_vs_composite"]["fwd_bwd"] == pytest.approx(3.3 / 3.2)
    assert r["speedup_vs_peft"] == pytest.approx(4.8 / 3.3)
    # auto took the slower fused on f+b (3.125% over the composite, past the 2% noise): missed
    assert r["targets"] == {
        "fwd<=1.05x base": True,
        "fwd_bwd>=1.4x peft": True,
        "auto<=composite": False,
        "mem<=peft": False,
    }


def test_markdown_row_names_the_choice_and_missed_targets():
    with benchmark_module("bench_fused_linear") as bench:
        row = {"tokens": 4096, "in": 768, "out": 768, "rank": 8, "ms": MS, "peak_mb": None}
        row["choice"] = {"forward": "fused", "backward": "composite"}
        row.update(bench.ratios(MS, None))
        meta = {"device_name": "X", "torch": "t", "triton": "t", "dtype": "bfloat16", "started": "s"}
        text = bench.markdown({**meta, "command": "c"}, [row])
    line = text.splitlines()[-1]
    assert "| fused/composite |" in line and line.endswith("| auto<=composite |")
    assert line.count("|") == text.splitlines()[-2].count("|")  # as many cells as the header rule


@pytest.mark.slow
def test_dry_run(capsys):
    with benchmark_module("bench_fused_linear") as bench:
        bench.main(["--dry-run", "--tokens", "4096", "--ranks", "8"])
    out = capsys.readouterr().out
    assert '"ran": ["base", "fused", "composite", "auto", "peft", "ref"]' in out
    assert "dry run passed (6 implementations, CPU); nothing written" in out
