"""The bilevel search step: finite-difference hypergradient against the exact one, dropout masks,
the exact restore of W, and the first-order (eta = 0) mode."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import randomize_adapters, tiny_model

import autolora
from autolora.search import BilevelSearch, RngReplay, SearchStepConfig, beta_moves


def tiny_classifier(dropout: float = 0.0, dtype=torch.float64):
    model = tiny_model(
        "bert",
        num_labels=3,
        vocab_size=50,
        hidden=16,
        heads=2,
        positions=32,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",  # exact mode needs double backward; CPU SDPA has none
    ).to(dtype)
    autolora.inject(model, rank=4, dropout=dropout, trainable=["classifier"])
    # U = 0 would make every beta gradient vanish (docs/METHOD.md section 4)
    randomize_adapters(model, scale=0.3)
    return model.train()


def batch(seed: int, n: int = 6, length: int = 7) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1, 50, (n, length), generator=g),
        "attention_mask": torch.ones(n, length, dtype=torch.long),
        "labels": torch.randint(0, 3, (n,), generator=g),
    }


def searcher(
    model, mode: str, xi: float = 0.5, lookahead: str = "sgd", fd_scheme: str = "central", fd_r: float = 0.01
) -> BilevelSearch:
    inner, outer = autolora.inner_parameters(model), autolora.selection_parameters(model)
    return BilevelSearch(
        model,
        inner,
        outer,
        torch.optim.AdamW(inner, lr=1e-2),
        torch.optim.Adam(outer, lr=1e-2),
        SearchStepConfig(hypergradient=mode, xi=xi, lookahead=lookahead, fd_scheme=fd_scheme, fd_r=fd_r),
    )


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def hyper(model, mode: str, seed: int = 0, **kw) -> torch.Tensor:
    torch.manual_seed(seed)  # the same dropout masks for every mode compared
    return flat(searcher(model, mode, **kw).hypergradient(batch(1), batch(2))[2])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.slow
def test_finite_difference_matches_exact_hypergradient():
    model = tiny_classifier()
    exact, fd, first = hyper(model, "exact"), hyper(model, "second-order"), hyper(model, "first-order")
    # The central difference of grad_beta L_tr along v with eps * ||v|| = r = 0.01 is exact up to
    # O(r^2) = 1e-4 relative (third derivatives of a smooth network are O(1)); float64 adds nothing.
    assert rel(fd, exact) < 1e-3
    # ...and the check can fail: the second-order term moves the hypergradient by far more than that.
    assert rel(first, exact) > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_forward_difference_is_first_order_accurate_in_r(dropout):
    """The default scheme reuses step 1's grad_beta L_tr(W): its error in the implicit term is
    (r / 2) * (third derivative along v), so O(r) = 1e-2 relative at r = 0.01 with O(1) derivatives,
    and it shrinks linearly with r (xi = 0.5 makes the implicit term dominate, so this is visible)."""
    model = tiny_classifier(dropout=dropout)
    exact = hyper(model, "exact")
    errors = [rel(hyper(model, "second-order", fd_scheme="forward", fd_r=r), exact) for r in (1e-2, 1e-3)]
    assert errors[0] < 3e-2
    assert 5 < errors[0] / errors[1] < 20  # linear in r: a forward, not a central, difference
    central = rel(hyper(model, "second-order", fd_scheme="central", fd_r=1e-2), exact)
    assert central < errors[0] / 10  # ...and the central scheme is the more accurate one


@pytest.mark.slow
def test_dropout_masks_are_replayed_in_the_finite_difference_passes(monkeypatch):
    model = tiny_classifier(dropout=0.3)
    exact, fd = hyper(model, "exact"), hyper(model, "second-order")
    assert rel(fd, exact) < 1e-3
    monkeypatch.setattr(RngReplay, "replay", lambda self: None)  # fresh masks in every pass
    assert rel(hyper(model, "second-order"), exact) > 1e-2


@pytest.mark.slow
def test_first_order_is_the_validation_gradient():
    model = tiny_classifier()
    torch.manual_seed(0)
    loss = model(**batch(2)).loss
    expected = flat(torch.autograd.grad(loss, autolora.selection_parameters(model)))
    torch.testing.assert_close(hyper(model, "first-order"), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(hyper(model, "second-order", xi=0.0), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("lookahead", ["sgd", "adam"])
def test_step_restores_w_and_applies_the_real_update(lookahead):
    model = tiny_classifier(dtype=torch.float32)
    s = searcher(model, "second-order", xi=1e-2, lookahead=lookahead)
    s.step(batch(3), batch(4))  # give AdamW moments for the adam lookahead
    before = [p.detach().clone() for p in s.inner]
    betas_before = [p.detach().clone() for p in s.outer]
    torch.manual_seed(5)
    loss = model(**batch(1)).loss
    g = torch.autograd.grad(loss, s.inner)
    ref_params = [p.detach().clone().requires_grad_(True) for p in s.inner]
    ref_opt = torch.optim.AdamW(ref_params, lr=1e-2)
    ref_opt.load_state_dict(copy.deepcopy(s.inner_opt.state_dict()))  # moments are shared otherwise
    for p, gi in zip(ref_params, g, strict=True):
        p.grad = gi.clone()
    ref_opt.step()
    torch.manual_seed(5)
    s.step(batch(1), batch(2))
    for p, ref, old in zip(s.inner, ref_params, before, strict=True):
        assert not torch.equal(p, old)
        torch.testing.assert_close(p.detach(), ref.detach(), rtol=0, atol=0)  # restore is exact
    assert any(not torch.equal(p, b) for p, b in zip(s.outer, betas_before, strict=True))


def test_none_trains_w_alone_and_leaves_beta():
    model = tiny_classifier(dtype=torch.float32)
    s = searcher(model, "none")
    betas = [p.detach().clone() for p in s.outer]
    ref_params = [p.detach().clone().requires_grad_(True) for p in s.inner]
    ref_opt = torch.optim.AdamW(ref_params, lr=1e-2)
    torch.manual_seed(5)
    g = torch.autograd.grad(model(**batch(1)).loss, s.inner)
    for p, gi in zip(ref_params, g, strict=True):
        p.grad = gi.clone()
    ref_opt.step()
    torch.manual_seed(5)
    losses = s.step(batch(1), batch(2))
    assert set(losses) == {"loss_tr"}  # no D_val pass
    for p, ref in zip(s.inner, ref_params, strict=True):
        torch.testing.assert_close(p.detach(), ref.detach(), rtol=0, atol=0)
    for p, b in zip(s.outer, betas, strict=True):
        assert torch.equal(p, b)
    with pytest.raises(ValueError, match="hypergradient: 'none' computes no hypergradient"):
        s.hypergradient(batch(1), batch(2))


@pytest.mark.parametrize(
    "hypergradient, warmup, every, moving",
    [
        ("second-order", 0, 1, [0, 1, 2, 3, 4, 5, 6]),
        ("second-order", 0, 4, [0, 4]),
        ("first-order", 2, 3, [2, 5]),
        ("none", 0, 1, []),
    ],
)
def test_beta_moves_from_the_warm_up_s_end_every_m_steps(hypergradient, warmup, every, moving):
    assert [d for d in range(7) if beta_moves(d, hypergradient, warmup, every)] == moving


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="hypergradient"):
        SearchStepConfig(hypergradient="third-order")
    with pytest.raises(ValueError, match="lookahead"):
        SearchStepConfig(lookahead="newton")
    with pytest.raises(ValueError, match="fd_scheme"):
        SearchStepConfig(fd_scheme="backward")
    with pytest.raises(ValueError, match="outer"):
        model = torch.nn.Sequential(torch.nn.Linear(2, 2))
        BilevelSearch(model, list(model.parameters()), [], None, None, SearchStepConfig())


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_keep_selected_turns_the_searched_model_into_the_fixed_one_in_place(family):
    """Warm retraining: the searched model becomes, in place, what inject(mode="fixed", ranks) builds,
    and each adapter's update is exactly that of its kept components; the head keeps its value."""
    from autolora.tuner.selection import keep_selected_, select_ranks

    head = "classifier" if family == "bert" else "lm_head"
    searched = tiny_model(family)
    autolora.inject(searched, trainable=[head])
    randomize_adapters(searched)
    ranks = select_ranks(searched)
    assert len(set(ranks.values())) > 1  # the check below means something only with mixed ranks
    expected = {
        n: (a.U[:, a.selected()] * a.alpha()[a.selected()] * a.scaling) @ a.V[a.selected()]
        for n, a in autolora.adapters(searched)
    }
    head_before = getattr(searched, head).weight.detach().clone()
    with pytest.raises(ValueError, match="ranks"):
        keep_selected_(searched, {**ranks, next(iter(ranks)): ranks[next(iter(ranks))] + 1})
    fixed = keep_selected_(searched, ranks)
    assert fixed is searched and autolora.selection_parameters(fixed) == []
    reference = tiny_model(family)
    autolora.inject(reference, mode="fixed", ranks=ranks, trainable=[head])
    shapes = {n: tuple(v.shape) for n, v in fixed.state_dict().items()}
    assert shapes == {n: tuple(v.shape) for n, v in reference.state_dict().items()}
    trained = [n for n, p in fixed.named_parameters() if p.requires_grad]
    assert trained == [n for n, p in reference.named_parameters() if p.requires_grad]
    assert torch.equal(getattr(fixed, head).weight, head_before)
    for name, a in autolora.adapters(fixed):
        assert a.mode == "fixed" and a.rank == ranks[name] and a.beta is None
        torch.testing.assert_close(a.delta_weight(), expected[name], rtol=1e-5, atol=1e-6, msg=name)
