"""Batches: `Collator` pads each batch to its longest sequence; `TaskData` is what load_task returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import torch

from autolora.options import IGNORE_INDEX


@dataclass
class Collator:
    """Pads a list of examples to the longest sequence of the batch (never to max_length).

    Input ids are padded with `pad_token_id`, masks and token types with 0, per-token labels with -100.
    Per-example labels become a long tensor (classes) or a float32 tensor (regression).
    """

    pad_token_id: int
    per_token_labels: bool

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("rows: empty batch")
        seqs = [torch.as_tensor(r["input_ids"], dtype=torch.long) for r in rows]
        width = max(len(s) for s in seqs)
        batch = {"input_ids": _pad(seqs, width, self.pad_token_id)}
        for key in ("attention_mask", "token_type_ids"):
            if key in rows[0]:
                batch[key] = _pad([torch.as_tensor(r[key], dtype=torch.long) for r in rows], width, 0)
        if "labels" in rows[0]:
            if self.per_token_labels:
                labels = [torch.as_tensor(r["labels"], dtype=torch.long) for r in rows]
                batch["labels"] = _pad(labels, width, IGNORE_INDEX)
            else:
                labels = torch.as_tensor([r["labels"] for r in rows])
                batch["labels"] = labels.float() if labels.is_floating_point() else labels.long()
        return batch


def _pad(seqs: list[torch.Tensor], width: int, value: int) -> torch.Tensor:
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


@dataclass
class TaskData:
    """Tokenized train/eval sets plus what training and evaluation need to know about the task.

    eval_raw (causal-lm with a prompt column): one dict per distinct eval prompt, in order:
    {"prompt": str, "prompt_ids": list[int], "references": list[str]}, for generation metrics.
    tokenizer: the tokenizer the data was encoded with (decoding generated text needs it).
    """

    task: str
    train: datasets.Dataset
    eval: datasets.Dataset
    num_labels: int
    label_names: list[str] | None
    metric: str
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]
    eval_raw: list[dict] | None = None
    tokenizer: Any = field(default=None, repr=False)

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "perplexity"
