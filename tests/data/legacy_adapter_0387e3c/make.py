# ruff: noqa: E501
"""Writes tests/data/legacy_adapter_0387e3c: an adapter saved by the code of commit 0387e3c (before the
package layout change), with the inputs and logits it gave, for the format-compatibility test."""

import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

import autolora

out = Path(sys.argv[1])
torch.manual_seed(0)
cfg = BertConfig(
    vocab_size=64,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=32,
    num_labels=2,
)
model = BertForSequenceClassification(cfg).eval()
autolora.inject(
    model,
    ["query", "value"],
    rank=4,
    mode="fixed",
    ranks={
        "bert.encoder.layer.0.attention.self.query": 2,
        "bert.encoder.layer.0.attention.self.value": 4,
        "bert.encoder.layer.1.attention.self.query": 1,
        "bert.encoder.layer.1.attention.self.value": 3,
    },
    trainable=["classifier"],
)
with torch.no_grad():
    for p in model.parameters():
        if p.requires_grad:
            p.add_(torch.randn_like(p) * 0.1)
autolora.save_adapter(model, out / "adapter", ["classifier"])
x = torch.randint(0, 64, (2, 7))
torch.save({"input_ids": x, "logits": model(input_ids=x).logits.detach(), "seed": 0}, out / "expected.pt")
print("ok")
