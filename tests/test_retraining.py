"""From a finished search to the model retraining starts from (autolora.tuner.retraining): fresh
starts new adapters of the selected ranks and puts the head back; warm keeps what the search kept."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_model

import autolora
from autolora.tuner.retraining import SearchResult, pre_search_state, start_retraining_


def _searched():
    torch.manual_seed(0)
    model = tiny_model("bert", hidden=16, heads=2)
    autolora.inject(model, rank=4, trainable=["classifier"])
    initial = pre_search_state(model)
    with torch.no_grad():  # as if searched: every trainable parameter moved
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    ranks = {n: 1 + i % 4 for i, (n, _) in enumerate(autolora.adapters(model))}
    return model, initial, SearchResult(ranks=ranks, rule="effective-rank", steps=3)


def test_fresh_starts_new_adapters_and_puts_the_head_back():
    model, initial, result = _searched()
    assert set(initial) == {"classifier.weight", "classifier.bias"}
    start_retraining_(model, result, "fresh", initial, seed=5)
    assert autolora.current_ranks(model) == result.ranks and not autolora.selection_parameters(model)
    for name, a in autolora.adapters(model):
        assert a.U.shape[1] == a.V.shape[0] == result.ranks[name] and not a.U.any(), name
        bound = 1 / a.in_features**0.5  # kaiming-uniform(a=sqrt(5)): LoRA's start for V
        assert a.V.abs().max() <= bound and a.V.std() > bound / 4, name
    params = dict(model.named_parameters())
    for name, value in initial.items():
        assert torch.equal(params[name], value), name
    again, initial2, result2 = _searched()
    start_retraining_(again, result2, "fresh", initial2, seed=5)
    for (n, a), (_, b) in zip(autolora.adapters(model), autolora.adapters(again), strict=True):
        assert torch.equal(a.V, b.V), n  # seeded: every process draws the same start


def test_warm_keeps_the_searched_update_and_head():
    model, initial, result = _searched()
    head = model.classifier.weight.detach().clone()
    start_retraining_(model, result, "warm", initial, seed=5)
    assert autolora.current_ranks(model) == result.ranks
    assert torch.equal(model.classifier.weight, head)
    assert all(a.U.any() for _, a in autolora.adapters(model))


def test_an_unknown_init_is_named():
    model, initial, result = _searched()
    with pytest.raises(ValueError, match="retrain_init: expected fresh or warm, got 'cold'"):
        start_retraining_(model, result, "cold", initial, seed=5)
