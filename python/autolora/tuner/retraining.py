"""From a finished search to the model retraining starts from, in place: one function for the CLI and
AutoLoraTrainer alike.

The search's result names the ranks (the rule's, carried to the budget's total and shared by the
search: autolora.tuner.allocation). Warm: every searched adapter keeps its selected components
(keep_selected_), the head keeps its searched value. Fresh (the paper's): the same fixed-rank layout,
with new adapters (U = 0, V kaiming-uniform, as LoRA starts) and every other trainable parameter put
back to its value before the search: the model a new load of the pretrained weights would give,
without loading it again (the frozen base never changed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from autolora.options import RETRAIN_INITS, one_of
from autolora.train.state import load_trainable_state
from autolora.tuner.params import adapters
from autolora.tuner.selection import keep_selected_


@dataclass
class SearchResult:
    """What a finished search hands to retraining, and what ranks.json reports.

    Attributes:
        ranks: adapter name -> the rank retraining gets.
        rule: the rank rule that read them.
        steps: the search steps taken.
        rule_ranks: the rule's own ranks, when a budget or total carried them to another total.
        rank_total: that total (None: the rule's own ranks).
        update_norms: each searched update's Frobenius norm (rank_share "norm").
        keep_weights: what a warm start ranks each adapter's components by (None: the live alpha).
        alpha: each adapter's alpha at the end of the search.
        diagnostics: whether the selection settled (autolora.search.diagnostics).
        history: the search's per-step records (autolora.search.tracker).
    """

    ranks: dict[str, int]
    rule: str
    steps: int
    rule_ranks: dict[str, int] | None = None
    rank_total: int | None = None
    update_norms: dict[str, float] | None = None
    keep_weights: dict[str, torch.Tensor] | None = None
    alpha: dict[str, list[float]] = field(default_factory=dict)
    diagnostics: dict | None = None
    history: list[dict] = field(default_factory=list)


def pre_search_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters outside the adapters (the task head, --trainable modules), copied:
    what a fresh retraining starts from."""
    inside = {id(p) for _, a in adapters(model) for p in a.parameters()}
    return {
        n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad and id(p) not in inside
    }


@torch.no_grad()
def start_retraining_(
    model: nn.Module,
    result: SearchResult,
    init: str,
    initial: dict[str, torch.Tensor],
    seed: int,
) -> nn.Module:
    """Turn the searched model, in place, into the model retraining starts from.

    Args:
        model: the model with search-mode adapters at the end of the search.
        result: the search's ranks and how to keep components.
        init: "warm" (the kept components) or "fresh" (new adapters, the head as before the search).
        initial: `pre_search_state(model)` taken before the search (read by "fresh").
        seed: seeds the fresh adapters' initialisation (every rank draws the same).

    Returns:
        The model, its adapters fixed at result.ranks.

    Raises:
        ValueError: an unknown init, or ranks that do not name the model's searched adapters.
    """
    if init not in RETRAIN_INITS:
        raise ValueError(f"retrain_init: expected {one_of(RETRAIN_INITS)}, got {init!r}")
    keep_selected_(model, result.ranks, rule=result.rule, weights=result.keep_weights)
    if init == "fresh":
        generator = torch.Generator().manual_seed(seed)
        for name, a in adapters(model):
            if name in result.ranks:  # LoRA's start, as the adapter's own __init__ draws it
                V = torch.empty(a.V.shape, dtype=torch.float32)
                nn.init.kaiming_uniform_(V, a=math.sqrt(5), generator=generator)
                a.U.zero_()
                a.V.copy_(V)
        load_trainable_state(model, initial)
    return model
