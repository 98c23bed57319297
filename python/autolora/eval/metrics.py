"""Task metrics: GLUE-style classification/regression scores, entity-level F1, perplexity (the
generation metrics live in nlg_metrics.py).

`compute_metrics(task, predictions, references, label_names)` is the one entry point; the standard
scores come from scikit-learn and scipy, the entity extractor (BIO / IOB2) is written out here so that
seqeval is not needed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from autolora.options import IGNORE_INDEX


def compute_metrics(
    task: str, predictions: Any, references: Any, label_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Scores for one task.

    classification: predictions are class ids (N,) or logits (N, C); references ids (N,).
        -> accuracy, f1 (binary for 2 classes, positive class 1; macro otherwise), matthews_correlation.
    regression: predictions (N,) or (N, 1), references (N,) -> pearson, spearman, mse.
    token-classification: per-sentence sequences (ragged lists, or (N, L) ids / (N, L, C) logits) of
        tag ids, references the same with -100 where nothing is scored (special tokens, later subwords);
        or sequences of tag strings. -> precision, recall, f1 (entity level, micro) and accuracy (token).
    causal-lm: predictions is the token-weighted mean loss (a number), references is ignored.
        -> loss, perplexity = exp(loss).
    """
    if task == "classification":
        return classification_metrics(predictions, references, label_names)
    if task == "regression":
        return regression_metrics(predictions, references)
    if task == "token-classification":
        return token_metrics(predictions, references, label_names)
    if task == "causal-lm":
        return lm_metrics(float(predictions))
    raise ValueError(
        f"task: {task!r} is not one of ('classification', 'regression', 'token-classification', 'causal-lm')"
    )


def _same_length(predictions: np.ndarray, references: np.ndarray) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"predictions: {len(predictions)} items but references has {len(references)}")
    if len(references) == 0:
        raise ValueError("references: empty; nothing to score")


def classification_metrics(
    predictions: Any, references: Any, label_names: Sequence[str] | None = None
) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    preds, refs = np.asarray(predictions), np.asarray(references)
    if preds.ndim == 2:
        preds = preds.argmax(-1)
    _same_length(preds, refs)
    num_classes = len(label_names) if label_names is not None else int(max(preds.max(), refs.max())) + 1
    average = "binary" if num_classes <= 2 else "macro"
    return {
        "accuracy": float(accuracy_score(refs, preds)),
        "f1": float(f1_score(refs, preds, average=average, zero_division=0)),
        # sklearn returns 0.0 when either side is constant (the correlation is undefined there).
        "matthews_correlation": float(matthews_corrcoef(refs, preds)),
    }


def regression_metrics(predictions: Any, references: Any) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    preds, refs = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
    _same_length(preds, refs)
    if preds.size != len(preds):
        raise ValueError(f"predictions: regression expects one value per example, got shape {preds.shape}")
    preds = preds.reshape(-1)
    # A constant side makes the correlation undefined (scipy: nan and a warning); report 0.0, as
    # sklearn does for Matthews, so that "best checkpoint" comparisons stay well defined.
    constant = len(refs) < 2 or np.ptp(preds) == 0 or np.ptp(refs) == 0
    return {
        "pearson": 0.0 if constant else float(pearsonr(preds, refs)[0]),
        "spearman": 0.0 if constant else float(spearmanr(preds, refs)[0]),
        "mse": float(np.mean((preds - refs) ** 2)),
    }


def lm_metrics(mean_loss: float) -> dict[str, float]:
    """Perplexity = exp(mean token cross-entropy); inf past exp's float range (loss > ~709)."""
    if math.isnan(mean_loss):
        raise ValueError("predictions: the mean loss is nan")
    return {"loss": mean_loss, "perplexity": math.exp(mean_loss) if mean_loss < 709.0 else math.inf}


# ------------------------------------------------------------------------- token classification


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities (type, first, last) of one BIO / IOB2 tag sequence, conlleval-style.

    An entity starts at B-X, or at an I-X that does not continue an entity of type X (I- after O or
    after another type, as conlleval and seqeval's default mode read it); it runs over the I-X that
    follow. "O" is outside. Other prefixes (E-, S-, ...) are rejected rather than misread.
    """
    entities, current = [], None  # current: (type, first index)
    for i, tag in enumerate([*tags, "O"]):  # a final "O" closes an entity at the end
        prefix, kind = _split_tag(tag)
        if current is not None and (prefix != "I" or kind != current[0]):
            entities.append((current[0], current[1], i - 1))
            current = None
        if prefix == "B" or (prefix == "I" and current is None):
            current = (kind, i)
    return entities


def _split_tag(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, kind = str(tag).partition("-")
    if not sep or prefix not in ("B", "I") or not kind:
        raise ValueError(f"label_names: tag {tag!r} is not BIO / IOB2 (expected 'O', 'B-TYPE' or 'I-TYPE')")
    return prefix, kind


def _tags_as_read(label_names: Sequence[str]) -> Sequence:
    """Integer tags mapped to 0..n-1 ({0, 3, 7} -> 0, 1, 2) carry their own numbers as names: back to
    those integers, scored as integer tags (0 = "O"), since their numbers say nothing of B-/I-."""
    if all(str(n).lstrip("-").isdigit() for n in label_names):
        return [int(n) for n in label_names]
    return label_names


def _scored_sequences(predictions: Any, references: Any, label_names: Sequence[str] | None):
    """Per sentence: (predicted tags, reference tags) at the scored positions (reference != -100)."""
    if len(predictions) != len(references):
        raise ValueError(f"predictions: {len(predictions)} sentences but references has {len(references)}")
    out = []
    for pred, ref in zip(predictions, references, strict=True):
        pred, ref = np.asarray(pred), np.asarray(ref)
        if pred.ndim == ref.ndim + 1:  # logits
            pred = pred.argmax(-1)
        if ref.dtype.kind in "iu":
            keep = ref != IGNORE_INDEX
            pred, ref = pred[: len(ref)][keep], ref[keep]
        if len(pred) != len(ref):
            raise ValueError(f"predictions: a sentence has {len(pred)} tags but its reference has {len(ref)}")
        if label_names is not None and ref.dtype.kind in "iu":
            names = _tags_as_read(label_names)
            pred, ref = [names[i] for i in pred], [names[i] for i in ref]
        out.append((list(pred), list(ref)))
    if not any(ref for _, ref in out):
        raise ValueError("references: no scored token (all -100); nothing to score")
    return out


def token_metrics(
    predictions: Any, references: Any, label_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Entity-level micro precision/recall/F1 plus token accuracy.

    Integer tags without label_names cannot be read as BIO: then precision/recall/f1 are token-level
    over the tags other than 0 (0 = "O" in the usual Hugging Face NER datasets), with a warning.
    """
    seqs = _scored_sequences(predictions, references, label_names)
    correct = sum(p == r for pred, ref in seqs for p, r in zip(pred, ref, strict=True))
    total = sum(len(ref) for _, ref in seqs)
    if seqs and seqs[0][1] and not isinstance(seqs[0][1][0], str):
        warnings.warn(
            "token metrics: integer tags without label_names; precision/recall/f1 are token-level "
            "over the tags != 0, not entity-level",
            stacklevel=2,
        )
        tp = sum(p == r != 0 for pred, ref in seqs for p, r in zip(pred, ref, strict=True))
        n_pred = sum(p != 0 for pred, _ in seqs for p in pred)
        n_true = sum(r != 0 for _, ref in seqs for r in ref)
    else:
        tp = n_pred = n_true = 0
        for pred, ref in seqs:
            p_ents, r_ents = set(get_entities(pred)), set(get_entities(ref))
            tp += len(p_ents & r_ents)
            n_pred += len(p_ents)
            n_true += len(r_ents)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": correct / total}
