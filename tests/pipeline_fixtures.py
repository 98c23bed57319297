"""Tiny models saved as Hugging Face folders (with the MiniLM tokenizer), small task files, and a
pipeline run of a few steps on them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from helpers import minilm_tokenizer, tiny_model

from autolora.config import load_config
from autolora.pipeline import run_pipeline
from autolora.search import BilevelSearch

VOCAB = 30522  # the MiniLM (BERT uncased) tokenizer's vocabulary


def save_tiny_bert(path: Path, dropout: float = 0.1) -> Path:
    torch.manual_seed(0)
    model = tiny_model(
        "bert",
        head="base",
        vocab_size=VOCAB,
        hidden=16,
        heads=2,
        positions=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    model.save_pretrained(path)
    minilm_tokenizer().save_pretrained(path)
    return path


def save_tiny_gpt2(path: Path) -> Path:
    torch.manual_seed(0)
    tok = minilm_tokenizer()
    model = tiny_model(
        "gpt2",
        vocab_size=VOCAB,
        hidden=16,
        heads=2,
        positions=128,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_regression(path: Path, n: int) -> Path:
    g = torch.Generator().manual_seed(1)
    words = ["good", "bad", "fine", "movie", "plot", "great", "awful", "story"]
    lines = ["sentence\tscore"]
    for _ in range(n):
        idx = torch.randint(0, len(words), (5,), generator=g).tolist()
        sent = " ".join(words[i] for i in idx)
        lines.append(f"{sent}\t{sum(w in ('good', 'great', 'fine') for w in sent.split()) / 5:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ner(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        tokens = ["john", "lives", "in", "paris"] if i % 2 else ["mary", "visited", "berlin", "today"]
        tags = ["B-PER", "O", "O", "B-LOC"] if i % 2 else ["B-PER", "O", "B-LOC", "O"]
        rows.append(json.dumps({"tokens": tokens, "tags": tags}))
    path.write_text("\n".join(rows) + "\n")
    return path


def write_data_to_text(path: Path, n: int) -> Path:
    rows = [
        json.dumps(
            {
                "source": f"name : item {i % 5} | price : {i % 3}",
                "target": f"item {i % 5} costs {i % 3} pounds .",
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


# A pipeline run small enough for a test: a few steps of everything, checkpoints every 2 steps.
FAST = {
    "max_search_steps": 6,
    "max_retrain_steps": 4,
    "search_epochs": 50.0,
    "retrain_epochs": 50.0,
    "batch_size": 8,
    "eval_batch_size": 16,
    "checkpoint_every": 2,
    "progress": False,
    "lr_w": 1e-2,
    "lr_beta": 5e-2,
}


def run(model_dir, out, **overrides):
    cfg = load_config(None, {"model": str(model_dir), "output_dir": str(out), **FAST, **overrides})
    return run_pipeline(cfg)


def cola(**extra):
    return {"data.format": "cola", "data.max_train_samples": 48, "data.max_eval_samples": 24, **extra}


def on_search_step(monkeypatch, hook):
    """Route every step of the search, whether beta moves (BilevelSearch.step) or not (inner_step),
    through hook(n, real) with n the count so far (1 on the first step) and real() the step itself.
    Returns a function that puts the real methods back. (hypergradient "none" is not for this: its
    step calls inner_step.)"""
    calls = {"n": 0}
    real = {name: getattr(BilevelSearch, name) for name in ("step", "inner_step")}

    def routed(name):
        def method(self, *batches):
            calls["n"] += 1
            return hook(calls["n"], lambda: real[name](self, *batches))

        return method

    for name in real:
        monkeypatch.setattr(BilevelSearch, name, routed(name))
    return lambda: [monkeypatch.setattr(BilevelSearch, name, method) for name, method in real.items()]


def on_retrain_step(monkeypatch, hook):
    """Route every retraining step of AutoLoraTrainer through hook(n, trainer, real) with n the step's
    number in its run (1 on the first) and real() the step itself."""
    from autolora.integrations.trainer import AutoLoraTrainer

    real = AutoLoraTrainer.training_step

    def step(self, *args, **kwargs):
        if self.phase != "retrain":
            return real(self, *args, **kwargs)
        return hook(self.state.global_step + 1, self, lambda: real(self, *args, **kwargs))

    monkeypatch.setattr(AutoLoraTrainer, "training_step", step)
    return lambda: monkeypatch.setattr(AutoLoraTrainer, "training_step", real)
