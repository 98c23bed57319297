"""compute_metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autolora.eval.metrics import compute_metrics, get_entities

# refs/preds with TP=3, FN=1, FP=1, TN=3.
REFS = [1, 1, 1, 0, 0, 0, 1, 0]
PREDS = [1, 1, 0, 0, 0, 1, 1, 0]


def test_binary_classification_by_hand():
    m = compute_metrics("classification", PREDS, REFS)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))  # 2TP / (2TP + FP + FN)
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (9 - 1) / sqrt(4*4*4*4) = 0.5
    assert m["matthews_correlation"] == pytest.approx(0.5)


def test_classification_accepts_logits():
    logits = np.zeros((len(PREDS), 2))
    logits[np.arange(len(PREDS)), PREDS] = 1.0
    assert compute_metrics("classification", logits, REFS) == compute_metrics("classification", PREDS, REFS)


def test_multiclass_f1_is_macro():
    # class 0: f1 1; class 1: no TP -> 0; class 2: P = R = 1/2 -> 0.5. Macro = 0.5.
    m = compute_metrics("classification", [0, 2, 2, 1], [0, 1, 2, 2], label_names=["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.5) and m["f1"] == pytest.approx(0.5)


def test_constant_predictions_give_zero_matthews():
    assert compute_metrics("classification", [1, 1, 1, 1], [0, 1, 0, 1])["matthews_correlation"] == 0.0


def test_regression_by_hand():
    # x - mean: [-1.5, -.5, .5, 1.5]; y - mean: [-1.75, -.75, .25, 2.25]; sum xy = 6.5, sum x^2 = 5,
    # sum y^2 = 8.75 -> pearson = 6.5 / sqrt(43.75). Same order -> spearman 1. mse = 1 / 4.
    m = compute_metrics("regression", [[1.0], [2.0], [3.0], [4.0]], [1.0, 2.0, 3.0, 5.0])
    assert m["pearson"] == pytest.approx(6.5 / math.sqrt(43.75))
    assert m["spearman"] == pytest.approx(1.0) and m["mse"] == pytest.approx(0.25)
    assert compute_metrics("regression", [4, 3, 2, 1], [1, 2, 3, 5])["spearman"] == pytest.approx(-1.0)
    flat = compute_metrics("regression", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert flat["pearson"] == 0.0 and flat["spearman"] == 0.0 and flat["mse"] == pytest.approx(2 / 3)


def test_get_entities_bio():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-PER", "O", "I-ORG", "B-ORG", "B-ORG"]
    assert get_entities(tags) == [
        ("PER", 0, 1),
        ("LOC", 3, 4),
        ("PER", 5, 5),  # I- of another type starts a new entity
        ("ORG", 7, 7),  # I- after O starts one (conlleval's reading)
        ("ORG", 8, 8),
        ("ORG", 9, 9),  # B- right after B- of the same type: two entities
    ]
    assert get_entities(["O", "O"]) == [] and get_entities(["B-X", "I-X"]) == [("X", 0, 1)]
    with pytest.raises(ValueError, match="not BIO"):
        get_entities(["S-PER"])


NAMES = ["O", "B-PER", "I-PER", "B-LOC", "B-ORG"]
# Sentence 1: reference PER(0-1), LOC(3); prediction PER(0) (a partial match: wrong), LOC(3) right.
# Sentence 2: ORG(0) in both. TP = 2, predicted 3, true 3 -> P = R = F1 = 2/3.
# Tokens: sentence 1 has 3 of 4 right, sentence 2 both -> accuracy 5/6.
REF_TAGS = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
PRED_TAGS = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O"]]


def test_entity_f1_with_partial_match_strings():
    m = compute_metrics("token-classification", PRED_TAGS, REF_TAGS)
    assert m == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "accuracy": 5 / 6})


def test_entity_f1_from_ids_skips_ignored_positions():
    # Padded (N, L) arrays; -100 marks special tokens / later subwords, where predictions are noise.
    refs = [[-100, 1, 2, -100, 0, 3, -100], [-100, 4, 0, -100, -100, -100, -100]]
    preds = [[3, 1, 0, 2, 0, 3, 4], [1, 4, 0, 2, 2, 2, 2]]
    m = compute_metrics("token-classification", np.array(preds), np.array(refs), label_names=NAMES)
    assert m == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "accuracy": 5 / 6})
    logits = np.eye(len(NAMES))[np.array(preds)]  # (N, L, C) one-hot logits
    assert compute_metrics("token-classification", logits, refs, NAMES) == pytest.approx(m)


def test_entity_f1_precision_differs_from_recall():
    # Reference: PER(0-1). Prediction: PER(0-1) and a spurious LOC(3): P = 1/2, R = 1, F1 = 2/3.
    m = compute_metrics(
        "token-classification", [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]]
    )
    assert (m["precision"], m["recall"]) == (0.5, 1.0) and m["f1"] == pytest.approx(2 / 3)
    none = compute_metrics("token-classification", [["O", "O"]], [["O", "B-PER"]])
    assert none["precision"] == none["recall"] == none["f1"] == 0.0


def test_integer_tags_without_names_fall_back_to_token_level():
    with pytest.warns(UserWarning, match="token-level"):
        m = compute_metrics("token-classification", [[1, 0, 2]], [[1, 2, 2]])
    # tags != 0: predicted {1, 2} at 0 and 2, true {1, 2, 2}; TP = 2 -> P = 1, R = 2/3.
    assert (
        m["precision"] == 1.0
        and m["recall"] == pytest.approx(2 / 3)
        and m["accuracy"] == pytest.approx(2 / 3)
    )


def test_lm_metrics():
    m = compute_metrics("causal-lm", 2.0, None)
    assert m == {"loss": 2.0, "perplexity": pytest.approx(math.exp(2.0))}
    assert compute_metrics("causal-lm", 1000.0, None)["perplexity"] == math.inf


def test_metric_errors():
    with pytest.raises(ValueError, match="task: 'ner'"):
        compute_metrics("ner", [1], [1])
    with pytest.raises(ValueError, match="predictions: 2 items but references has 3"):
        compute_metrics("classification", [1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="references: empty"):
        compute_metrics("regression", [], [])
    with pytest.raises(ValueError, match="no scored token"):
        compute_metrics("token-classification", [[1, 2]], [[-100, -100]], NAMES)
    with pytest.raises(ValueError, match="nan"):
        compute_metrics("causal-lm", float("nan"), None)
