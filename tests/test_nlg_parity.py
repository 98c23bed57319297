"""autolora's NLG metrics equal the official E2E scorer's to the 4 decimals it prints, on its example
inputs together with edited E2E dev references (experiments/nlg_parity/ runs more cases)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from autolora.eval.nlg_metrics import java_available

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
pytestmark = [
    pytest.mark.slow,  # both scorers load METEOR 1.5's paraphrase table (~15 s each)
    pytest.mark.skipif(
        not (SHARED / "reference" / "e2e-metrics").is_dir() or not (SHARED / "data" / "e2e").is_dir(),
        reason="../shared (the official E2E scorer and the E2E dev set) is not beside the repo",
    ),
    pytest.mark.skipif(
        not java_available(), reason="no java: the official scorer's METEOR and tokenizer need it"
    ),
]


def _parity():
    for package in ("pycocoevalcap", "pycocotools", "past"):  # past: the `future` package
        pytest.importorskip(package)
    spec = importlib.util.spec_from_file_location("parity", ROOT / "experiments" / "nlg_parity" / "parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_metric_equals_the_official_scorers():
    parity = _parity()
    cases = parity.cases(SHARED)
    hyps, refs = cases["example-inputs"]
    edited, edited_refs = cases["dev: references edited (9 kinds, 40 MRs each)"]
    merged = {"example inputs and edited dev references": (hyps + edited[:90], refs + edited_refs[:90])}
    (row,) = parity.compare(SHARED, merged)
    assert row["inputs"] == 100
    for metric in parity.METRICS:
        assert f"{row['ours'][metric]:.4f}" == f"{row['official'][metric]:.4f}", (metric, row)
