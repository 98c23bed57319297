"""Text generation for causal-lm evaluation: batched, left-padded, decoded as a DecodingConfig says.

Left padding puts every prompt's last token in the last column, so that generation continues all of
them at once; transformers derives the position ids from the attention mask, so a padded prompt is
continued exactly as it would be alone (tests/test_evaluate.py checks this).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from autolora.decoding import DecodingConfig
from autolora.io.atomic import atomic_write_text


def generate_texts(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    decoding: DecodingConfig,
    batch_size: int,
    device: torch.device,
    pad_id: int,
) -> list[str]:
    """One decoded continuation per prompt (token ids), special tokens dropped, stripped.

    Runs as the model is (evaluate() calls it in eval mode under torch.no_grad()). Generation stops
    at the tokenizer's eos (or sep) token, or after decoding.max_new_tokens, or where the model's
    position table ends.
    """
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    kwargs = decoding.generate_kwargs()
    texts = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
        kwargs["max_new_tokens"] = min(decoding.max_new_tokens, position_room(model, width))
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        out = model.generate(**inputs, pad_token_id=pad_id, eos_token_id=eos, **kwargs)
        texts += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out.cpu()]
    return texts


def position_room(model: nn.Module, prompt_width: int) -> int:
    """Tokens that still fit the model's position table after the prompt (at least 1)."""
    cfg = getattr(model, "config", None)
    limit = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or math.inf
    return max(1, int(min(limit - prompt_width, 1 << 30)))


def write_generations(path: str | Path, items: Sequence[dict], generations: Sequence[str]) -> Path:
    """generations.jsonl, atomically: one line per input, {"source", "generation", "references"}."""
    if len(items) != len(generations):
        raise ValueError(f"generations: {len(generations)} texts for {len(items)} inputs")
    lines = [
        json.dumps(
            {"source": it["prompt"], "generation": g, "references": it["references"]}, ensure_ascii=False
        )
        for it, g in zip(items, generations, strict=True)
    ]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
