"""Evaluation: run a model over TaskData.eval (no grad, eval mode) and score it with compute_metrics."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import torch
from torch import nn
from tqdm.auto import tqdm

from autolora.data import IGNORE_INDEX, TaskData
from autolora.decoding import DecodingConfig
from autolora.eval.generation import generate_texts, write_generations
from autolora.eval.metrics import compute_metrics


def evaluate(
    model: nn.Module,
    task_data: TaskData,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    progress: bool = False,
    max_generate: int = 0,
    decoding: DecodingConfig | None = None,
    generations_path: str | Path | None = None,
) -> dict[str, float]:
    """Score `model` on task_data.eval; the model's train/eval modes are restored afterwards.

    classification: argmax of the logits; regression: the single logit; token-classification: argmax
    per token, scored where labels != -100; causal-lm: token-weighted mean loss -> loss, perplexity.
    causal-lm with max_generate != 0: texts generated for the first max_generate eval inputs (-1: all)
    as `decoding` says (default DecodingConfig()), scored against all references of each input by
    autolora.eval.nlg_metrics (bleu, nist, meteor, rouge_l, cider, ter) and, with generations_path,
    written there as JSON lines. device: where the batches go (default: that of the first parameter).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    if max_generate < -1:
        raise ValueError(f"max_generate: must be >= -1 (-1: all inputs), got {max_generate}")
    device = torch.device(device) if device is not None else _model_device(model)
    modes = [(m, m.training) for m in model.modules()]  # per module: some may be frozen in eval mode
    model.eval()
    try:
        with torch.no_grad():
            if task_data.task == "causal-lm":
                metrics = _evaluate_lm(model, task_data, batch_size, device, progress)
                if max_generate != 0:
                    args = (max_generate, decoding or DecodingConfig(), generations_path)
                    metrics.update(_generate_and_score(model, task_data, batch_size, device, *args))
                return metrics
            if task_data.task == "token-classification":
                preds, refs = _predict_tokens(model, task_data, batch_size, device, progress)
            else:
                logits, labels = predict_logits(
                    model, task_data.eval, task_data.collate, batch_size, device, progress
                )
                preds = logits[:, 0] if task_data.task == "regression" else logits.argmax(-1)
                preds, refs = preds.numpy(), labels.numpy()
            return compute_metrics(task_data.task, preds, refs, task_data.label_names)
    finally:
        for m, training in modes:
            m.training = training


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def batches(
    dataset: datasets.Dataset,
    collate: Callable[[list[dict]], dict[str, torch.Tensor]],
    batch_size: int,
    device: torch.device,
    progress: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Collated batches in order, on `device` (slices of the dataset: one Arrow read per batch)."""
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc="eval", disable=not progress, leave=False):
        cols = dataset[start : start + batch_size]
        rows = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
        yield {k: v.to(device) for k, v in collate(rows).items()}


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits, in float32. Labels are not passed: the loss is computed here where it is needed."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits.float()


def predict_logits(
    model: nn.Module,
    dataset: datasets.Dataset,
    collate: Callable[[list[dict]], dict[str, torch.Tensor]],
    batch_size: int = 32,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence-level logits (N, C) and labels (N,), on the CPU, for classification/regression.

    Runs as the model is (call model.eval() and torch.no_grad() around it, as evaluate() does).
    """
    device = torch.device(device) if device is not None else _model_device(model)
    logits, labels = [], []
    for batch in batches(dataset, collate, batch_size, device, progress):
        out = _forward(model, batch)
        if out.ndim != 2:
            raise ValueError(
                f"model: expected sequence-level logits (batch, classes), got {tuple(out.shape)}"
            )
        logits.append(out.cpu())
        labels.append(batch["labels"].cpu())
    if not logits:
        raise ValueError("dataset: empty; nothing to evaluate")
    return torch.cat(logits), torch.cat(labels)


def _predict_tokens(model, task_data, batch_size, device, progress) -> tuple[list, list]:
    """Per-sentence predicted ids and labels, cut to each sentence's length (padding dropped)."""
    preds, refs = [], []
    for batch in batches(task_data.eval, task_data.collate, batch_size, device, progress):
        argmax = _forward(model, batch).argmax(-1).cpu()
        labels, lengths = batch["labels"].cpu(), batch["attention_mask"].sum(1).tolist()
        for i, n in enumerate(lengths):
            preds.append(argmax[i, :n].numpy())
            refs.append(labels[i, :n].numpy())
    return preds, refs


def _evaluate_lm(model, task_data, batch_size, device, progress) -> dict[str, float]:
    total, count = 0.0, 0
    for batch in batches(task_data.eval, task_data.collate, batch_size, device, progress):
        logits = _forward(model, batch)
        # Token t predicts token t+1: shift, then sum over the labelled (not -100) positions.
        target = batch["labels"][:, 1:]
        loss = nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            target.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total += float(loss)
        count += int((target != IGNORE_INDEX).sum())
    if count == 0:
        raise ValueError("task_data.eval: no labelled target token to compute a loss on")
    return compute_metrics("causal-lm", total / count, None)


def nlg_missing() -> list[str]:
    """The packages of the `nlg` extra that cannot be imported (the metrics need them all)."""
    from importlib.util import find_spec

    return [name for name in ("sacrebleu", "pycocoevalcap", "nltk") if find_spec(name) is None]


def _generate_and_score(
    model, task_data, batch_size, device, max_generate, decoding, path
) -> dict[str, float]:
    """Generate for the first eval inputs, write them to `path`, score them (nlg_metrics)."""
    if not task_data.eval_raw or task_data.tokenizer is None:
        raise ValueError(
            "max_generate: needs task_data.eval_raw prompts and task_data.tokenizer "
            "(causal-lm data with source and target columns)"
        )
    tok = task_data.tokenizer
    pad = getattr(task_data.collate, "pad_token_id", None)
    if pad is None:
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    items = task_data.eval_raw if max_generate == -1 else task_data.eval_raw[:max_generate]
    hyps = generate_texts(model, tok, [it["prompt_ids"] for it in items], decoding, batch_size, device, pad)
    if path is not None:
        write_generations(path, items, hyps)
    missing = nlg_missing()
    if missing:
        warnings.warn(
            f"evaluate: {missing} not installed (pip install 'autolora[nlg]'): generated, not scored",
            stacklevel=4,
        )
        return {}
    from autolora.eval.nlg_metrics import nlg_scores

    return nlg_scores(hyps, [it["references"] for it in items])
