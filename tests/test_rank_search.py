"""The rank search's outputs: diagnostics, rank rules, given ranks, the random/uniform controls and
the stopping rule."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from pipeline_fixtures import cola, on_search_step, run, save_tiny_bert
from torch import nn

import autolora
from autolora.cli import main
from autolora.search import BilevelSearch, SearchStepConfig
from autolora.search.diagnostics import adapter_diagnostics
from autolora.search.tracker import SearchTracker
from autolora.tuner.allocation import RankPolicy
from autolora.tuner.rank_rules import (
    decision_series,
    effective_rank,
    rank_from_weights,
    rule_weights,
    spectral_factors,
    spectrum,
    spectrum_from_grams,
    update_grams,
    update_norm,
)
from autolora.tuner.ranks import (
    check_ranks,
    proportional_ranks,
    random_ranks,
    read_ranks,
    scaled_ranks,
    uniform_ranks,
)

# -- diagnostics ---------------------------------------------------------------------------------


def test_margin_is_distance_to_threshold_over_recent_movement():
    tau, steps = 0.25, list(range(1, 12))
    settled = torch.tensor([[0.25 + 0.01 * min(t, 5)] for t in steps])  # moved 0.05, then still
    crossing = torch.tensor([[0.25 + 0.01 * (-1) ** t] for t in steps])  # flips across tau each step
    d = adapter_diagnostics(settled, steps, [1] * 11, tau, window=5)
    assert d.margins == [float("inf")] and d.decisive and d.stable_steps == 10
    d = adapter_diagnostics(settled, steps, [1] * 11, tau, window=9)  # sees steps 3-5: 0.03 of movement
    assert d.margins[0] == pytest.approx(0.05 / 0.03, rel=1e-3) and d.decisive
    d = adapter_diagnostics(crossing, steps, [1, 2] * 5 + [1], tau, window=5)
    assert d.min_margin == pytest.approx(0.01 / 0.1) and not d.decisive and d.stable_steps == 0
    d = adapter_diagnostics(settled, steps, [1] * 9 + [2, 2], tau, window=5)  # rank changed at step 10
    assert d.stable_steps == 1 and not d.decisive


class Planted(nn.Module):
    """Each layer maps x to its own block of the output; the target differs from the frozen layer by
    a planted update of rank TRUE[i] (signal), or is noise independent of x (no signal)."""

    TRUE, D = (4, 4, 1, 1), 16

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(self.D, self.D, bias=False) for _ in self.TRUE)

    def forward(self, x, y):
        return SimpleNamespace(loss=((torch.cat([f(x) for f in self.layers], -1) - y) ** 2).mean())


def planted_search(
    signal: bool,
    steps: int = 300,
    rule: str = "spectrum",
    hypergradient: str = "second-order",
    budget: float | None = None,
):
    torch.manual_seed(0)
    model, D = Planted(), Planted.D
    teacher = [f.weight.detach() + torch.randn(D, r) @ torch.randn(r, D) / D**0.5 for f, r in
               zip(model.layers, Planted.TRUE, strict=True)]  # fmt: skip
    autolora.inject(model, [r"re:layers\.\d+"], rank=8)
    inner, outer = autolora.adapter_parameters(model), autolora.selection_parameters(model)
    opts = torch.optim.AdamW(inner, lr=1e-2), torch.optim.Adam(outer, lr=1e-1)
    search = BilevelSearch(model, inner, outer, *opts, SearchStepConfig(hypergradient, xi=1e-2))
    policy = RankPolicy.of(len(Planted.TRUE), 8, rule, budget)
    tracker = SearchTracker(list(autolora.adapters(model)), policy=policy, window=50)

    def batch(n: int = 32) -> dict:
        x = torch.randn(n, D)
        y = torch.cat([x @ t.t() for t in teacher], -1) if signal else torch.randn(n, D * len(teacher))
        return {"x": x, "y": y}

    history: list[dict] = []
    for i in range(steps):
        history.append(tracker.record(i + 1, search.step(batch(), batch()), history))
    return tracker, history


@pytest.mark.slow
@pytest.mark.parametrize(
    "rule, hypergradient",
    [("spectrum", "second-order"), ("effective-rank", "second-order"), ("effective-rank", "none")],
)
def test_diagnostics_decisive_on_a_planted_rank_and_warn_without_signal(rule, hypergradient):
    tracker, history = planted_search(signal=True, rule=rule, hypergradient=hypergradient)
    found = tracker.diagnose(history)
    ranks = list(tracker.ranks(history).values())
    # Seen (seed 0): ranks [4, 3, 1, 1] for planted [4, 4, 1, 1] by both rules; smallest margin 1.9
    # (spectrum) and 3.5 (effective-rank); without signal effective-rank reads 8 everywhere, margins < 1.
    # W alone (hypergradient none): [4, 4, 1, 1], smallest margin 9.6; noise: 8 everywhere, margins
    # 1.1-4.2 -- a still search that kept everything, which the second warning names.
    assert found["decisive"] and found["selected"] and found["warning"] is None, found["per_adapter"]
    assert min(ranks[:2]) > max(ranks[2:]), ranks
    tracker, history = planted_search(signal=False, rule=rule, hypergradient=hypergradient)
    noise = tracker.diagnose(history)
    if hypergradient == "none":  # beta's noise no longer moves the reading: still, but nothing selected
        assert set(tracker.ranks(history).values()) == {8} and noise["selected"] is False
        assert "selected nothing" in noise["warning"] and "--k" in noise["warning"]
    else:
        assert not noise["decisive"] and noise["min_margin"] < 1
        assert "not decisive" in noise["warning"] and "--lr-beta" in noise["warning"]


@pytest.mark.slow
@pytest.mark.parametrize("hypergradient", ["second-order", "none"])
def test_under_a_budget_a_planted_rank_settles_structured_and_noise_settles_even(hypergradient):
    """Budget 4 an adapter (16 over the planted [4, 4, 1, 1]): the signal's shares settle with the
    planted layers on top; noise settles too, on an even split, which the summary notes. Seen (seed
    0): signal [8, 6, 1, 1] / [7, 7, 1, 1] with 0.03 / 0.08 ranks moved over the last window; noise
    [4, 4, 4, 4], 0.06 / 0.03 moved."""
    tracker, history = planted_search(True, rule="effective-rank", hypergradient=hypergradient, budget=4.0)
    found, ranks = tracker.diagnose(history), list(tracker.ranks(history).values())
    assert sum(ranks) == 16 and min(ranks[:2]) > max(ranks[2:]), ranks
    assert found["decisive"] and not found["allocation"]["even"], found["allocation"]
    assert found["warning"] is None and found["note"] is None
    tracker, history = planted_search(False, rule="effective-rank", hypergradient=hypergradient, budget=4.0)
    noise = tracker.diagnose(history)
    assert noise["decisive"] and noise["allocation"]["even"] and noise["warning"] is None
    assert "within one of an even split" in noise["note"]


# -- rank rules ----------------------------------------------------------------------------------


def test_spectrum_ignores_how_components_share_the_scale():
    torch.manual_seed(0)
    U, V, alpha = torch.randn(12, 4), torch.randn(4, 10), torch.softmax(torch.randn(4), 0)
    delta = (U * alpha * 2.0) @ V
    torch.testing.assert_close(spectrum(U, V, alpha, 2.0), torch.linalg.svdvals(delta.double())[:4])
    moved = torch.tensor([3.0, 0.5, 1.0, 2.0])  # component j's scale moved from alpha_j into u_j
    torch.testing.assert_close(spectrum(U * moved, V, alpha / moved, 2.0), spectrum(U, V, alpha, 2.0))
    A, B = spectral_factors(U, V, alpha, 2.0, rank=2)
    s = torch.linalg.svdvals(delta.double())
    assert torch.linalg.matrix_norm(A @ B - delta.double(), 2) == pytest.approx(float(s[2]), rel=1e-6)
    assert update_norm(U, V, alpha, 2.0) == pytest.approx(float(torch.linalg.norm(delta.double())), rel=1e-6)
    assert update_norm(U * moved, V, alpha / moved, 2.0) == pytest.approx(update_norm(U, V, alpha, 2.0))


@pytest.mark.parametrize("rank", [8, 5, 1, 0])  # full rank, rank-deficient, rank 1, U = 0 (LoRA's init)
def test_singular_values_from_the_grams_equal_the_qr_path(rank):
    """spectrum_from_grams (what the tracker reads, without linalg on the device) against spectrum (QR
    + SVD): the nonzero singular values to 1e-10 of themselves; the zero ones, which a Gram can only
    resolve to sqrt(fp64 eps) ~ 1.5e-8 of the largest, below 1e-7 of it."""
    g = torch.Generator().manual_seed(rank)
    out, k, d_in = 37, 8, 123
    U = torch.randn(out, rank, generator=g) @ torch.randn(rank, k, generator=g)
    V, alpha = torch.randn(k, d_in, generator=g), torch.rand(k, generator=g) + 0.1
    qr = spectrum(U, V, alpha, 2.0)
    grams = spectrum_from_grams(*update_grams(U, V, alpha, 2.0))
    assert grams.dtype == torch.float64 and grams.shape == (k,)
    torch.testing.assert_close(grams[:rank], qr[:rank], rtol=1e-10, atol=0)
    assert (grams[rank:] <= 1e-7 * qr[0]).all()
    if rank == 0:
        assert torch.equal(grams, torch.zeros(k, dtype=torch.float64))


def test_effective_rank_counts_equal_directions_and_rounds():
    k = 8
    flat, one = torch.full((k,), 1 / k), torch.eye(k)[0]
    two, skew = torch.tensor([0.5, 0.5] + [0.0] * 6), torch.tensor([0.6, 0.2, 0.2] + [0.0] * 5)
    assert float(effective_rank(flat)) == pytest.approx(k) and float(effective_rank(one)) == 1.0
    assert float(effective_rank(two)) == pytest.approx(2.0)
    e = float(effective_rank(skew))  # exp(0.6 ln(1/0.6) + 0.4 ln 5) = exp(0.9503) = 2.5864
    assert e == pytest.approx(2.5864, abs=1e-4)
    window = torch.stack([flat, skew])  # reads the last row only
    assert rank_from_weights("effective-rank", window, 1 / k) == 3
    assert rank_from_weights("spectrum", window, 1 / k) == 3
    series, boundary = decision_series("effective-rank", window, 1 / k)
    assert series.shape == (2, 1) and boundary == 2.5  # 2.59 rounds to 3 until it falls below 2.5
    assert decision_series("effective-rank", flat[None], 1 / k)[1] == k - 0.5
    assert decision_series("spectrum", window, 1 / k) == (window, 1 / k)
    torch.manual_seed(0)  # through the spectrum: blind to how a component shares its scale
    U, V, alpha = torch.randn(12, 4), torch.randn(4, 10), torch.softmax(torch.randn(4), 0)
    moved = torch.tensor([3.0, 0.5, 1.0, 2.0])
    w = [rule_weights("effective-rank", u, V, a, 2.0) for u, a in ((U, alpha), (U * moved, alpha / moved))]
    torch.testing.assert_close(w[0], w[1])


# -- given ranks and the controls ----------------------------------------------------------------

NAMES = [f"layer.{i}.{p}" for i in range(6) for p in ("q", "v")]


def test_random_control_is_seeded_and_keeps_the_total():
    a, b, c = (random_ranks(NAMES, 30, 8, seed) for seed in (0, 0, 1))
    assert a == b and a != c
    assert all(sum(r.values()) == 30 and all(1 <= x <= 8 for x in r.values()) for r in (a, c))
    u = uniform_ranks(NAMES, 30, 8)
    assert sum(u.values()) == 30 and max(u.values()) - min(u.values()) <= 1
    for bad in (11, 97):
        with pytest.raises(ValueError, match="total"):
            random_ranks(NAMES, bad, 8, 0)


def test_scaled_ranks_keep_the_order_and_reach_the_total():
    found = dict(zip(NAMES, [6, 3, 3, 2, 3, 2, 2, 2, 2, 3, 1, 2], strict=True))
    assert scaled_ranks(found, 31, 8) == found  # its own total: unchanged
    assert list(scaled_ranks(found, 24, 8).values()) == [4, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1]
    # by hand: 12 units above 1 shared as 5:2:2:1:2:1:1:1:1:2:0:1 / 19, whole parts, then the largest
    # remainders: 5 of the six 0.63s (ties to the earlier adapter), none of the 0.26s or the 0.16
    assert scaled_ranks(found, 12, 8) == dict.fromkeys(NAMES, 1)
    assert scaled_ranks(found, 96, 8) == dict.fromkeys(NAMES, 8)
    for total in range(12, 97):
        s = scaled_ranks(found, total, 8)
        assert sum(s.values()) == total and all(1 <= r <= 8 for r in s.values())
        assert all(s[a] >= s[b] for a in NAMES for b in NAMES if found[a] > found[b])
    # a share past k stops at k and the rest goes to the others; none above 1: evenly
    assert scaled_ranks({"a": 8, "b": 1, "c": 2}, 20, 8) == {"a": 8, "b": 4, "c": 8}
    assert scaled_ranks({"a": 1, "b": 1, "c": 1}, 5, 8) == {"a": 2, "b": 2, "c": 1}
    with pytest.raises(ValueError, match="total: expected 12..96"):
        scaled_ranks(found, 97, 8)


def test_proportional_ranks_share_the_total_by_weight():
    # 3 units above 1 shared 0.5 : 1.5 : 0 -> 0.75, 2.25, 0: whole parts 0, 2, then the larger remainder
    assert proportional_ranks({"a": 0.5, "b": 1.5, "c": 0.0}, 6, 8) == {"a": 2, "b": 3, "c": 1}
    assert proportional_ranks({"a": 10.0, "b": 0.1}, 12, 8) == {"a": 8, "b": 4}  # a stops at k
    assert proportional_ranks({"a": 0.0, "b": 0.0}, 3, 8) == {"a": 2, "b": 1}  # no weight: evenly
    with pytest.raises(ValueError, match="weights: expected >= 0"):
        proportional_ranks({"a": -1.0, "b": 1.0}, 3, 8)
    with pytest.raises(ValueError, match="weights: expected >= 0"):
        proportional_ranks({"a": float("nan"), "b": 1.0}, 3, 8)


def test_ranks_file_errors_name_the_file_module_and_range(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"ranks": {"layer.0.q": 2, "nope": 3}}))
    with pytest.raises(ValueError, match=r"unknown module\(s\) \['nope'\]"):
        check_ranks(read_ranks(path), NAMES[:1], 8, where=f"ranks ({path})")
    path.write_text(json.dumps({"layer.0.q": 9}))  # a plain map works too
    with pytest.raises(ValueError, match=r"1\.\.k=8"):
        check_ranks(read_ranks(path), NAMES[:1], 8)
    path.write_text('{"layer.0.q": 2,\n oops}')
    with pytest.raises(ValueError, match=r"r\.json:2"):
        read_ranks(path)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.mark.slow
def test_ranks_round_trip_and_cli_errors(bert_dir, tmp_path, capsys):
    searched = run(bert_dir, tmp_path / "search", **cola())  # the default rule, effective-rank
    report = json.loads((tmp_path / "search/ranks.json").read_text())
    assert report["rule"] == "effective-rank" and set(report["diagnostics"]["per_adapter"]) == set(
        report["ranks"]
    )
    last = json.loads((tmp_path / "search/alpha_history.json").read_text())["history"][-1]
    n = len(report["ranks"])
    for name, rank in report["ranks_selected"].items():  # the rounded effective rank of the last shares
        shares = torch.tensor(last["weights"][name], dtype=torch.float64)
        assert rank == rank_from_weights("effective-rank", shares[None], 0.125), name
        # the record keeps the shares to 5 decimals, so e read back from them differs in the 4th
        assert last["sizes"][name] == pytest.approx(float(effective_rank(shares)) - 1, abs=1e-3)
        assert len(report["diagnostics"]["per_adapter"][name]["margins"]) == 1  # one number decides
    # applied: the default budget, 4 ranks an adapter, shared by the unrounded effective ranks
    assert report["rank_total"] == 4 * n and report["ranks"] == proportional_ranks(last["sizes"], 4 * n, 8)
    assert searched["ranks"] == report["ranks"] and report["diagnostics"]["allocation"]["total"] == 4 * n
    assert searched["selection"]["adapters"] == len(report["ranks"])
    reused = run(bert_dir, tmp_path / "reuse", ranks=str(tmp_path / "search/ranks.json"), **cola())
    assert reused["ranks"] == searched["ranks"] and reused["ranks_from"].endswith("ranks.json")
    assert not (tmp_path / "reuse/checkpoints/search.pt").exists()  # no search ran
    model = autolora.load_adapter(
        __import__("transformers").AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=2),
        tmp_path / "reuse/autolora_adapter",
    )
    assert autolora.current_ranks(model) == searched["ranks"]
    bad = tmp_path / "bad.json"
    name = next(iter(searched["ranks"]))
    for ranks, message in (
        ({**searched["ranks"], "x.y": 1}, "unknown module"),
        ({**searched["ranks"], name: 9}, "1..k=8"),
    ):
        bad.write_text(json.dumps(ranks))
        argv = ["run", "--model", str(bert_dir), "--format", "cola", "--ranks", str(bad),
                "--output-dir", str(tmp_path / "bad"), "--no-progress"]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "bad.json" in err


@pytest.mark.slow
def test_rank_total_carries_the_selection_and_checks_its_range(bert_dir, tmp_path, capsys):
    """--rank-total: the selection (ranks.json, unchanged) is carried to the total before retraining,
    warm from the searched components (rule alpha: the top ones by alpha) or fresh from --ranks."""
    warm = run(bert_dir, tmp_path / "warm", rank_rule="alpha", retrain_init="warm", rank_total=30, **cola())
    report = json.loads((tmp_path / "warm/ranks.json").read_text())
    selected = report["ranks_selected"]
    assert report["ranks"] == warm["ranks"]
    assert sum(selected.values()) != 30, "the test needs a selection of another total"
    assert warm["ranks_selected"] == selected and warm["rank_total"] == 30
    assert warm["ranks"] == scaled_ranks(selected, 30, 8)
    model = autolora.load_adapter(
        __import__("transformers").AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=2),
        tmp_path / "warm/autolora_adapter",
    )
    assert autolora.current_ranks(model) == warm["ranks"]
    n = len(selected)
    fresh = run(bert_dir, tmp_path / "fresh", ranks=str(tmp_path / "warm/ranks.json"), rank_total=n, **cola())
    assert fresh["ranks"] == dict.fromkeys(selected, 1) and fresh["ranks_selected"] == warm["ranks"]
    for total in (n - 1, 8 * n + 1):
        argv = ["run", "--model", str(bert_dir), "--format", "cola", "--rank-total", str(total),
                "--output-dir", str(tmp_path / "bad"), "--no-progress"]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"rank_total: expected {n}..{8 * n} for {n} adapters of k=8, got {total}" in err
        assert not (tmp_path / "bad/config.json").exists()  # refused before anything ran


@pytest.mark.slow
def test_rank_share_norm_gives_the_total_by_the_size_of_each_searched_update(bert_dir, tmp_path, capsys):
    """--rank-share norm: the total shared in proportion to |s U diag(alpha) V|_F of the searched
    adapters (read here from the search's final checkpoint), the selection kept in ranks.json."""
    result = run(bert_dir, tmp_path / "n", rank_total=30, rank_share="norm", **cola())
    params = torch.load(tmp_path / "n/search/checkpoint-6/autolora_state.pt", weights_only=False)["params"]
    selected = json.loads((tmp_path / "n/ranks.json").read_text())["ranks_selected"]
    norms = {}
    for name in selected:
        alpha = torch.softmax(params[f"{name}.beta"].double(), 0)
        delta = (params[f"{name}.U"].double() * alpha * (16.0 / 8)) @ params[f"{name}.V"].double()
        norms[name] = float(torch.linalg.norm(delta))
    assert result["update_norms"] == pytest.approx(norms, rel=1e-6)
    assert result["ranks"] == proportional_ranks(result["update_norms"], 30, 8) and result["rank_total"] == 30
    assert result["ranks_selected"] == selected
    assert result["ranks_from"] == "search (effective-rank rule; 30 ranks shared by norm)"
    for extra, message in ((["--rank-budget", "none"], "'norm' shares rank_budget or rank_total"),
                           (["--ranks", str(tmp_path / "n/ranks.json"),
                           "--rank-total", "30"], "--ranks skips the search")):  # fmt: skip
        argv = ["run", "--model", str(bert_dir), "--rank-share", "norm", *extra,
                "--output-dir", str(tmp_path / "bad"), "--no-progress"]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "rank_share: expected selection" in err and message in err, err
        assert not (tmp_path / "bad/config.json").exists()


@pytest.mark.slow
def test_w_alone_search_keeps_alpha_and_reads_the_update(bert_dir, tmp_path):
    """hypergradient none: beta never moves (alpha = 1/k), no D_val loss, and the ranks are the rounded
    effective ranks of the update W alone learned."""
    result = run(bert_dir, tmp_path / "w", hypergradient="none", **cola())
    report = json.loads((tmp_path / "w/ranks.json").read_text())
    assert all(a == [0.125] * 8 for a in report["alpha"].values())
    history = json.loads((tmp_path / "w/alpha_history.json").read_text())["history"]
    assert history and all("loss_val" not in h and "loss_tr" in h for h in history)
    for name, rank in report["ranks_selected"].items():  # the rule's reading, before the budget
        shares = torch.tensor(history[-1]["weights"][name], dtype=torch.float64)
        assert rank == rank_from_weights("effective-rank", shares[None], 0.125), name
    assert (
        result["ranks"]
        == report["ranks"]
        == proportional_ranks(history[-1]["sizes"], 4 * len(report["ranks"]), 8)
    )


# -- stopping ------------------------------------------------------------------------------------


def fake_history(steps: int, moving: bool, k: int = 4) -> list[dict]:
    out = []
    for t in range(1, steps + 1):
        w = [0.4, 0.27 + (0.02 * (-1) ** t if moving else 0.0), 0.2, 0.13]
        out.append({"step": t, "alpha": {"a": w}, "ranks": {"a": 2}, "rank_sum": 2})
    return out


def test_stopping_rule_waits_for_a_decisive_window_and_min_steps():
    adapter = SimpleNamespace(rank=4, threshold=lambda: 0.25)
    own = RankPolicy("alpha", None, "selection", 4)  # the rule's own ranks: margins decide
    tracker = SearchTracker([("a", adapter)], policy=own, window=5, stop_when_stable=True, min_steps=8)
    assert not tracker.should_stop(fake_history(7, moving=False))  # min_steps not reached
    assert tracker.should_stop(fake_history(8, moving=False))
    assert not tracker.should_stop(fake_history(20, moving=True))  # margin 0.02-0.04 / 0.2
    lazy = SearchTracker([("a", adapter)], policy=own, window=5, min_steps=8)
    assert not lazy.should_stop(fake_history(20, moving=False))  # stop_when_stable off


def budget_history(steps: int, drift: float) -> list[dict]:
    """Two adapters whose sizes drift apart by `drift` a step: shares (1 + d) / 2 and (1 - d) / 2."""
    out = []
    for t in range(1, steps + 1):
        sizes = {"a": 1.0 + drift * t, "b": 1.0 - drift * t}
        ranks = proportional_ranks(sizes, 8, 8)
        out.append({"step": t, "alpha": {"a": [0.5, 0.5], "b": [0.5, 0.5]}, "sizes": sizes, "ranks": ranks,
                    "rule_ranks": {"a": 2, "b": 2}, "rank_sum": 8})  # fmt: skip
    return out


def test_under_a_budget_the_verdict_is_whether_the_shares_settled():
    """Total 8 over two adapters: 6 ranks above the floor. Over a window of 10 steps a drift of d a step
    moves 6 * 10 d / 2 ranks: settled (under 1) at d = 0.01 (0.3), not at d = 0.05 (1.5)."""
    adapter = SimpleNamespace(rank=8, threshold=lambda: 0.125)
    tracker = SearchTracker([("a", adapter), ("b", adapter)], policy=RankPolicy("alpha", 8, "selection", 8),
                            window=10, stop_when_stable=True)  # fmt: skip
    still, moving = tracker.diagnose(budget_history(15, 0.01)), tracker.diagnose(budget_history(15, 0.05))
    assert still["allocation"]["moved_units"] == pytest.approx(0.3) and still["decisive"]
    assert still["warning"] is None
    assert moving["allocation"]["moved_units"] == pytest.approx(1.5) and not moving["decisive"]
    assert "have not settled" in moving["warning"] and "--max-search-steps" in moving["warning"]
    assert tracker.should_stop(budget_history(15, 0.01)) and not tracker.should_stop(budget_history(15, 0.05))
    assert not tracker.should_stop(budget_history(9, 0.0))  # less than a window: nothing to judge by


@pytest.mark.slow
def test_stopped_search_and_a_cut_one_resume_to_the_same_ranks(bert_dir, tmp_path, monkeypatch):
    stops = {"at": 5}
    monkeypatch.setattr(SearchTracker, "should_stop", lambda self, history: len(history) >= stops["at"])
    opts = {"stop_when_stable": True, "max_search_steps": 12, **cola()}
    full = run(bert_dir, tmp_path / "full", **opts)
    history = json.loads((tmp_path / "full/alpha_history.json").read_text())["history"]
    # judged at logging steps only (here the checkpoint steps, every 2): settled at 5, stopped at 6
    assert len(history) == 6 and full["selection"]["search_steps"] == 6  # stopped, not 12 steps

    def dying(n, step):
        if n == 5:
            raise KeyboardInterrupt  # killed after the checkpoint of step 4
        return step()

    restore = on_search_step(monkeypatch, dying)
    with pytest.raises(KeyboardInterrupt):
        run(bert_dir, tmp_path / "cut", **opts)
    restore()
    resumed = run(bert_dir, tmp_path / "cut", resume=True, **opts)
    assert resumed["ranks"] == full["ranks"]
    alpha = [json.loads((tmp_path / d / "ranks.json").read_text())["alpha"] for d in ("full", "cut")]
    assert alpha[0] == alpha[1]
    again = run(bert_dir, tmp_path / "cut", resume=True, **opts)  # a stopped search stays stopped
    assert again["ranks"] == full["ranks"] and again["selection"]["search_steps"] == 6
