"""The NLG metrics on cases small enough to compute by hand (the official E2E scorer is compared in
test_nlg_parity.py)."""

from __future__ import annotations

import math

import pytest

from autolora.eval import nlg_metrics
from autolora.eval.nlg_metrics import NIST_BETA, bleu, coco_scores, mteval_tokens, nist, nlg_scores, ter

pytest.importorskip("sacrebleu")
HYP, REF = "the cat sat on the mat", "the cat sat on a mat"


def test_bleu_by_hand():
    # Clipped n-gram matches of HYP against REF: 5/6 unigrams, 3/5 bigrams, 2/4 trigrams, 1/3
    # four-grams; equal lengths, so no brevity penalty.
    assert bleu([HYP], [[REF]]) == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    # Lowercased, mteval-tokenized ("mat." is "mat ."), any of several references.
    assert bleu(["The cat sat on the mat."], [["a dog", "the cat sat on the mat ."]]) == pytest.approx(1.0)


def test_mteval_tokens_split_punctuation_but_not_numbers():
    assert mteval_tokens("Price: £20-25, rated 5.5.") == [
        "price",
        ":",
        "£20",
        "-",
        "25",
        ",",
        "rated",
        "5.5",
        ".",
    ]


def test_nist_by_hand():
    words = "w1 w2 w3 w4 w5"
    # Five distinct reference words: info(w) = log2(5 / 1) each; every longer n-gram has info
    # log2(count(prefix) / count(ngram)) = log2(1) = 0.
    assert nist([words], [[words]]) == pytest.approx(math.log2(5))
    # Three of the five words: the same precision term, times the length penalty at ratio 3/5.
    penalty = math.exp(-NIST_BETA * math.log(3 / 5) ** 2)
    assert nist(["w1 w2 w3"], [[words]]) == pytest.approx(math.log2(5) * penalty)
    assert math.exp(-NIST_BETA * math.log(2 / 3) ** 2) == pytest.approx(0.5)  # mteval's calibration


def test_ter_by_hand():
    assert ter([HYP], [[REF]]) == pytest.approx(1 / 6)  # one substitution in six reference words
    # Several references: the fewest edits (1, against REF; 2 against the other) over the mean
    # reference length (6 and 7 words).
    assert ter([HYP], [[REF, "a cat sat on the mat today"]]) == pytest.approx(1 / 6.5)


def test_fallback_without_java_is_named_and_said(monkeypatch):
    pytest.importorskip("pycocoevalcap")
    monkeypatch.setattr(nlg_metrics, "java_available", lambda: False)
    with pytest.warns(UserWarning, match="no java on PATH"):
        scores = coco_scores(["The cat sat on mat.", HYP], [[REF], [HYP]])
    assert set(scores) == {"rouge_l", "cider", "meteor_nltk"}
    # Input 1 (punctuation dropped, lowercased): 5 of its 5 words in order in REF's 6: P = 1, R = 5/6;
    # ROUGE-L's F weighs recall by beta^2 = 1.44. Input 2 is exact: 1.
    p, r = 1.0, 5 / 6
    assert scores["rouge_l"] == pytest.approx(((1 + 1.44) * p * r / (r + 1.44 * p) + 1) / 2)
    # nltk's METEOR: F = P R / (0.9 P + 0.1 R) times 1 - 0.5 (chunks / matches)^3; input 1 has two
    # chunks ("the cat sat on", "mat") of 5 matches, input 2 one chunk of 6.
    first = p * r / (0.9 * p + 0.1 * r) * (1 - 0.5 * (2 / 5) ** 3)
    exact = 1 - 0.5 * (1 / 6) ** 3
    assert scores["meteor_nltk"] == pytest.approx((first + exact) / 2)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="references: 1 entries for 2 hypotheses"):
        nlg_scores([HYP, HYP], [[REF]])
    with pytest.raises(ValueError, match="references: input 0 needs at least one reference"):
        bleu([HYP], [[]])
