"""experiments/compare_tasks.py: methods over tasks from bench_compare reports (hand-made reports)."""

from __future__ import annotations

import json

import pytest
from helpers import experiment_module


@pytest.fixture(scope="module")
def tasks():
    with experiment_module("compare_tasks") as module:
        yield module


def report(ds: str, scores: dict[str, list[float]], steps: int = 30, **config) -> dict:
    """A bench_compare report of one dataset: method -> scores of seeds 0, 1, ..."""
    results = {}
    for method, values in scores.items():
        runs = [{"seed": s, "metric": "accuracy", "score": v, "trainable_parameters": 10 + s,
                 "train_seconds": 5.0} for s, v in enumerate(values)]  # fmt: skip
        results[method] = {"seeds": list(range(len(values))), "scores": values,
                           "mean": sum(values) / len(values), "std": 0.0, "trainable_parameters": 10,
                           "train_seconds_mean": 5.0, "runs": runs}  # fmt: skip
    return {"config": {"seeds": [0], "lr_lora": 1e-3, **config}, "command": f"run {ds}",
            "steps": {ds: steps}, "results": {ds: results}, "package": {"git_commit": "abc"},
            "machine": {"device_name": "CPU"}}  # fmt: skip


def test_three_task_mean_of_paired_differences(tasks, tmp_path):
    a = report("sst2", {"autolora": [0.90, 0.80, 0.70], "lora-r4": [0.88, 0.80, 0.60]})
    b = report("cola", {"autolora": [0.30, 0.20], "lora-r4": [0.20, 0.30]})
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    tasks.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path), "--name", "t"])
    out = json.loads((tmp_path / "t.json").read_text())
    assert out["paired"]["sst2"]["lora-r4"]["diffs"] == pytest.approx([0.02, 0.0, 0.1])
    across = out["across_tasks"]["lora-r4"]
    assert across["seeds"] == [0, 1]  # the seeds both tasks have
    assert across["diffs"] == pytest.approx([(0.02 + 0.10) / 2, (0.0 - 0.10) / 2])
    assert across["ci95"][0] < across["mean"] < across["ci95"][1]
    assert "**+0.50 (" in (tmp_path / "t.md").read_text()  # (0.06 - 0.05) / 2, in points


def test_cells_carry_the_convergence_verdict(tasks, tmp_path):
    a = report("sst2", {"autolora": [0.9], "lora-r4": [0.8]})
    a["results"]["sst2"]["autolora"] |= {"gain_over_second_half": 0.02, "gain_over_last_quarter": 0.015,
                                         "converged": False}  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(a))
    tasks.main([str(tmp_path / "a.json"), "--out", str(tmp_path), "--name", "t"])
    table = (tmp_path / "t.md").read_text()
    assert "gain +2.0, last quarter +1.5 NOT converged" in table
    cells = [r for r in table.splitlines() if r.startswith("| ")]
    assert sum("last quarter" in r for r in cells) == 1  # lora-r4 has no curve: no verdict


def test_first_report_wins_unless_methods_are_named(tasks, tmp_path):
    new = report("sst2", {"autolora": [0.9], "adalora": [0.1]}, beta_every=4)
    old = report("sst2", {"autolora": [0.5], "adalora": [0.6, 0.7]})  # older: ran with beta every 1
    for name, r in (("new.json", new), ("old.json", old)):
        (tmp_path / name).write_text(json.dumps(r))
    only, paths = {}, []
    for text in (f"{tmp_path / 'new.json'}:autolora", str(tmp_path / "old.json")):
        path, methods = tasks.parse_source(text)
        only[str(path)], paths = methods, [*paths, str(path)]
    out = tasks.build({p: json.loads(open(p).read()) for p in paths}, only)
    table = out["table"]["sst2"]
    assert table["autolora"]["scores"] == [0.9] and table["adalora"]["scores"] == [0.6, 0.7]
    assert out["settings_that_differ"] == {"beta_every": {paths[0]: 4, paths[1]: 1}}


def test_refuses_two_budgets_of_one_task_and_missing_files(tasks, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(report("mr", {"autolora": [0.8]}, steps=30)))
    (tmp_path / "b.json").write_text(json.dumps(report("mr", {"lora-r4": [0.8]}, steps=60)))
    with pytest.raises(SystemExit, match="mr: the reports ran different budgets"):
        tasks.main(
            [str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path), "--name", "t"]
        )
    with pytest.raises(SystemExit, match="no such file"):
        tasks.main([str(tmp_path / "c.json"), "--out", str(tmp_path), "--name", "t"])
    assert not (tmp_path / "t.json").exists()


def test_random_control_pairs_only_where_its_search_reached_autoloras_ranks(tasks):
    from _compare_report import unpaired_seeds

    auto = {"seeds": [0, 1], "ranks": [[2, 1], [1, 2]]}
    rand = {
        "runs": [
            {"seed": 0, "searched_ranks": {"a": 2, "b": 1}},
            {"seed": 1, "searched_ranks": {"a": 2, "b": 1}},
        ]
    }
    assert unpaired_seeds({"autolora": auto, "autolora-random": rand}) == [1]
    assert unpaired_seeds({"autolora": auto}) == []


def test_wall_time_of_resumed_runs_is_left_out(tasks, tmp_path):
    a = report("sst2", {"autolora": [0.9, 0.8], "adalora": [0.8, 0.7], "lora-r4": [0.8, 0.8]})
    a["results"]["sst2"]["autolora"] |= {"train_seconds_mean": 6.0, "wall_seeds": [1]}  # seed 0 resumed
    a["results"]["sst2"]["lora-r4"] |= {"train_seconds_mean": None, "wall_seeds": []}  # both resumed
    (tmp_path / "a.json").write_text(json.dumps(a))
    tasks.main([str(tmp_path / "a.json"), "--out", str(tmp_path), "--name", "t"])
    rows: dict[str, str] = {}  # the first table's row of each method (the paired table's come after)
    for r in (tmp_path / "t.md").read_text().splitlines():
        rows.setdefault(r.split(" | ")[0], r)
    assert "; 6 s (seeds [1]) (1.20)" in rows["| autolora"] and "; 5 s (1.00)" in rows["| adalora"]
    assert "; n/a (every run resumed) " in rows["| lora-r4"]


def test_reports_are_summarised_again_with_the_late_readouts(tasks, tmp_path):
    """A stored summary older than the late readouts gets them from its runs: the trend in the cell and
    AutoLoRA minus each method on the late mean (tasks without curves left out of its mean over tasks)."""

    def curve(*values):  # eval points at steps 25, 50, 75, 100 of a 100-step budget
        return [{"step": 25 * (i + 1), "accuracy": v} for i, v in enumerate(values)]

    a = report("sst2", {"autolora": [0.9, 0.8], "lora-r4": [0.8, 0.8]})
    curves = {"autolora": [curve(0.5, 0.6, 0.8, 0.9), curve(0.5, 0.6, 0.7, 0.7)],
              "lora-r4": [curve(0.7, 0.8, 0.8, 0.8), curve(0.7, 0.8, 0.8, 0.8)]}  # fmt: skip
    for method, cs in curves.items():
        summary = a["results"]["sst2"][method]
        summary |= {"peak_rss_mb": 1.0, "base_rss_mb": 1.0}
        for run, c in zip(summary["runs"], cs, strict=True):
            run |= {"eval_curve": c, "eval_seconds": 1.0, "gpu_peak_mb": None}
    b = report("mr", {"autolora": [0.7, 0.7], "lora-r4": [0.6, 0.7]})  # no curves
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    tasks.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path), "--name", "t"])
    out = json.loads((tmp_path / "t.json").read_text())
    auto = out["table"]["sst2"]["autolora"]
    # points after step 50: seed 0 (75, 0.8), (100, 0.9): slope 0.004 x 50 = 0.2; seed 1 flat: 0
    assert auto["trend_over_second_half"] == pytest.approx(0.1) and auto["flat_by_trend"] is False
    assert out["table"]["sst2"]["lora-r4"]["trend_over_second_half"] == pytest.approx(0.0)
    assert auto["late_means"] == pytest.approx([0.85, 0.7])
    late = out["paired_late_mean"]["sst2"]["lora-r4"]
    assert late["diffs"] == pytest.approx([0.05, -0.1]) and out["paired_late_mean"]["mr"] == {}
    assert out["across_tasks_late_mean"]["lora-r4"]["tasks"] == ["sst2"]
    table = (tmp_path / "t.md").read_text()
    assert "trend +10.0 rising" in table and "on the late mean" in table
