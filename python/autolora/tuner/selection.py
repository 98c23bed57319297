"""Rank selection: keep the components a rank rule selects (alpha >= 1/k by default), then fix them."""

from __future__ import annotations

import torch
from torch import nn

from autolora.options import SPECTRAL_RULES, one_of
from autolora.tuner.allocation import RankPolicy
from autolora.tuner.params import adapters
from autolora.tuner.rank_rules import (
    effective_rank,
    rank_from_weights,
    rule_weights,
    spectral_factors,
    update_norm,
)


def select_ranks(model: nn.Module, rule: str = "alpha") -> dict[str, int]:
    """Every search-mode adapter's rank (always >= 1) by a rank rule read from the model's state:
    "alpha", r = #{j : softmax(beta)[j] >= 1/k}, or "spectrum" / "effective-rank"
    (autolora.tuner.rank_rules). "alpha-avg" needs the search's history: the pipeline's SearchTracker
    reads it."""
    found = [(name, a) for name, a in adapters(model) if a.beta is not None]
    if not found:
        raise ValueError("model: has no search-mode adapters to select ranks from")
    if rule == "alpha":
        return {name: a.selected_rank() for name, a in found}
    if rule not in SPECTRAL_RULES:
        raise ValueError(
            f"rule: select_ranks reads alpha or {one_of(SPECTRAL_RULES)} from a model, got {rule!r}"
        )
    return {
        name: rank_from_weights(rule, rule_weights(rule, a.U, a.V, a.alpha(), a.scaling)[None], 1.0 / a.rank)
        for name, a in found
    }


def policy_ranks(
    model: nn.Module, policy: RankPolicy
) -> tuple[dict[str, int], dict[str, float], dict[str, int]]:
    """What a policy reads from a searched model's state now.

    Args:
        model: a model with search-mode adapters.
        policy: the rule, total and share (autolora.tuner.allocation); rule "alpha-avg" needs the
            search's history (the pipeline's SearchTracker reads it), not a model.

    Returns:
        (rule_ranks, sizes, applied): the rule's own ranks, each adapter's size and the ranks
        retraining gets, each keyed by adapter name.
    """
    rule_ranks = select_ranks(model, policy.rule)
    found = [(n, a) for n, a in adapters(model) if a.beta is not None]
    norms = update_norms(model) if policy.share == "norm" else {}
    sizes = {}
    for n, a in found:
        eff = None
        if policy.rule == "effective-rank":
            eff = float(effective_rank(rule_weights(policy.rule, a.U, a.V, a.alpha(), a.scaling)))
        sizes[n] = policy.size(rule_ranks[n], eff, norms.get(n))
    return rule_ranks, sizes, policy.apply(rule_ranks, sizes)


def update_norms(model: nn.Module) -> dict[str, float]:
    """Every search-mode adapter's update size |s U diag(alpha) V|_F (rank_rules.update_norm)."""
    return {n: update_norm(a.U, a.V, a.alpha(), a.scaling) for n, a in adapters(model) if a.beta is not None}


def keep_selected_(
    model: nn.Module,
    ranks: dict[str, int],
    *,
    rule: str = "alpha",
    weights: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Turn the searched model, in place, into the retraining model of a warm start: every search-mode
    adapter becomes a fixed adapter of rank ranks[name], every other trainable parameter (the task
    head) keeps its searched value. No second model is built.

    rule "alpha" / "alpha-avg": keep the ranks[name] components of largest weight (weights[name]: the
    rule's weights, default alpha; with "alpha", ranks from select_ranks keep exactly the selected
    components). rules "spectrum" and "effective-rank": keep the update's top ranks[name] singular
    directions (the best rank-r approximation of Delta, autolora.tuner.rank_rules.spectral_factors).
    """
    found = {name: a for name, a in adapters(model) if a.beta is not None}
    if set(found) != set(ranks):
        raise ValueError(f"ranks: {sorted(ranks)} do not name the search-mode adapters {sorted(found)}")
    for name, a in found.items():
        if not 1 <= ranks[name] <= a.rank:
            raise ValueError(f"ranks: {name} must lie in 1..{a.rank}, got {ranks[name]}")
        if rule == "alpha" and weights is None and a.selected_rank() != ranks[name]:
            raise ValueError(f"ranks: {name} has {a.selected_rank()} components selected, not {ranks[name]}")
    for name, a in found.items():
        r = ranks[name]
        if rule in SPECTRAL_RULES:
            a.fix_(*spectral_factors(a.U, a.V, a.alpha(), a.scaling, r))
            continue
        w = a.alpha() if weights is None else weights[name].to(a.alpha().device)
        keep = torch.zeros(a.rank, dtype=torch.bool, device=w.device)
        keep[torch.argsort(w, descending=True, stable=True)[:r]] = True
        a.keep_selected_(keep)
    return model
