"""Rank selection (SPEC.md section 3): keep the components with alpha >= 1/k, then build fixed layers."""

from __future__ import annotations

from torch import nn

from autolora.tuner.params import adapters


def select_ranks(model: nn.Module) -> dict[str, int]:
    """r_l = #{j : softmax(beta_l)[j] >= 1/k_l} for every search-mode adapter (always >= 1)."""
    ranks = {name: a.selected_rank() for name, a in adapters(model) if a.beta is not None}
    if not ranks:
        raise ValueError("model: has no search-mode adapters to select ranks from")
    return ranks


def keep_selected_(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Turn the searched model, in place, into the retraining model of a warm start: every search-mode
    adapter keeps its selected components (AutoLoraAdapter.keep_selected_), every other trainable
    parameter (the task head) keeps its searched value. No second model is built: nothing is loaded
    again, and the memory of one model suffices. `ranks` (from select_ranks) must match the selection.
    """
    found = {name: a for name, a in adapters(model) if a.beta is not None}
    if set(found) != set(ranks):
        raise ValueError(f"ranks: {sorted(ranks)} do not name the search-mode adapters {sorted(found)}")
    for name, a in found.items():
        if a.selected_rank() != ranks[name]:
            raise ValueError(f"ranks: {name} has {a.selected_rank()} components selected, not {ranks[name]}")
    for a in found.values():
        a.keep_selected_()
    return model
