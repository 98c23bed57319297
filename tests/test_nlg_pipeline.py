"""`autolora run --task causal-lm --format e2e` end to end on a tiny GPT-2: the rank search over the q
and v slices of c_attn, retraining, beam search, generations.jsonl and every NLG metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_fixtures import save_tiny_gpt2

from autolora.cli import main
from autolora.data.nlg import read_nlg
from autolora.eval.nlg_metrics import java_available

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "e2e" / "devset.csv"

pytestmark = [
    pytest.mark.slow,  # a whole run; METEOR 1.5 alone takes ~15 s to load its paraphrase table
    pytest.mark.skipif(
        not DEV.is_file(), reason="../shared/data/e2e (the E2E dev set) is not beside the repo"
    ),
]


def test_e2e_run_on_a_tiny_gpt2(tmp_path):
    pytest.importorskip("pycocoevalcap")
    model, out = save_tiny_gpt2(tmp_path / "gpt2"), tmp_path / "run"
    argv = [
        "run", "--task", "causal-lm", "--format", "e2e", "--model", str(model), "--output-dir", str(out),
        "--train-file", str(DEV), "--eval-file", str(DEV), "--targets", "c_attn[q,v]",
        "--max-train-samples", "16", "--max-eval-samples", "2", "--max-length", "64",
        "--max-search-steps", "2", "--max-retrain-steps", "1", "--batch-size", "4", "--no-progress",
        "--max-generate", "-1", "--num-beams", "2", "--max-new-tokens", "6",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "metrics.json").read_text())
    meteor = "meteor" if java_available() else "meteor_nltk"
    assert {"perplexity", "bleu", "nist", meteor, "rouge_l", "cider", "ter"} <= set(summary["eval"])
    assert all(v >= 0 for k, v in summary["eval"].items())
    assert summary["ranks"] and all(n.endswith("c_attn.adapters.q") or n.endswith("c_attn.adapters.v")
                                    for n in summary["ranks"])  # fmt: skip
    assert json.loads((out / "config.json").read_text())["decoding"]["num_beams"] == 2
    # One line per evaluated MR, with all of its references in the dev set.
    table = read_nlg(str(DEV), "e2e", "eval_file")
    refs: dict[str, list[str]] = {}
    for mr, ref in zip(table["source"], table["target"], strict=True):
        refs.setdefault(mr, []).append(ref)
    lines = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(x["references"] == refs[x["source"]] for x in lines)
    assert all(isinstance(x["generation"], str) for x in lines)
