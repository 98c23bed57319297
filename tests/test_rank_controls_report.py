"""experiments/bench_rank_controls.py report: means, paired differences and the convergence column,
on hand-made metrics files (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import experiment_module, write_planted_search


@pytest.fixture(scope="module")
def bench():
    with experiment_module("bench_rank_controls") as module:
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
    # +-0.01 at sd 0.01 takes t(0.975, n - 1) / sqrt(n) <= 1: n = 6 gives 1.050, n = 7 gives 0.925
    assert diff["sd"] == pytest.approx(0.01) and diff["seeds_for_resolve"] == 7
    assert "| 0.0100 | 7 |" in table  # the late mean's (here the final score: one point past half)
    assert task["autolora"]["gain_over_second_half"] == pytest.approx(0.01)  # mid point: step 200
    assert task["random"]["gain_over_second_half"] == pytest.approx(0.0)
    assert "| sst2 | random | +0.0300 |" in table


def test_the_search_is_paired_with_the_mean_of_two_random_draws(bench, tmp_path):
    for seed, (auto, r1, r2) in enumerate([(0.80, 0.78, 0.76), (0.82, 0.83, 0.79), (0.84, 0.80, 0.80)]):
        write_run(tmp_path, f"sst2_s{seed}_autolora", auto, mid=auto)
        write_run(tmp_path, f"sst2_s{seed}_random", r1, mid=r1)
        write_run(tmp_path, f"sst2_s{seed}_random2", r2, mid=r2)
    write_run(tmp_path, "sst2_s3_random", 0.5, mid=0.5)  # no second draw, no search: not paired
    data, table = bench.report(tmp_path)
    task = data["tasks"]["sst2"]
    assert "random-mean" not in task  # a pairing, not an allocation of its own
    diff = task["autolora-minus-random-mean"]
    # draw means 0.77, 0.81, 0.80 -> diffs 0.03, 0.01, 0.04
    assert diff["seeds"] == [0, 1, 2] and diff["diffs"] == pytest.approx([0.03, 0.01, 0.04])
    assert task["autolora-minus-random2"]["diffs"] == pytest.approx([0.04, 0.03, 0.04])
    assert "| sst2 | random-mean | +0.0267 |" in table


def test_the_second_draw_is_its_own_seeded_allocation(bench, tmp_path):
    found = {"a.q": 5, "a.v": 1, "b.q": 2, "b.v": 4, "c.q": 3, "c.v": 3}
    bench.write_allocations(tmp_path, "sst2", 2, found, "s", "effective-rank")
    read = lambda a: json.loads((tmp_path / f"sst2_s2_{a}.json").read_text())["ranks"]  # noqa: E731
    first, second = read("random"), read("random2")
    assert sum(first.values()) == sum(second.values()) == 18 and first != second
    assert second == bench.random_ranks(list(found), 18, 8, bench.SECOND_DRAW + 2)


def test_total_carries_the_search_to_another_budget_first(bench, tmp_path):
    found = {"a.q": 5, "a.v": 1, "b.q": 2, "b.v": 4, "c.q": 3, "c.v": 3}
    bench.write_allocations(tmp_path, "sst2", 1, found, "s", "effective-rank", total=12)
    read = lambda a: json.loads((tmp_path / f"sst2_s1_{a}.json").read_text())  # noqa: E731
    auto = read("autolora")
    assert auto["ranks"] == bench.scaled_ranks(found, 12, 8) and auto["scaled_from_total"] == 18
    assert read("uniform")["ranks"] == dict.fromkeys(found, 2)  # LoRA r=2 at the same total
    assert sum(read("random")["ranks"].values()) == sum(read("reversed")["ranks"].values()) == 12
    assert read("lora-r4")["ranks"] == dict.fromkeys(found, 4)
    bench.write_allocations(tmp_path, "sst2", 2, found, "s", "effective-rank")
    assert "scaled_from_total" not in json.loads((tmp_path / "sst2_s2_autolora.json").read_text())
    with pytest.raises(SystemExit, match="--total: expected 6..48 for 6 adapters of k=8, got 49"):
        bench.write_allocations(tmp_path / "none", "sst2", 3, found, "s", "effective-rank", total=49)
    assert not (tmp_path / "none").exists()


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


def earlier_entry(per_seed: dict[str, float]) -> dict:
    """An allocation's entry as a report's JSON holds it (seeds as strings)."""
    return {"metric": "accuracy", "per_seed": per_seed, "late_mean": dict.fromkeys(per_seed), "mean": 0.75,
            "std": 0.03, "rank_totals": [12], "trainable_parameters": [1000], "retrain_seconds": 9.0,
            "gain_over_second_half": None}  # fmt: skip


def test_earlier_report_fills_the_allocations_the_runs_lack(bench, tmp_path):
    for seed, score in enumerate([0.70, 0.74, 0.75]):
        write_run(tmp_path, f"mr_s{seed}_reversed", score, mid=None)
    mr = {"autolora": earlier_entry({"0": 0.71, "1": 0.76, "2": 0.78}),
          "reversed": earlier_entry({"0": 0.1, "1": 0.1, "2": 0.1})}  # fmt: skip
    sst2 = {"autolora": earlier_entry({"0": 0.9}), "random": earlier_entry({"0": 0.8})}
    earlier = {"tasks": {"mr": mr, "sst2": sst2}}
    data, table = bench.report(tmp_path, earlier)
    mr = data["tasks"]["mr"]
    diff = mr["autolora-minus-reversed"]  # the runs' reversed, not the earlier report's
    assert diff["mean"] == pytest.approx(0.02) and diff["seeds"] == [0, 1, 2]  # diffs 0.01, 0.02, 0.03
    assert diff["late_mean"] is None  # the earlier entry has no late means: no pair
    assert mr["autolora"]["from_earlier_report"] and "from_earlier_report" not in mr["reversed"]
    assert data["tasks"]["sst2"]["autolora-minus-random"]["diffs"] == pytest.approx(
        [0.1]
    )  # a task from it alone
    assert "| mr | autolora (earlier report) |" in table and "| mr | reversed | accuracy 0.7300" in table
    data, _ = bench.report(tmp_path)
    assert "autolora-minus-reversed" not in data["tasks"]["mr"] and "sst2" not in data["tasks"]


def test_earlier_reports_join_each_task_from_the_first_that_has_it(bench):
    first = {"tasks": {"sst2": {"autolora": earlier_entry({"0": 0.9})}}, "settings": {"sst2": {"k": 8}}}
    second = {"tasks": {"sst2": {"autolora": earlier_entry({"0": 0.1})}, "mr": {"random": earlier_entry({})}},
              "settings": {"sst2": {"k": 4}, "mr": {"k": 2}}}  # fmt: skip
    merged = bench.merge_earlier([first, second])
    assert merged["tasks"]["sst2"]["autolora"]["per_seed"] == {"0": 0.9}  # the first report's SST-2
    assert merged["settings"] == {"sst2": {"k": 8}, "mr": {"k": 2}}  # each task's settings go with it
    assert set(merged["tasks"]["mr"]) == {"random"}


def test_take_limits_what_the_earlier_report_gives(bench, tmp_path):
    for seed, (a, r) in enumerate([(0.80, 0.78), (0.82, 0.80), (0.84, 0.83)]):
        write_run(tmp_path, f"sst2_s{seed}_autolora", a, mid=None)
        write_run(tmp_path, f"sst2_s{seed}_random", r, mid=None)
    old = {"autolora": earlier_entry({"0": 0.5, "1": 0.5, "2": 0.5}),
           "uniform": earlier_entry({"0": 0.1, "1": 0.1, "2": 0.1}),
           "lora-r4": earlier_entry({"0": 0.79, "1": 0.80, "2": 0.81})}  # fmt: skip
    earlier = {"tasks": {"sst2": old, "mr": {"lora-r4": old["lora-r4"]}}}
    data, table = bench.report(tmp_path, earlier, take=["lora-r4"])
    sst2 = data["tasks"]["sst2"]
    assert sst2["autolora-minus-lora-r4"]["diffs"] == pytest.approx([0.01, 0.02, 0.03])
    assert "uniform" not in sst2 and "from_earlier_report" not in sst2["autolora"]
    assert "mr" not in data["tasks"]  # a task the runs lack is not taken
    assert "| sst2 | lora-r4 (earlier report) |" in table


def test_earlier_report_fills_the_seeds_the_runs_lack(bench, tmp_path):
    for seed, (a, lora) in {3: (0.84, 0.82), 4: (0.86, 0.83)}.items():
        write_run(tmp_path, f"sst2_s{seed}_autolora", a, mid=None)
        write_run(tmp_path, f"sst2_s{seed}_lora-r4", lora, mid=None)
    lora = earlier_entry({"0": 0.79, "1": 0.80, "2": 0.81, "3": 0.0})  # seed 3: the runs' own wins
    data, table = bench.report(tmp_path, {"tasks": {"sst2": {"lora-r4": lora}}}, take=["lora-r4"])
    entry = data["tasks"]["sst2"]["lora-r4"]
    assert entry["per_seed"] == pytest.approx({0: 0.79, 1: 0.80, 2: 0.81, 3: 0.82, 4: 0.83})
    assert entry["mean"] == pytest.approx(0.81) and entry["seeds_from_earlier_report"] == [0, 1, 2]
    assert entry["retrain_seconds"] == pytest.approx((10.0 * 2 + 9.0 * 3) / 5)
    assert data["tasks"]["sst2"]["autolora-minus-lora-r4"]["diffs"] == pytest.approx([0.02, 0.03])
    assert "| sst2 | lora-r4 (seeds 0, 1, 2: earlier report) | accuracy 0.8100" in table


def test_seeds_limit_the_runs_and_the_earlier_report(bench, tmp_path):
    for seed, (a, r) in enumerate([(0.80, 0.78), (0.82, 0.80), (0.84, 0.80), (0.70, 0.90)]):
        write_run(tmp_path, f"sst2_s{seed}_autolora", a, mid=None)
        write_run(tmp_path, f"sst2_s{seed}_random", r, mid=None)
    lora = earlier_entry({"0": 0.79, "1": 0.80, "2": 0.84, "3": 0.0})
    data, table = bench.report(tmp_path, {"tasks": {"sst2": {"lora-r4": lora}}}, seeds=[0, 1, 2])
    sst2 = data["tasks"]["sst2"]
    assert sst2["autolora-minus-random"]["diffs"] == pytest.approx([0.02, 0.02, 0.04])  # seed 3 left out
    assert sst2["lora-r4"]["per_seed"] == {0: 0.79, 1: 0.80, 2: 0.84}
    assert sst2["lora-r4"]["mean"] == pytest.approx(0.81)
    assert sst2["lora-r4"]["std"] == pytest.approx(0.0264575)  # over seeds 0-2 only
    assert sst2["autolora-minus-lora-r4"]["seeds"] == [0, 1, 2]
    assert "| sst2 | lora-r4 (earlier report) | accuracy 0.8100 ± 0.0265 | 3 |" in table
    data, _ = bench.report(tmp_path, {"tasks": {"sst2": {"lora-r4": lora}}}, seeds=[5])
    assert not any(data["tasks"].values())  # no run and no earlier score of seed 5


def test_earlier_report_with_other_settings_is_refused(bench, tmp_path):
    write_run(tmp_path, "mr_s0_reversed", 0.7, mid=None)
    cfg = {"retrain_epochs": 3.0, "lr_w": 1e-3, "trainable": ["classifier"], "data": {"max_length": 64}}
    (tmp_path / "mr_s0_reversed" / "config.json").write_text(json.dumps(cfg))
    mine = bench.report(tmp_path)[0]["settings"]["mr"]
    earlier = {"settings": {"mr": mine | {"trainable": ["classifier", "bert.pooler"]}},
               "tasks": {"mr": {"autolora": earlier_entry({"0": 0.71})}}}  # fmt: skip
    with pytest.raises(SystemExit, match="mr's retraining settings differ"):
        bench.report(tmp_path, earlier)
    earlier["settings"]["mr"] = mine
    diff = bench.report(tmp_path, earlier)[0]["tasks"]["mr"]["autolora-minus-reversed"]
    assert diff["diffs"] == pytest.approx([0.01])
    # a setting one side did not record is not compared, unless it did not exist then: the schedule
    (tmp_path / "mr_s0_reversed" / "config.json").write_text(json.dumps(cfg | {"pooling": "mean"}))
    assert bench.report(tmp_path, earlier)[0]["settings"]["mr"]["pooling"] == "mean"
    (tmp_path / "mr_s0_reversed" / "config.json").write_text(json.dumps(cfg | {"retrain_schedule": "linear"}))
    with pytest.raises(SystemExit, match=r"\{'retrain_schedule': \('constant', 'linear'\)\}"):
        bench.report(tmp_path, earlier)


def test_ranks_files_from_a_committed_study(bench, tmp_path):
    names = ["a.q", "a.v", "b.q", "b.v"]
    results = tmp_path / "study.json"
    results.write_text(json.dumps({"ranks": {"effective-rank": {
        "sst2_d0_i0": [5, 1, 2, 4], "sst2_d0_i1": [8, 8, 8, 8], "sst2_d1_i1": [3, 3, 3, 3]}}}))  # fmt: skip
    out = tmp_path / "ranks"
    paths = bench.ranks_from_results(results, "effective-rank", out, names)
    assert sorted(p.name for p in paths) == sorted(
        f"sst2_s{s}_{a}.json" for s in (0, 1) for a in bench.DEALT
    )  # d0_i1 (init seed differs from data seed) is not a search of the pairs
    auto = json.loads((out / "sst2_s0_autolora.json").read_text())
    assert (
        auto["ranks"] == {"a.q": 5, "a.v": 1, "b.q": 2, "b.v": 4}
        and auto["source"] == "study.json:sst2_d0_i0"
    )
    rand = json.loads((out / "sst2_s0_random.json").read_text())["ranks"]
    assert list(rand) == names and sum(rand.values()) == 12
    with pytest.raises(SystemExit, match="has no ranks for 'alpha'"):
        bench.ranks_from_results(results, "alpha", out, names)
    with pytest.raises(SystemExit, match="has 4 ranks, the model 3 adapters"):
        bench.ranks_from_results(results, "effective-rank", out, names[:3])


def test_ranks_files_from_compare_reports(bench, tmp_path):
    ranks = {"a.q": 4, "a.v": 2, "b.q": 1, "b.v": 1}
    runs = [{"seed": 1, "ranks": ranks}, {"seed": 2, "ranks": ranks | {"b.v": 3}}]
    report = tmp_path / "compare_autolora_sst2.json"
    report.write_text(json.dumps({"config": {"rank_rule": "effective-rank"},
                                  "results": {"sst2": {"autolora": {"runs": runs}}}}))  # fmt: skip
    out = tmp_path / "ranks"
    paths = bench.ranks_from_compare([report], out)
    assert sorted(p.name for p in paths) == sorted(f"sst2_s{s}_{a}.json" for s in (1, 2) for a in bench.DEALT)
    auto = json.loads((out / "sst2_s2_autolora.json").read_text())
    assert auto["ranks"] == ranks | {"b.v": 3} and auto["rule"] == "effective-rank"
    assert auto["source"] == "compare_autolora_sst2.json:sst2:autolora:seed2"
    rand = json.loads((out / "sst2_s1_random.json").read_text())["ranks"]
    assert list(rand) == list(ranks) and sum(rand.values()) == 8
    with pytest.raises(SystemExit, match="has no runs of 'autolora-first-order'"):
        bench.ranks_from_compare([report], out, method="autolora-first-order")
    with pytest.raises(SystemExit, match="no such report: .*gone.json"):
        bench.ranks_from_compare([report, tmp_path / "gone.json"], out)


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
    assert across["sd"] == pytest.approx(0.01) and across["seeds_for_resolve"] == 7
    assert "autolora-minus-lora-r4" not in data["across_tasks"]
    assert "| mean of 2 tasks | random | +0.0200 |" in table


def test_runs_with_a_search_checkpoint_also_give_ranks_by_norm(bench, tmp_path):
    # norms 0.2 : 1.12 : 2 (update_spectra's test); the search gave the smallest update the most ranks
    write_planted_search(tmp_path, "sst2_s0", {"a": ([0.1] * 4, 4), "b": ([1.0, 0.5, 0, 0], 2),
                                               "c": ([2.0, 0, 0, 0], 1)})  # fmt: skip
    no_ckpt = write_planted_search(tmp_path, "sst2_s1", {"a": ([0.1] * 4, 3), "b": ([1.0] * 4, 3)})
    (no_ckpt / "checkpoints" / "search.pt").unlink()
    out = tmp_path / "ranks"
    paths = bench.ranks_from_runs([tmp_path / "sst2_s0", no_ckpt], out, k=4, total=6)
    names = {p.name for p in paths}
    assert "sst2_s0_bynorm.json" in names and "sst2_s1_bynorm.json" not in names
    assert {f"sst2_s1_{a}.json" for a in bench.DEALT} <= names
    bynorm = json.loads((out / "sst2_s0_bynorm.json").read_text())
    assert bynorm["ranks"] == {"a": 1, "b": 2, "c": 3} and bynorm["allocation"] == "bynorm"
    assert json.loads((out / "sst2_s0_autolora.json").read_text())["ranks"] == {"a": 3, "b": 2, "c": 1}


def test_base_pairs_another_allocation_with_the_rest(bench, tmp_path):
    for task in ("sst2", "mr"):
        for seed, (auto, norm, r4) in enumerate([(0.80, 0.82, 0.81), (0.82, 0.85, 0.81), (0.84, 0.84, 0.83)]):
            write_run(tmp_path, f"{task}_s{seed}_autolora", auto, mid=None)
            write_run(tmp_path, f"{task}_s{seed}_bynorm", norm, mid=None)
            write_run(tmp_path, f"{task}_s{seed}_lora-r4", r4, mid=None)
    data, table = bench.report(tmp_path, base_alloc="bynorm")
    sst2 = data["tasks"]["sst2"]
    assert sst2["bynorm-minus-autolora"]["diffs"] == pytest.approx([0.02, 0.03, 0.0])
    assert sst2["bynorm-minus-lora-r4"]["diffs"] == pytest.approx([0.01, 0.04, 0.01])
    assert not any(key.startswith("autolora-minus") for key in sst2)
    assert data["across_tasks"]["bynorm-minus-lora-r4"]["mean"] == pytest.approx(0.02)
    assert "| task | bynorm - X |" in table and "| mean of 2 tasks | autolora | +0.0167 |" in table


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


def test_study_names_follow_module_order_as_the_study_runs_do(bench):
    # search_study.py keeps adapters in autolora.adapters order; inject() returns them target by target
    names = bench.study_adapter_names()
    layer = "bert.encoder.layer.{}.attention.self.{}"
    assert names == [layer.format(i, p) for i in range(6) for p in ("query", "value")]


def test_seeds_for_resolving_a_point(bench):
    assert bench.seeds_for(0.0) == 2  # no spread: the fewest seeds an interval needs
    assert bench.seeds_for(0.01, half=0.01) == 7
    assert bench.seeds_for(0.02, half=0.01) == 18  # t(0.975, 17) * 0.02 / sqrt(18) = 0.00995
    assert bench.seeds_for(1.0, half=0.01) is None  # more than 1000
    assert bench.seeds_for(float("nan")) is None  # one seed: no spread to plan by
