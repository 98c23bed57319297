"""experiments/pipeline_ranks_study.py: where searches ended and how their ranks agree, on hand-made
pipeline output folders (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import experiment_module


@pytest.fixture(scope="module")
def study():
    with experiment_module("pipeline_ranks_study") as module:
        yield module


def write_run(root: Path, name: str, ranks: list[int], steps: int, prefix: str = "layer") -> None:
    run = root / name
    run.mkdir(parents=True)
    names = [f"{prefix}.{i}" for i in range(len(ranks))]
    diag = {"search_steps": steps, "decisive": steps < 400}
    ranks_json = {"ranks": dict(zip(names, ranks, strict=True)), "diagnostics": diag}
    (run / "ranks.json").write_text(json.dumps(ranks_json))
    (run / "metrics.json").write_text(json.dumps({"seconds": {"search": 2.0 * steps}}))
    (run / "config.json").write_text(json.dumps({"hypergradient": "none", "stop_when_stable": True}))


def test_reads_stop_steps_and_agreement(study, tmp_path):
    write_run(tmp_path, "sst2_s0", [1, 2, 3, 4], 300)
    write_run(tmp_path, "sst2_s1", [1, 2, 4, 3], 400)
    write_run(tmp_path, "sst2_s2", [4, 3, 2, 1], 350)
    (tmp_path / "not_a_run").mkdir()
    against = {"ranks": {"effective-rank": {"sst2_d0_i0": [1, 2, 3, 4], "sst2_d1_i1": [4, 3, 2, 1]}}}
    data, table = study.study([tmp_path], against, "effective-rank")
    task = data["tasks"]["sst2"]
    assert task["mean_search_steps"] == pytest.approx(350)
    # pairwise Spearman: (s0, s1) 0.8, (s0, s2) -1, (s1, s2) -0.8 -> mean -1/3
    assert task["spearman_seeds"] == pytest.approx(-1 / 3)
    assert task["runs"][0]["spearman_with_study"] == pytest.approx(1.0)
    assert task["runs"][1]["spearman_with_study"] == pytest.approx(-0.8)
    assert task["runs"][2]["spearman_with_study"] is None  # the study has no seed 2
    assert task["study_spearman_seeds"] == pytest.approx(-1.0)  # the study's seeds 0 and 1
    assert task["settings"]["hypergradient"] == "none"
    assert "| sst2 | 1 | 400 | False | 10 | 800 | -0.80 |" in table
    assert data["across_tasks"] == {} and "across the tasks" not in table  # one task


def test_agreement_across_tasks(study, tmp_path):
    write_run(tmp_path / "a", "sst2_s0", [1, 2, 3, 4], 300)
    write_run(tmp_path / "a", "sst2_s1", [1, 2, 4, 3], 300)
    write_run(tmp_path / "b", "mr_s0", [1, 2, 3, 4], 300)
    write_run(tmp_path / "b", "mr_s1", [4, 3, 2, 1], 300)
    data, table = study.study([tmp_path / "a", tmp_path / "b"], None, "effective-rank")
    # mr runs against sst2 runs: (s0, s0) 1, (s0, s1) 0.8, (s1, s0) -1, (s1, s1) -0.8 -> mean 0
    assert data["across_tasks"]["mr~sst2"] == {"spearman": pytest.approx(0.0), "pairs": 4}
    assert "| mr ~ sst2 | 4 | +0.00 | -1.00 / +0.80 |" in table
    write_run(tmp_path / "c", "sst2_s0", [1, 2, 3, 4], 300)
    with pytest.raises(SystemExit, match="sst2_s0 is in more than one"):
        study.study([tmp_path / "a", tmp_path / "c"], None, "effective-rank")
    write_run(tmp_path / "d", "cola_s0", [1, 2, 3, 4], 300, prefix="other")
    write_run(tmp_path / "d", "cola_s1", [1, 2, 3, 4], 300, prefix="other")
    with pytest.raises(SystemExit, match="adapt other modules"):
        study.study([tmp_path / "a", tmp_path / "d"], None, "effective-rank")
