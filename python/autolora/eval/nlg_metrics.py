"""Data-to-text metrics, computed as the scorers behind published E2E and WebNLG numbers compute them.

`nlg_scores(hypotheses, references)` returns, at corpus level over multi-reference inputs:
  bleu     BLEU-4 as the E2E challenge's scorer (mteval-v13a): sacrebleu with the 13a tokenizer,
           lowercased, no smoothing, closest reference length. In [0, 1].
  nist     NIST-5 as the same scorer (mteval-v13a), over the same tokens (`nist` below).
  meteor   METEOR 1.5 (Java), through pycocoevalcap, after the Stanford PTB tokenizer, as the E2E
           scorer runs it. In [0, 1].
  rouge_l  ROUGE-L (F with beta 1.2, the best reference per input, averaged), pycocoevalcap.
  cider    CIDEr-D, pycocoevalcap (document frequencies from the references being scored).
  ter      TER (sacrebleu; case-insensitive, no normalisation), as a fraction (sacrebleu's / 100).

Where Java is missing, the PTB tokenizer and METEOR 1.5 cannot run: this says so (a warning),
tokenizes with nltk's Treebank tokenizer instead (E2E dev references scored against each other:
ROUGE-L 0.6525 and CIDEr 1.8483 against 0.6528 and 1.8543 after the PTB tokenizer), and reports
nltk's METEOR under the name "meteor_nltk": another metric (other parameters, no paraphrases, the
mean of per-input scores), 0.78 there where METEOR 1.5 gives 0.45, so never to be compared with it.
Dependencies: the `nlg` extra (sacrebleu, pycocoevalcap, nltk).
"""

from __future__ import annotations

import math
import re
import shutil
import warnings
from collections import Counter
from collections.abc import Sequence

NIST_ORDER = 5
# NIST's length penalty: exp(-beta * log(ratio)^2), beta making it 0.5 at ratio 2/3 (mteval-v13a).
NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2


def java_available() -> bool:
    """Whether a `java` is on PATH (METEOR 1.5 and the PTB tokenizer are Java programs)."""
    return shutil.which("java") is not None


def check_inputs(hypotheses: Sequence[str], references: Sequence[Sequence[str] | str]) -> list[list[str]]:
    """references as one list of strings per hypothesis; raises ValueError on a count mismatch or an
    input without references."""
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if len(refs) != len(hypotheses) or not refs:
        raise ValueError(
            f"references: {len(refs)} entries for {len(hypotheses)} hypotheses (need >= 1, equal)"
        )
    for i, r in enumerate(refs):
        if not r or not all(isinstance(x, str) for x in r):
            raise ValueError(f"references: input {i} needs at least one reference text, got {r!r}")
    if not all(isinstance(h, str) for h in hypotheses):
        raise ValueError("hypotheses: expected one text per input")
    return refs


def nlg_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str] | str]) -> dict[str, float]:
    """All the metrics above. hypotheses: one text per input; references: the texts of each input."""
    refs = check_inputs(hypotheses, references)
    scores = {"bleu": bleu(hypotheses, refs), "nist": nist(hypotheses, refs)}
    scores.update(coco_scores(hypotheses, refs))
    scores["ter"] = ter(hypotheses, refs)
    return scores


# --------------------------------------------------------------------------------- mteval family


def _streams(refs: list[list[str]]) -> list[list[str | None]]:
    """sacrebleu wants reference streams; an input with fewer references gets None in the rest."""
    width = max(len(r) for r in refs)
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str] | str]) -> float:
    """Corpus BLEU-4 in [0, 1], mteval-v13a's tokenization, lowercased (the E2E scorer's settings)."""
    from sacrebleu.metrics import BLEU

    refs = check_inputs(hypotheses, references)
    metric = BLEU(lowercase=True, tokenize="13a", smooth_method="none")
    return metric.corpus_score(list(hypotheses), _streams(refs)).score / 100.0


def mteval_tokens(text: str) -> list[str]:
    """mteval-v13a's tokenization (sacrebleu's 13a), lowercased: what BLEU and NIST count."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(text).lower().split()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def nist(
    hypotheses: Sequence[str], references: Sequence[Sequence[str] | str], order: int = NIST_ORDER
) -> float:
    """Corpus NIST as mteval-v13a and the E2E scorer compute it, with several references per input.

    NIST = BP * sum_n [sum over hypothesis n-grams matched (clipped to the most any one reference
    has) of info(ngram)] / [hypothesis n-gram count], with info(w1..wn) = log2(count(w1..wn-1) /
    count(w1..wn)) over all references of the corpus (count of the empty prefix: all reference
    words), and BP = exp(-beta log^2(min(1, hyp words / mean reference words summed over inputs))).
    Written out here because nltk's corpus_nist scores each input against its best single reference,
    not these clipped multi-reference counts, and differs from the published numbers.
    """
    refs = check_inputs(hypotheses, references)
    hyps = [mteval_tokens(h) for h in hypotheses]
    ref_toks = [[mteval_tokens(r) for r in rs] for rs in refs]
    ref_counts: list[Counter] = [Counter() for _ in range(order + 1)]
    for rs in ref_toks:
        for r in rs:
            ref_counts[0][()] += len(r)
            for n in range(1, order + 1):
                ref_counts[n].update(_ngrams(r, n))

    def info(ngram: tuple[str, ...]) -> float:
        n = len(ngram)
        return (
            math.log2(ref_counts[n - 1][ngram[:-1]] / ref_counts[n][ngram]) if ngram in ref_counts[n] else 0.0
        )

    total = 0.0
    for n in range(1, order + 1):
        gain, length = 0.0, 0
        for hyp, rs in zip(hyps, ref_toks, strict=True):
            best = Counter()
            for r in rs:
                best |= _ngrams(r, n)  # the most any one reference has of each n-gram
            gain += sum(info(g) * c for g, c in (_ngrams(hyp, n) & best).items())
            length += len(hyp) - n + 1  # as the E2E scorer counts (below zero when len(hyp) < n)
        total += gain / length if length else 0.0
    hyp_words = sum(len(h) for h in hyps)
    mean_ref_words = sum(sum(len(r) for r in rs) / len(rs) for rs in ref_toks)
    ratio = hyp_words / mean_ref_words if mean_ref_words else 0.0
    penalty = 1.0 if ratio >= 1 else 0.0 if ratio <= 0 else math.exp(-NIST_BETA * math.log(ratio) ** 2)
    return penalty * total


def ter(hypotheses: Sequence[str], references: Sequence[Sequence[str] | str]) -> float:
    """Corpus TER (sacrebleu's defaults), as a fraction: edits / mean reference words."""
    from sacrebleu.metrics import TER

    refs = check_inputs(hypotheses, references)
    return TER().corpus_score(list(hypotheses), _streams(refs)).score / 100.0


# --------------------------------------------------------------------------------- MS-COCO family


def coco_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str] | str]) -> dict[str, float]:
    """METEOR, ROUGE-L and CIDEr over the tokens of the PTB tokenizer, as the E2E scorer computes them
    (its MS-COCO caption evaluation); without Java the fallbacks named in the module docstring."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    refs = check_inputs(hypotheses, references)
    java = java_available()
    if not java:
        warnings.warn(
            "nlg metrics: no java on PATH, so neither METEOR 1.5 nor the Stanford PTB tokenizer can run: "
            "tokenizing with nltk's Treebank tokenizer and reporting nltk's METEOR as meteor_nltk; "
            "rouge_l and cider may differ slightly from the E2E scorer's. Install Java (Debian: "
            "apt-get install default-jre-headless) for the published metrics.",
            stacklevel=2,
        )
    gts, res = _tokenized(hypotheses, refs, java)
    scores = {
        "rouge_l": float(Rouge().compute_score(gts, res)[0]),
        "cider": float(Cider().compute_score(gts, res)[0]),
    }
    if java:
        scores["meteor"] = _meteor15(gts, res)
    else:
        scores["meteor_nltk"] = _meteor_nltk(gts, res)
    return scores


def _tokenized(hypotheses: Sequence[str], refs: list[list[str]], java: bool) -> tuple[dict, dict]:
    """{input index: [tokenized texts]} for the references and the hypotheses, lowercased, the PTB
    tokenizer's punctuation dropped."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, PTBTokenizer

    if java:
        tokenizer = PTBTokenizer()
        gts = tokenizer.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)})
        res = tokenizer.tokenize({i: [{"caption": h}] for i, h in enumerate(hypotheses)})
        return gts, res
    from nltk.tokenize import TreebankWordTokenizer

    treebank, drop = TreebankWordTokenizer(), set(PUNCTUATIONS)

    def tok(text: str) -> str:
        # The Treebank tokenizer reads one sentence (it splits off only the last period), so split
        # sentences first; the PTB tokenizer writes the pound sign as a separate "#".
        sentences = re.split(r"(?<=[.!?])\s+", text.lower().replace("£", " # "))
        return " ".join(w for sentence in sentences for w in treebank.tokenize(sentence) if w not in drop)

    return {i: [tok(r) for r in rs] for i, rs in enumerate(refs)}, {
        i: [tok(h)] for i, h in enumerate(hypotheses)
    }


def _meteor15(gts: dict, res: dict) -> float:
    """METEOR 1.5 (the jar pycocoevalcap ships): the corpus score from all inputs' statistics."""
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    try:
        return float(meteor.compute_score(gts, res)[0])
    finally:
        del meteor  # its __del__ ends the Java process


class _NoSynonyms:
    """A WordNet stand-in with no synsets: nltk's METEOR then matches exact words and stems only."""

    @staticmethod
    def synsets(word: str) -> list:
        return []


def _meteor_nltk(gts: dict, res: dict) -> float:
    """nltk's METEOR averaged over inputs; with WordNet synonyms where nltk finds its WordNet data
    (nltk.download("wordnet"): it is not on PyPI), else exact and stem matches only (said once)."""
    import nltk
    from nltk.translate.meteor_score import meteor_score

    try:
        nltk.data.find("corpora/wordnet")
        from nltk.corpus import wordnet
    except LookupError:
        warnings.warn(
            "meteor_nltk: nltk's WordNet data is not installed (nltk.download('wordnet')): matching "
            "exact words and stems only, no synonyms",
            stacklevel=3,
        )
        wordnet = _NoSynonyms()
    per_input = [meteor_score([r.split() for r in gts[i]], res[i][0].split(), wordnet=wordnet) for i in gts]
    return sum(per_input) / len(per_input)
