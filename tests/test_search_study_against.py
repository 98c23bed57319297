"""experiments/search_study_analyse.py --against: runs of the same name in two studies compared, per
rule both hold (hand-made rank lists, no training)."""

from __future__ import annotations

import math

import pytest
from helpers import experiment_module


@pytest.fixture(scope="module")
def analyse():
    with experiment_module("search_study_analyse") as module:
        yield module


def test_against_pairs_runs_by_name_and_rule(analyse):
    here = {"effective-rank": {"sst2_d0_i0": [1, 2, 3, 4], "mr_d0_i0": [2, 2, 2, 2]},
            "alpha": {"sst2_d0_i0": [1, 1, 2, 2]}}  # fmt: skip
    there = {"effective-rank": {"sst2_d0_i0": [4, 3, 2, 1], "mr_d0_i0": [1, 2, 3, 4],
                                "cola_d0_i0": [1, 2, 3, 4]},
             "spectrum": {"sst2_d0_i0": [1, 2, 3, 4]}}  # fmt: skip
    out, lines = analyse.against(here, there)
    assert set(out) == {"effective-rank"}  # alpha and spectrum are held by one study only
    assert set(out["effective-rank"]) == {"sst2_d0_i0", "mr_d0_i0"}  # cola ran in the other only
    rev = out["effective-rank"]["sst2_d0_i0"]
    assert rev["spearman"] == pytest.approx(-1.0) and (rev["total"], rev["total_other"]) == (10, 10)
    assert math.isnan(out["effective-rank"]["mr_d0_i0"]["spearman"])  # constant ranks: no ranking
    assert "| sst2_d0_i0 | effective-rank | -1.00 | 10 | 10 |" in lines


def test_against_a_partial_agreement(analyse):
    # ranks of a: 1, 2, 3, 4; of b: 1, 3, 2, 4 -> d^2 = 0 + 1 + 1 + 0 = 2; rho = 1 - 6*2/(4*15) = 0.8
    out, _ = analyse.against({"r": {"x": [1, 2, 3, 4]}}, {"r": {"x": [1, 3, 2, 4]}})
    assert out["r"]["x"]["spearman"] == pytest.approx(0.8)


def test_snapshot_diagnostics_read_a_still_rank_two_update(analyse):
    import torch

    U, V = torch.zeros(6, 8), torch.zeros(8, 5)
    U[0, 0] = U[1, 1] = V[0, 0] = V[1, 1] = 1.0  # two equal directions: effective rank 2
    state = {"U": U, "V": V, "beta": torch.zeros(8), "scaling": 2.0}
    run = {"final": {"a": state}, "snapshots": {t: {"a": state} for t in (25, 50, 75)}}
    d = analyse.snapshot_diagnostics(run, window=50)
    assert d["total_rank_along"] == {25: 2, 50: 2, 75: 2}
    assert d["decisive_adapters"] == 1 and d["stable_steps"] == 50 and d["selected"] is True
    assert analyse.snapshot_diagnostics({"final": {"a": state}}) is None  # no snapshots, nothing to read
