"""evaluate() on tiny randomly initialised models: one per task type, checked against direct computation."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import tiny_model, word_level_tokenizer

from autolora.data import DataConfig, load_task
from autolora.decoding import DecodingConfig
from autolora.eval import evaluation as evaluate_module
from autolora.eval import nlg_metrics
from autolora.eval.evaluation import evaluate, predict_logits
from autolora.eval.generation import generate_texts
from autolora.eval.metrics import compute_metrics

MINILM_VOCAB = 30522


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: a forward is ~2 ms on one thread, but on a busy 2-core machine a second intra-op
    thread only adds spin-waiting (measured 0.35 s per forward at load 5). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def lm_tok():
    """Word-level GPT-2-like tokenizer (vocab < 100, fits conftest's tiny GPT-2); eos == bos, no pad."""
    return word_level_tokenizer(
        "name the eagle is a coffee shop area riverside serves near pub city centre in"
    )


def minilm_bert(**kw):
    """A tiny BERT over the MiniLM tokenizer's vocabulary (the `tok` fixture's ids fit it)."""
    return tiny_model("bert", vocab_size=MINILM_VOCAB, positions=128, **kw)


def files(tmp_path, body: str, ext: str) -> dict:
    (tmp_path / f"train{ext}").write_text(body)
    return {"train_file": str(tmp_path / f"train{ext}"), "eval_file": str(tmp_path / f"train{ext}")}


@pytest.fixture(scope="module")
def cola(tok):
    return load_task(
        DataConfig(format="cola", max_train_samples=16, max_eval_samples=30, max_length=32), tok
    )  # not 8: those 8 rows are all 'acceptable', a single class (an InputError)


def test_classification_matches_direct_computation(cola):
    model = minilm_bert()
    metrics = evaluate(model, cola, batch_size=8)
    assert set(metrics) == {"accuracy", "f1", "matthews_correlation"}
    assert all(math.isfinite(v) for v in metrics.values())
    # Reference: every example alone, unpadded.
    preds = []
    with torch.no_grad():
        for row in cola.eval:
            ids = torch.tensor([row["input_ids"]])
            preds.append(
                int(
                    model(input_ids=ids, token_type_ids=torch.tensor([row["token_type_ids"]])).logits.argmax()
                )
            )
    assert metrics == compute_metrics("classification", preds, cola.eval["labels"], cola.label_names)


def test_padding_and_batch_size_do_not_change_the_logits(cola):
    model = minilm_bert()
    with torch.no_grad():
        one, labels = predict_logits(model, cola.eval, cola.collate, batch_size=1)
        many, labels7 = predict_logits(model, cola.eval, cola.collate, batch_size=7)
    assert one.shape == (30, 2) and torch.equal(labels, labels7)
    torch.testing.assert_close(one, many, rtol=1e-5, atol=1e-5)


def test_modes_are_restored_and_eval_mode_is_used(cola):
    model = minilm_bert(hidden_dropout_prob=0.5).train()
    model.bert.embeddings.eval()  # a submodule deliberately left in eval mode
    a = evaluate(model, cola, batch_size=16)
    b = evaluate(model, cola, batch_size=16)
    assert a == b  # dropout off during evaluation
    assert model.training and model.classifier.training and not model.bert.embeddings.training
    assert all(p.grad is None for p in model.parameters())


def test_regression(tmp_path, tok):
    rows = [{"sentence1": f"a man plays {w}", "sentence2": f"someone plays {w}", "score": s} for w, s in
            [("guitar", 4.2), ("piano", 3.1), ("chess", 1.0), ("golf", 0.4), ("music", 5.0)]]  # fmt: skip
    data = load_task(DataConfig(task="regression", **files(tmp_path, json.dumps(rows), ".json")), tok)
    model = minilm_bert(num_labels=1)
    metrics = evaluate(model, data, batch_size=2)
    assert set(metrics) == {"pearson", "spearman", "mse"} and all(math.isfinite(v) for v in metrics.values())
    with torch.no_grad():
        logits, labels = predict_logits(model, data.eval, data.collate, batch_size=5)
    assert metrics["mse"] == pytest.approx(float(((logits[:, 0] - labels) ** 2).mean()), rel=1e-5)


def test_token_classification(tmp_path, tok):
    rows = [
        {"tokens": ["EU", "rejects", "Germanyish", "lamb"], "ner_tags": ["B-ORG", "O", "B-MISC", "O"]},
        {"tokens": ["Peter", "Blackburn", "spoke"], "ner_tags": ["B-PER", "I-PER", "O"]},
        {"tokens": ["in", "Brussels"], "ner_tags": ["O", "B-LOC"]},
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows)
    data = load_task(DataConfig(task="token-classification", **files(tmp_path, body, ".jsonl")), tok)
    model = minilm_bert(head="token-cls", num_labels=data.num_labels)
    metrics = evaluate(model, data, batch_size=2)
    assert set(metrics) == {"precision", "recall", "f1", "accuracy"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    # Reference: per sentence, unpadded, scored at the first subword of each word.
    preds, refs = [], []
    with torch.no_grad():
        for row in data.eval:
            preds.append(model(input_ids=torch.tensor([row["input_ids"]])).logits[0].argmax(-1).tolist())
            refs.append(row["labels"])
    assert metrics == compute_metrics("token-classification", preds, refs, data.label_names)


LM_ROWS = [
    {"source": "name the eagle", "target": "the eagle is a coffee shop"},
    {"source": "name the eagle", "target": "the eagle serves coffee near the riverside"},
    {"source": "area city centre", "target": "a pub in the city centre"},
    {"source": "area riverside", "target": "near the riverside"},
]


@pytest.fixture()
def lm_data(tmp_path, lm_tok):
    body = "".join(json.dumps(r) + "\n" for r in LM_ROWS)
    return load_task(DataConfig(task="causal-lm", max_length=32, **files(tmp_path, body, ".jsonl")), lm_tok)


def test_causal_lm_loss_is_token_weighted(lm_data):
    model = tiny_model("gpt2")
    metrics = evaluate(model, lm_data, batch_size=3)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert math.isfinite(metrics["loss"]) and "bleu" not in metrics
    # Reference: Hugging Face's own loss per example (mean over its target tokens), re-weighted.
    total, count = 0.0, 0
    with torch.no_grad():
        for row in lm_data.eval:
            labels = torch.tensor([row["labels"]])
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=torch.tensor([row["input_ids"]]), labels=labels).loss) * n
            count += n
    assert metrics["loss"] == pytest.approx(total / count, rel=1e-5)


def test_causal_lm_generation_is_scored_and_written(lm_data, tmp_path, monkeypatch):
    pytest.importorskip("pycocoevalcap")
    # Without Java the pure-Python fallbacks score it (METEOR 1.5 takes ~20 s to load its tables).
    monkeypatch.setattr(nlg_metrics, "java_available", lambda: False)
    path = tmp_path / "generations.jsonl"
    with pytest.warns(UserWarning, match="no java on PATH"):
        metrics = evaluate(tiny_model("gpt2"), lm_data, batch_size=2, max_generate=-1, generations_path=path)
    assert set(metrics) == {"loss", "perplexity", "bleu", "nist", "rouge_l", "cider", "meteor_nltk", "ter"}
    assert 0.0 <= metrics["bleu"] <= 1.0 and math.isfinite(metrics["perplexity"])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["source"], x["references"]) for x in lines] == [
        (it["prompt"], it["references"]) for it in lm_data.eval_raw
    ]
    assert all(isinstance(x["generation"], str) for x in lines)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_left_padded_batched_generation_matches_one_at_a_time(lm_data, monkeypatch, num_beams):
    # Prompts of 3, 3 and 2 tokens: batch_size=3 left-pads the last one.
    seen = []
    monkeypatch.setattr(evaluate_module, "nlg_missing", lambda: [])
    monkeypatch.setattr(nlg_metrics, "nlg_scores", lambda h, r: seen.append((h, r)) or {"bleu": 0.5})
    model = tiny_model("gpt2")
    decoding = DecodingConfig(num_beams=num_beams, no_repeat_ngram_size=2, max_new_tokens=6)
    assert evaluate(model, lm_data, batch_size=3, max_generate=3, decoding=decoding)["bleu"] == 0.5
    evaluate(model, lm_data, batch_size=1, max_generate=3, decoding=decoding)
    (batched, refs), (single, _) = seen
    assert batched == single and len(batched) == 3 and all(isinstance(h, str) for h in batched)
    assert refs == [
        [LM_ROWS[0]["target"], LM_ROWS[1]["target"]],
        [LM_ROWS[2]["target"]],
        [LM_ROWS[3]["target"]],
    ]


def test_beam_search_continues_as_transformers_does(lm_data, lm_tok):
    """The decoding options reach generate(): one prompt, beams and no-repeat as transformers runs them."""
    model = tiny_model("gpt2")
    decoding = DecodingConfig(num_beams=4, no_repeat_ngram_size=2, max_new_tokens=5)
    prompt = lm_data.eval_raw[0]["prompt_ids"]
    ours = generate_texts(model, lm_tok, [prompt], decoding, 1, torch.device("cpu"), lm_tok.eos_token_id)
    options = {"num_beams": 4, "no_repeat_ngram_size": 2, "max_new_tokens": 5, "length_penalty": 0.9}
    eos = lm_tok.eos_token_id
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), do_sample=False, pad_token_id=eos, eos_token_id=eos, **options
        )
    assert ours == [lm_tok.decode(out[0, len(prompt) :], skip_special_tokens=True).strip()]


def test_generation_without_the_nlg_extra_warns(lm_data, monkeypatch, tmp_path):
    monkeypatch.setattr(evaluate_module, "nlg_missing", lambda: ["pycocoevalcap"])
    decoding, path = DecodingConfig(num_beams=1, max_new_tokens=4), tmp_path / "g.jsonl"
    with pytest.warns(UserWarning, match=r"\['pycocoevalcap'\] not installed"):
        metrics = evaluate(
            tiny_model("gpt2"), lm_data, max_generate=2, decoding=decoding, generations_path=path
        )
    assert "bleu" not in metrics and math.isfinite(metrics["loss"])
    assert len(path.read_text().splitlines()) == 2  # generated all the same


def test_evaluate_argument_errors(cola):
    model = minilm_bert()
    with pytest.raises(ValueError, match="batch_size: must be >= 1"):
        evaluate(model, cola, batch_size=0)
    with pytest.raises(ValueError, match="max_generate: must be >= -1"):
        evaluate(model, cola, max_generate=-2)
