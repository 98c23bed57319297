"""Large-batch features: bf16 autocast over fp32 masters, activation checkpointing, accumulation."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize_adapters, tiny_model
from test_search import batch, searcher, tiny_classifier
from torch import nn

import autolora
from autolora import FusedAutoLoraLinear
from autolora.train.activation_checkpointing import enable_activation_checkpointing


def test_autocast_bf16_keeps_fp32_masters_and_matches_fp32():
    layer = FusedAutoLoraLinear(nn.Linear(64, 48), rank=8)
    randomize_adapters(layer)
    x = torch.randn(32, 64)
    ref = layer(x)
    with torch.autocast("cpu", torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16 and layer.U.dtype == layer.beta.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: relative error ~2^-8 per product, ~sqrt(K)/256 over K=64 terms
    torch.testing.assert_close(y.float(), ref, rtol=0.05, atol=0.05)
    y.float().sum().backward()
    assert layer.U.grad.dtype == layer.beta.grad.dtype == torch.float32
    assert layer.beta.grad.abs().sum() > 0


@pytest.mark.slow
def test_activation_checkpointing_gives_the_same_gradients():
    ids = torch.randint(1, 100, (4, 9))
    labels = torch.tensor([0, 1, 1, 0])
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = tiny_model("bert")
        autolora.inject(model, trainable=["classifier"])
        randomize_adapters(model)
        model.train()
        if checkpointing:
            enable_activation_checkpointing(model)
        loss = model(input_ids=ids, labels=labels).loss
        params = autolora.adapter_parameters(model) + autolora.selection_parameters(model)
        grads.append(torch.autograd.grad(loss, params))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_accumulated_micro_batches_equal_one_batch():
    model = tiny_classifier()
    whole = batch(1, n=8)
    halves = [{k: v[:4] for k, v in whole.items()}, {k: v[4:] for k, v in whole.items()}]
    s = searcher(model, "second-order", xi=0.5)
    torch.manual_seed(0)
    _, g1, h1, _ = s.hypergradient(whole, batch(2, n=8))
    val = batch(2, n=8)
    val_halves = [{k: v[:4] for k, v in val.items()}, {k: v[4:] for k, v in val.items()}]
    torch.manual_seed(0)
    _, g2, h2, _ = s.hypergradient(halves, val_halves)
    for a, b in zip(g1 + h1, g2 + h2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)  # float64: equal up to summation order


def test_search_step_runs_under_bf16_autocast():
    model = tiny_classifier(dtype=torch.float32)
    s = searcher(model, "second-order", xi=1e-2)
    s.autocast = torch.bfloat16
    before = [p.detach().clone() for p in s.outer]
    out = s.step(batch(1), batch(2))
    assert all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(p, b) for p, b in zip(s.outer, before, strict=True))
