"""Data parallelism on CPU with gloo and 2 processes: the same search as one process with twice the
batch, and a killed rank that makes the other fail with a clear error instead of hanging."""

from __future__ import annotations

import json
import time

import pytest
from dist_worker import run_rank
from helpers import spawn_ranks
from pipeline_fixtures import save_tiny_bert

pytestmark = pytest.mark.slow  # launches torchrun processes

STEPS = {
    "max_search_steps": 6,
    "max_retrain_steps": 3,
    "search_epochs": 50.0,
    "retrain_epochs": 50.0,
    "checkpoint_every": 2,
    "progress": False,
    "lr_w": 1e-2,
    "lr_beta": 5e-2,
    "eval_batch_size": 16,
    "data.format": "cola",
    "data.max_train_samples": 48,
    "data.max_eval_samples": 16,
}


def launch(world: int, overrides: dict, tmp_path, die: dict | None = None, timeout: float = 240.0) -> list:
    results = [tmp_path / f"rank{r}.json" for r in range(world)]
    args_of = lambda r, port: (r, world, port, overrides, str(results[r]), (die or {}).get(r, 0))  # noqa: E731
    out, hung = spawn_ranks(run_rank, args_of, results, timeout)
    assert not hung, "a rank hung past the deadline"
    return out


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    # No dropout: one process with batch 2b and two with b must see the same computation.
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert-nodrop"), dropout=0.0)


@pytest.fixture(scope="module")
def single(bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    result = launch(
        1, {"model": str(bert_dir), **STEPS, "batch_size": 8, "output_dir": str(out / "run")}, out
    )[0]
    assert result["ok"], result
    return result["summary"], json.loads((out / "run/alpha_history.json").read_text())["history"]


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_ranks_match_one_process_with_twice_the_batch(bert_dir, single, tmp_path, fsdp):
    """DDP: every rank holds the whole model; fsdp: each holds half the frozen base (FSDP2) and the
    whole adapters. Either way the search and retraining match one process with twice the batch."""
    summary, one = single
    base = {"model": str(bert_dir), **STEPS, "fsdp": fsdp}
    pair = launch(2, {**base, "batch_size": 4, "output_dir": str(tmp_path / "two")}, tmp_path)
    assert all(r["ok"] for r in pair), pair
    assert pair[0]["summary"]["world_size"] == 2
    assert pair[0]["summary"]["ranks"] == pair[1]["summary"]["ranks"] == summary["ranks"]
    two = json.loads((tmp_path / "two/alpha_history.json").read_text())["history"]
    # fp32 sums in another order (per-rank means, then the all-reduce): relative error ~1e-6 per
    # step; after 6 Adam steps 1e-4 leaves room while any real mismatch (other data, a missing
    # average) moves the losses by 1e-2 or more.
    assert [("loss_val" in h) for h in one] == [("loss_val" in h) for h in two]  # beta's steps
    for a, b in zip(one, two, strict=True):
        for loss in {"loss_tr", "loss_val"} & a.keys():
            assert a[loss] == pytest.approx(b[loss], rel=1e-4), loss
        for name in a["alpha"]:
            assert a["alpha"][name] == pytest.approx(b["alpha"][name], abs=1e-5)
    assert (tmp_path / "two/metrics.json").exists() and (
        tmp_path / "two/adapter/adapter_config.json"
    ).exists()


def test_a_killed_rank_makes_the_other_fail_clearly(bert_dir, tmp_path):
    overrides = {
        "model": str(bert_dir),
        **STEPS,
        "batch_size": 4,
        "dist_timeout": 30.0,
        "output_dir": str(tmp_path / "run"),
    }
    start = time.monotonic()
    rank0, rank1 = launch(2, overrides, tmp_path, die={1: 3}, timeout=150.0)
    assert rank1 is None  # it died without a word
    assert rank0 is not None and not rank0["ok"] and rank0["type"] == "DistributedError", rank0
    assert "rank 0/2" in rank0["message"] and "another rank died" in rank0["message"]
    assert time.monotonic() - start < 150
