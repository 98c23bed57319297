"""experiments/bench_compare.py: argument parsing and dataset resolution (seconds; no training)."""

from __future__ import annotations

import pytest
from helpers import experiment_module

pytestmark = pytest.mark.slow  # a study script's smoke test


@pytest.fixture(scope="module")
def bench():
    with experiment_module("bench_compare") as module:
        yield module


def test_reduced_defaults(bench):
    args = bench.parse_args([])
    assert args.mode == "reduced" and args.steps == 40 and args.seeds == [0, 1, 2]
    assert args.search_fraction == 0.25 and args.retrain_init == "warm" and args.extra_trainable == ["pooler"]
    assert args.max_length == 64 and args.grid_steps == 10
    datas = bench.data_configs(args)
    assert datas["cola"]["format"] == "cola" and "train_file" not in datas["cola"]
    assert datas["sst2"]["train_file"].endswith("sst2/train.tsv")
    assert datas["mr"]["eval_file"].endswith("mr/test.tsv")


def test_mean_pooling_trains_no_pooler(bench):
    args = bench.parse_args(["--pooling", "mean"])
    assert args.pooling == "mean" and args.extra_trainable == []
    assert bench.parse_args(["--pooling", "mean", "--extra-trainable", "intermediate"]).extra_trainable == [
        "intermediate"
    ]
    with pytest.raises(SystemExit):  # the mean has no weights to train
        bench.parse_args(["--pooling", "mean", "--extra-trainable", "pooler"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--pooling", "max"])


def test_report_config_is_json(bench, tmp_path):
    import json

    config = bench.run_config(bench.parse_args(["--out", str(tmp_path)]))
    assert json.loads(json.dumps(config))["out"] == str(tmp_path)  # --out is a Path: it was not JSON


def test_custom_dataset_passes_through(bench, tmp_path):
    args = bench.parse_args(
        ["--datasets", "custom", "--train-file", "t.tsv", "--eval-file", "e.tsv", "--format", "sst2",
         "--text-column", "sentence", "--data-dir", str(tmp_path)]
    )  # fmt: skip
    data = bench.data_configs(args)["custom"]
    assert data["train_file"] == "t.tsv" and data["format"] == "sst2" and data["text_column"] == "sentence"
    from autolora.data import DataConfig

    DataConfig(**data)  # every key is a DataConfig field


def test_custom_needs_train_file(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--datasets", "custom"])


def test_budget_split(bench):
    from _compare_methods import RunSpec

    spec = RunSpec(model="m", data={}, method="autolora", steps=25, search_fraction=0.5)
    assert spec.search_steps + spec.retrain_steps == 25


def part_report(seed: int, score: float, lr: float = 5e-4, method: str = "lora-r4") -> dict:
    """A bench_compare report of one method, one dataset, one seed, as its JSON holds it."""
    run = {"seed": seed, "metric": "accuracy", "score": score, "trainable_parameters": 100,
           "train_seconds": 10.0 + seed, "eval_seconds": 1.0, "gpu_peak_mb": None}  # fmt: skip
    part = {"runs": [run], "peak_rss_mb": 900.0 + seed, "base_rss_mb": 500.0, "process_seconds": 12.0}
    return {"config": {"seeds": [seed], "tag": f"s{seed}", "lr_lora": lr, "grid_dataset": "none"},
            "command": f"seed {seed}", "steps": {"sst2": 30}, "results": {"sst2": {method: part}},
            "loadavg_before": [1.0], "loadavg_after": [2.0], "total_seconds": 13.0}  # fmt: skip


def test_join_reports_of_other_seeds(bench):
    from _compare_report import join

    joined = join({"b.json": part_report(1, 0.80), "a.json": part_report(0, 0.90)})
    lora = joined["results"]["sst2"]["lora-r4"]
    assert (
        lora["seeds"] == [0, 1]
        and lora["mean"] == pytest.approx(0.85)
        and lora["std"] == pytest.approx(0.0707, abs=1e-4)
    )
    assert (
        lora["peak_rss_mb"] == 901.0
        and lora["process_seconds"] == 24.0
        and joined["config"]["seeds"] == [0, 1]
    )
    assert joined["joined_from"] == {"b.json": "seed 1", "a.json": "seed 0"}
    again = join({"ab.json": joined, "c.json": part_report(2, 0.70)})  # runs added to a joined report
    assert again["results"]["sst2"]["lora-r4"]["seeds"] == [0, 1, 2]
    assert again["joined_from"] == {"b.json": "seed 1", "a.json": "seed 0", "c.json": "seed 2"}
    assert again["loadavg_before"] == [[1.0], [1.0], [1.0]] and again["total_seconds"] == 39.0
    with pytest.raises(SystemExit, match="lr_lora=0.001"):
        join({"a.json": part_report(0, 0.9), "b.json": part_report(1, 0.8, lr=1e-3)})
    with pytest.raises(SystemExit, match="seed given twice"):
        join({"a.json": part_report(0, 0.9), "b.json": part_report(0, 0.8)})


def test_join_reads_a_report_older_than_a_setting_at_the_value_it_ran_with(bench):
    from _compare_report import join

    old, new = part_report(0, 0.9), part_report(1, 0.8)  # old: no beta_every (it ran with 1)
    new["config"]["beta_every"] = 1
    assert join({"a.json": old, "b.json": new})["results"]["sst2"]["lora-r4"]["seeds"] == [0, 1]
    new["config"]["beta_every"] = 4
    with pytest.raises(SystemExit, match="beta_every=4"):
        join({"a.json": old, "b.json": new})
    new["config"] |= {"beta_every": 1, "work_dir": "w", "checkpoint_every": 250}  # resumable: same training
    assert join({"a.json": old, "b.json": new})["results"]["sst2"]["lora-r4"]["seeds"] == [0, 1]
    new["config"] |= {"beta_every": 1, "pooling": "mean"}  # old ran with the model's pooler
    with pytest.raises(SystemExit, match="pooling='mean'"):
        join({"a.json": old, "b.json": new})
    new["config"] |= {"pooling": "model", "schedule": "constant"}  # old ran at a constant lr
    assert join({"a.json": old, "b.json": new})["results"]["sst2"]["lora-r4"]["seeds"] == [0, 1]
    new["config"]["schedule"] = "linear"
    with pytest.raises(SystemExit, match="schedule='linear'"):
        join({"a.json": old, "b.json": new})


def test_join_reports_of_other_methods(bench):
    from _compare_report import join, notes

    parts = {"a.json": part_report(0, 0.9), "b.json": part_report(1, 0.8),
             "c.json": part_report(0, 0.7, method="full-ft")}  # fmt: skip
    joined = join(parts)
    sst2 = joined["results"]["sst2"]
    assert list(sst2) == ["lora-r4", "full-ft"] and joined["config"]["methods"] == ["lora-r4", "full-ft"]
    assert sst2["lora-r4"]["seeds"] == [0, 1] and sst2["full-ft"]["seeds"] == [0]
    assert sst2["full-ft"]["mean"] == pytest.approx(0.7) and sst2["full-ft"]["process_seconds"] == 12.0
    joined["config"]["mode"] = "full"
    assert any("3 reports run as separate processes" in n for n in notes(joined))
    assert not any("--work-dir" in n for n in notes(joined))
    sst2["full-ft"]["runs"][0]["resumed"] = True  # a run cut and resumed under --work-dir
    assert any("Resumed from a checkpoint (--work-dir): sst2 full-ft seed 0. " in n for n in notes(joined))
    with pytest.raises(SystemExit, match="lr_lora"):
        join({"a.json": part_report(0, 0.9), "c.json": part_report(0, 0.7, lr=1e-3, method="full-ft")})


def test_cost_target_is_issue_12s(bench):
    from _compare_report import cost_section

    def cost(autolora_seconds):
        results = {"sst2": {"adalora": {"train_seconds_mean": 100.0},
                            "autolora": {"train_seconds_mean": autolora_seconds}}}  # fmt: skip
        return cost_section(results, None, "sst2", 0, 10)

    assert cost(129.0)["target_met"] and not cost(131.0)["target_met"]
    assert cost(131.0)["target_autolora_max_x_adalora"] == 1.3


def test_summary_says_how_well_the_seeds_ranks_agree(bench):
    from _compare_report import summarize

    def run(seed, ranks):
        return part_report(seed, 0.8)["results"]["sst2"]["lora-r4"]["runs"][0] | {
            "ranks": dict(zip("abcd", ranks, strict=True)), "rank_total": sum(ranks),
            "phase_seconds": {"search": 1.0}}  # fmt: skip

    same, reversed_ = [4, 3, 2, 1], [1, 2, 3, 4]
    res = {"runs": [run(0, same), run(1, same), run(2, reversed_)], "peak_rss_mb": 1.0, "base_rss_mb": 1.0}
    s = summarize(res)
    assert s["rank_spearman_seeds"] == pytest.approx((1 - 1 - 1) / 3)
    assert summarize(res | {"runs": res["runs"][:1]}).get("rank_spearman_seeds") is None


def test_wall_time_leaves_resumed_runs_out(bench):
    """A resumed run's wall time covers only its last process: the mean, the ratios and the report use
    the runs made in one process, and name their seeds."""
    from _compare_report import cost_section, method_row, summarize

    def part(seed, method, resumed=False):
        run = part_report(seed, 0.8, method=method)["results"]["sst2"][method]["runs"][0]
        return run | {"resumed": resumed}

    def summary(method, *resumed):
        runs = [part(seed, method, r) for seed, r in enumerate(resumed)]
        return {**summarize({"runs": runs, "peak_rss_mb": 1.0, "base_rss_mb": 1.0}), "runs": runs}

    ada, lora = summary("adalora", False, True), summary("lora-r4", False, False)
    assert ada["train_seconds_mean"] == 10.0 and ada["wall_seeds"] == [0]  # seed 1 (11 s) resumed
    assert ada["train_seconds"] == [10.0, 11.0]  # every run's own number stays in the summary
    assert lora["train_seconds_mean"] == 10.5 and lora["wall_seeds"] == [0, 1]
    gone = summary("autolora", True, True)
    assert gone["train_seconds_mean"] is None and gone["wall_seeds"] == []
    results = {"sst2": {"adalora": ada, "lora-r4": lora, "autolora": gone}}
    cost = cost_section(results, None, "sst2", 0, 10)
    assert cost["lora-r4_vs_adalora"] == pytest.approx(1.05) and "autolora_vs_adalora" not in cost
    assert "target_met" not in cost  # no verdict from a resumed run's partial time
    assert "| 10.0 (seeds [0]) | 0.95 |" in method_row("adalora", ada, results["sst2"], curves=False)
    assert "| n/a (every run resumed) |  |" in method_row("autolora", gone, results["sst2"], curves=False)
