"""benchmarks/bench_rank_controls.py report: means, paired differences and the convergence column,
on hand-made metrics files (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_rank_controls") as module:
        yield module


def write_run(root: Path, name: str, final: float, mid: float | None) -> None:
    run = root / name
    run.mkdir()
    metrics = {"metric": "accuracy", "eval": {"accuracy": final}, "rank_total": 12,
               "trainable_parameters": 1000, "seconds": {"retrain": 10.0}}  # fmt: skip
    if mid is not None:
        metrics["eval_curve"] = [{"step": 100, "accuracy": mid - 0.1}, {"step": 200, "accuracy": mid},
                                 {"step": 400, "accuracy": final}]  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_report_pairs_seeds_and_reads_the_curves(bench, tmp_path):
    for seed, (auto, rand) in enumerate([(0.80, 0.78), (0.82, 0.79), (0.84, 0.80)]):
        write_run(tmp_path, f"sst2_s{seed}_autolora", auto, mid=auto - 0.01)
        write_run(tmp_path, f"sst2_s{seed}_random", rand, mid=rand)
    data, table = bench.report(tmp_path)
    task = data["tasks"]["sst2"]
    assert task["autolora"]["mean"] == pytest.approx(0.82) and task["random"]["mean"] == pytest.approx(0.79)
    diff = task["autolora-minus-random"]
    assert diff["mean"] == pytest.approx(0.03) and diff["seeds"] == [0, 1, 2]
    # diffs 0.02, 0.03, 0.04: sd 0.01, t(0.975, 2) = 4.303 -> half width 0.02484
    assert diff["ci95"] == pytest.approx([0.03 - 0.02484, 0.03 + 0.02484], abs=1e-4)
    assert task["autolora"]["gain_over_second_half"] == pytest.approx(0.01)  # mid point: step 200
    assert task["random"]["gain_over_second_half"] == pytest.approx(0.0)
    assert "| sst2 | random | +0.0300 |" in table


def test_runs_without_curves_say_so(bench, tmp_path):
    write_run(tmp_path, "mr_s0_autolora", 0.7, mid=None)
    data, table = bench.report(tmp_path)
    assert data["tasks"]["mr"]["autolora"]["gain_over_second_half"] is None and "| n/a |" in table


def test_reversed_deals_the_same_ranks_in_reverse_order(bench):
    ranks = {"a": 6, "b": 3, "c": 1, "d": 3, "e": 2}
    rev = bench.reversed_ranks(ranks)
    # ascending by (rank, order): c(1) e(2) b(3) d(3) a(6) get 6, 3, 3, 2, 1
    assert rev == {"c": 6, "e": 3, "b": 3, "d": 2, "a": 1}
    assert sorted(rev.values()) == sorted(ranks.values())  # same total, same parameters


def test_earlier_report_supplies_autolora_for_the_pairs(bench, tmp_path):
    for seed, score in enumerate([0.70, 0.74, 0.75]):
        write_run(tmp_path, f"mr_s{seed}_reversed", score, mid=None)
    earlier = {"tasks": {"mr": {"autolora": {"per_seed": {"0": 0.71, "1": 0.76, "2": 0.78}}}}}
    data, table = bench.report(tmp_path, earlier)
    diff = data["tasks"]["mr"]["autolora-minus-reversed"]
    assert diff["mean"] == pytest.approx(0.02) and diff["seeds"] == [0, 1, 2]  # diffs 0.01, 0.02, 0.03
    assert "earlier report" in table
    data, _ = bench.report(tmp_path)
    assert "autolora-minus-reversed" not in data["tasks"]["mr"]


def test_across_tasks_averages_the_paired_differences_per_seed(bench, tmp_path):
    # sst2 diffs +0.02 +0.04 +0.06, mr diffs 0.00 +0.02 -0.02: per-seed means +0.01 +0.03 +0.02
    for seed, (a, r) in enumerate([(0.82, 0.80), (0.84, 0.80), (0.86, 0.80)]):
        write_run(tmp_path, f"sst2_s{seed}_autolora", a, mid=None)
        write_run(tmp_path, f"sst2_s{seed}_random", r, mid=None)
    for seed, (a, r) in enumerate([(0.70, 0.70), (0.72, 0.70), (0.70, 0.72)]):
        write_run(tmp_path, f"mr_s{seed}_autolora", a, mid=None)
        write_run(tmp_path, f"mr_s{seed}_random", r, mid=None)
    write_run(tmp_path, "mr_s0_lora-r4", 0.71, mid=None)  # one task only: no across-tasks row
    data, table = bench.report(tmp_path)
    across = data["across_tasks"]["autolora-minus-random"]
    assert across["mean"] == pytest.approx(0.02) and across["seeds"] == [0, 1, 2] and across["tasks"] == 2
    # per-seed means 0.01, 0.03, 0.02: sd 0.01 -> half width 4.303 * 0.01 / sqrt(3) = 0.02484
    assert across["ci95"] == pytest.approx([0.02 - 0.02484, 0.02 + 0.02484], abs=1e-4)
    assert "autolora-minus-lora-r4" not in data["across_tasks"]
    assert "| mean of 2 tasks | random | +0.0200 |" in table


def test_late_mean_pairs_the_second_half_of_the_curves(bench, tmp_path):
    def write(name, points):  # points at steps 100..400; the last is the final score
        run = tmp_path / name
        run.mkdir()
        curve = [{"step": 100 * (i + 1), "accuracy": a} for i, a in enumerate(points)]
        (run / "metrics.json").write_text(json.dumps({
            "metric": "accuracy", "eval": {"accuracy": points[-1]}, "eval_curve": curve, "rank_total": 12,
            "trainable_parameters": 1000, "seconds": {"retrain": 10.0}}))  # fmt: skip

    # steps 300 and 400 are past half of 400: late means autolora 0.85, 0.87; random 0.83, 0.84
    write("sst2_s0_autolora", [0.5, 0.9, 0.80, 0.90])
    write("sst2_s1_autolora", [0.5, 0.9, 0.84, 0.90])
    write("sst2_s0_random", [0.9, 0.5, 0.86, 0.80])
    write("sst2_s1_random", [0.9, 0.5, 0.88, 0.80])
    write("sst2_s2_random", [0.9, 0.5, 0.88, 0.80])  # no autolora partner: left out of the pairs
    data, table = bench.report(tmp_path)
    task = data["tasks"]["sst2"]
    assert task["autolora"]["late_mean"] == pytest.approx({0: 0.85, 1: 0.87})
    diff = task["autolora-minus-random"]
    assert diff["mean"] == pytest.approx(0.10) and diff["seeds"] == [0, 1]  # finals: 0.10, 0.10
    late = diff["late_mean"]
    assert late["diffs"] == pytest.approx([0.02, 0.03]) and late["seeds"] == [0, 1]
    # diffs 0.02, 0.03: sd 0.007071, t(0.975, 1) = 12.706 -> half width 12.706 * 0.007071 / sqrt(2) = 0.06353
    assert late["ci95"] == pytest.approx([0.025 - 0.06353, 0.025 + 0.06353], abs=1e-4)
    assert "| +0.0250 | [-0.0385, +0.0885] |" in table
