"""The frozen base sharded over 2 CPU processes (FSDP2, gloo): the search and the retraining take the
same steps as one process on the whole batch, each process holds half the base, and what cannot run
sharded says so."""

from __future__ import annotations

import pytest
import torch
from helpers import spawn_ranks
from sharding_worker import (
    batches,
    build,
    retrain,
    run_autolora_trainer_rank,
    run_rank,
    run_trainer_rank,
    search,
    share,
)

from autolora.search import SearchStepConfig
from autolora.train.sharding import check_shardable, shard_frozen_base, transformer_blocks

# fp32 sums in another order (each rank's mean over 4 rows, then the average of 2 ranks, against one
# mean over 8); the all-gathered base weights are bitwise the originals. Observed: ~1e-7 after 3
# Adam steps. 1e-5 leaves 100x room while a missing average (one rank's half alone) moves the
# parameters by more than 1e-3 (test_a_missing_average_is_caught_by_the_tolerance).
ATOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


def _launch(target, tmp, *extra) -> list[dict]:
    """Run target(rank, 2, port, result, *extra) in 2 spawned processes; their JSON results."""
    results = [tmp / f"rank{r}.json" for r in range(2)]
    out, hung = spawn_ranks(target, lambda r, port: (r, 2, port, str(results[r]), *extra), results)
    assert not hung, "a rank hung past the deadline"
    out = [{"ok": False, "error": "no result"} if r is None else r for r in out]
    assert all(r["ok"] for r in out), [r.get("error") for r in out]
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Both ranks' results: one launch of 2 processes runs every sharded case of run_rank."""
    return _launch(run_rank, tmp_path_factory.mktemp("sharded"))


def _assert_matches(got: dict, ref: dict[str, torch.Tensor]) -> None:
    assert got.keys() == ref.keys()
    for name, value in ref.items():
        torch.testing.assert_close(torch.tensor(got[name]), value, rtol=0, atol=ATOL, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_sharded_search_matches_one_process_on_the_whole_batch(pair, family):
    start = {n: p.detach().clone() for n, p in build("search", family).named_parameters() if p.requires_grad}
    ref = search(build("search", family), batches(family))
    assert any(n.endswith(".beta") for n in ref)
    for name in ref:  # every U, V, beta and the head moved: the comparison is not of starting points
        assert (ref[name] - start[name]).abs().max() > 1e-3, name
    for rank in pair:
        _assert_matches(rank["search" if family == "bert" else "search_gpt2"], ref)
    assert all(rank["trainable_is_whole"] for rank in pair)


@pytest.mark.slow
def test_a_missing_average_is_caught_by_the_tolerance():
    whole = search(build("search"), batches())
    half = search(build("search"), [share(b, 0, 2) for b in batches()])
    assert max((whole[n] - half[n]).abs().max().item() for n in whole) > 100 * ATOL


@pytest.mark.slow
def test_sharded_retraining_matches_one_process_on_the_whole_batch(pair):
    model = build("fixed")
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    retrain(model, batches())
    ref = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.endswith(".beta") for n in ref) and any(n.endswith(".U") for n in ref)
    for name in ref:
        assert (ref[name] - start[name]).abs().max() > 1e-3, name
    for rank in pair:
        _assert_matches(rank["retrain"], ref)


@pytest.mark.slow
def test_each_process_holds_half_the_frozen_base(pair):
    for rank in pair:
        assert rank["frozen_bytes_whole"] > 0
        assert rank["frozen_bytes_local"] <= 0.55 * rank["frozen_bytes_whole"], rank


@pytest.mark.slow
def test_exact_hypergradient_fails_on_a_sharded_base(pair):
    """It runs in one process (eager attention) but not sharded: the reason check_shardable gives."""
    search(build("search"), batches()[:2] * 3, None, "exact")
    for rank in pair:
        # the first backward resharded the base: its gathered weights have no storage left
        message = rank["exact"]
        assert message.startswith("RuntimeError") and "storage of size 0" in message, message


@pytest.mark.slow
def test_the_search_refuses_sharded_w(pair):
    """autograd.grad gives no gradient to a parameter FSDP shards: W would silently never move."""
    for rank in pair:
        assert rank["sharded_w"].startswith("inner/outer: a parameter is sharded"), rank["sharded_w"]


@pytest.mark.slow
def test_trainer_with_a_sharded_base_matches_its_ddp(tmp_path):
    """transformers.Trainer on 2 processes: the base sharded by shard_for_trainer (the Trainer's own
    averaging of the whole trainable parameters' gradients) against the Trainer's DDP on the whole
    model. Both shard the data alike (not as one process does), so DDP is the reference."""
    sharded = _launch(run_trainer_rank, tmp_path / "sharded", True)
    ddp = _launch(run_trainer_rank, tmp_path / "ddp", False)
    assert [r["wrapper"] for r in sharded] == ["FSDPBertForSequenceClassification"] * 2  # no DDP wrap
    assert [r["wrapper"] for r in ddp] == ["DistributedDataParallel"] * 2
    start = {n: p for n, p in build("fixed").named_parameters() if p.requires_grad}
    for name, value in ddp[0]["params"].items():
        ref = torch.tensor(value)
        assert (ref - start[name]).abs().max() > 1e-3, name  # it trained
        for rank in sharded:
            torch.testing.assert_close(torch.tensor(rank["params"][name]), ref, rtol=0, atol=ATOL, msg=name)
    for rank, whole in zip(sharded, ddp, strict=True):
        assert rank["frozen_bytes_local"] <= 0.55 * whole["frozen_bytes_local"]


@pytest.mark.slow
def test_autolora_trainer_with_a_sharded_base_matches_it_unsharded(tmp_path):
    """The search (whole adapters, its own reduce), the switch and retraining under AutoLoraTrainer:
    the same ranks and weights whether the base is sharded or every rank holds it whole."""
    sharded = _launch(run_autolora_trainer_rank, tmp_path / "sharded", True)
    whole = _launch(run_autolora_trainer_rank, tmp_path / "whole", False)
    assert sharded[0]["ranks"] == sharded[1]["ranks"] == whole[0]["ranks"]
    for name, value in whole[0]["params"].items():
        for rank in sharded:
            torch.testing.assert_close(
                torch.tensor(rank["params"][name]), torch.tensor(value), rtol=0, atol=ATOL
            )
    for rank, ref in zip(sharded, whole, strict=True):
        assert rank["frozen_bytes_local"] <= 0.55 * ref["frozen_bytes_local"]


def test_exact_is_refused_with_the_option_named():
    with pytest.raises(ValueError, match="fsdp: hypergradient 'exact' cannot run with a sharded base"):
        check_shardable("exact")
    for hypergradient in ("second-order", "first-order", "none"):
        SearchStepConfig(hypergradient)  # a valid option...
        check_shardable(hypergradient)  # ...that runs sharded


def test_sharding_needs_a_process_group():
    with pytest.raises(ValueError, match="fsdp: the process group is not initialised"):
        shard_frozen_base(build("fixed"))


def test_transformer_blocks_are_the_encoder_layers():
    model = build("fixed")
    assert transformer_blocks(model) == list(model.bert.encoder.layer)
