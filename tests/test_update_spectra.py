"""experiments/update_spectra.py on hand-made search checkpoints with planted updates (no training)."""

from __future__ import annotations

import pytest
from helpers import experiment_module, write_planted_search


@pytest.fixture(scope="module")
def spectra():
    with experiment_module("update_spectra") as module:
        yield module


def test_norms_effective_ranks_and_their_correlation_with_the_ranks(spectra, tmp_path):
    small_flat = ([0.1, 0.1, 0.1, 0.1], 4)  # the effective-rank rule's favourite: 4 equal directions
    large_sharp = ([2.0, 0.0, 0.0, 0.0], 1)
    middle = ([1.0, 0.5, 0.0, 0.0], 2)
    write_planted_search(tmp_path, "t_s0", {"a": small_flat, "b": middle, "c": large_sharp})
    write_planted_search(tmp_path, "t_s1", {"a": large_sharp, "b": middle, "c": small_flat})
    runs = spectra.read_runs([tmp_path])
    a = runs["t"][0]["a"]
    assert a["norm"] == pytest.approx(0.2) and a["top"] == pytest.approx(0.1)
    assert a["effective_rank"] == pytest.approx(4.0)
    assert runs["t"][0]["c"]["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    assert runs["t"][0]["b"]["norm"] == pytest.approx(1.25**0.5)
    data, table = spectra.report(runs)
    assert data["t"]["spearman_rank_norm"] == {0: pytest.approx(-1.0), 1: pytest.approx(-1.0)}
    assert data["t"]["mean"]["a"]["rank"] == pytest.approx(2.5)
    assert "0: -1.00, 1: -1.00" in table
    # 6 ranks in proportion to the norms 0.2 : 1.12 : 2: 3 units above 1 -> 0.18, 1.01, 1.81 -> 1 + 0, 1, 2
    data, table = spectra.report(runs, total=6)
    assert data["t"]["by_norm"]["ranks"]["0"] == {"a": 1, "b": 2, "c": 3}
    assert data["t"]["by_norm"]["ranks"]["1"] == {"a": 3, "b": 2, "c": 1}
    agree = data["t"]["agreement_across_seeds"]
    assert agree == {"selected": pytest.approx(-1.0), "by_norm": pytest.approx(-1.0)}
    assert "| 1 / 3 |" in table  # adapter a's row: seed 0, seed 1


def test_a_run_without_a_search_is_refused(spectra, tmp_path):
    write_planted_search(tmp_path, "t_s0", {"a": ([1.0, 0.0, 0.0, 0.0], 1)})
    (tmp_path / "t_s0/checkpoints/search.pt").unlink()
    with pytest.raises(SystemExit, match="no checkpoints/search.pt"):
        spectra.read_runs([tmp_path])
