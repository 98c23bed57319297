"""What a search step and a retraining step read on the host: nothing between logging steps, one
transfer at each. Counted on the CPU (what would wait for a GPU) and, on CUDA, by the driver itself."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from pipeline_fixtures import FAST, cola, run, save_tiny_bert
from torch.utils._python_dispatch import TorchDispatchMode

import autolora
import autolora.pipeline as pipeline_mod
from autolora.config import load_config
from autolora.pipeline import Pipeline
from autolora.train.loop import BatchStream
from autolora.tuner.rank_rules import spectrum, spectrum_from_grams, update_grams

STEPS, LOG_EVERY = 12, 5  # logging steps 5, 10 and 12 (the last); no checkpoint in between
SHORT = {"max_search_steps": STEPS, "max_retrain_steps": STEPS, "checkpoint_every": 100, **cola()}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


class HostReads(TorchDispatchMode):
    """Records what waits for the device on a GPU: aten._local_scalar_dense (what .item(), float(),
    int() and bool() of a tensor dispatch) and the Tensor methods that copy to the host (cpu, tolist,
    numpy, item: patched, since on the CPU .cpu() and .tolist() of a CPU tensor never reach the
    dispatcher). Each read is filed under `self.at`, the phase of the run it happened in.

    Two kinds of read are host work on every device and are not counted: BatchStream.next's (the
    permutation and the collated batch live on the host until their copy to the device), and
    torch.optim's reads of an optimiser's step count (a CPU tensor unless the optimiser is capturable
    or fused). transformers' own read of the attention mask (masking_utils: SDPA skips the mask when
    nothing is padded, one `.all()` per forward pass; eager attention makes none) is counted apart,
    as "model".
    """

    METHODS = ("cpu", "tolist", "numpy", "item")

    def __init__(self, monkeypatch, optimisers: list, on_phase=None) -> None:
        super().__init__()
        self.at, self.reads, self.optimisers, self._inside = None, [], optimisers, 0
        self.on_phase = on_phase or (lambda at: None)
        for name in self.METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(name, getattr(torch.Tensor, name)))
        real_next = BatchStream.next

        def host_side(stream):
            self._inside += 1
            try:
                return real_next(stream)
            finally:
                self._inside -= 1

        monkeypatch.setattr(BatchStream, "next", host_side)

    def _step_count(self, t) -> bool:
        return any(t is s.get("step") for opt in self.optimisers for s in opt.state.values())

    def _file(self, kind: str, t) -> None:
        if self._inside == 0 and self.at is not None and not self._step_count(t):
            self.reads.append((self.at, "model" if _in_transformers_masking() else kind))

    def _counted(self, name, method):
        def counted(t, *args, **kwargs):
            self._file(name, t)
            self._inside += 1  # .item() dispatches _local_scalar_dense too: one read, not two
            try:
                return method(t, *args, **kwargs)
            finally:
                self._inside -= 1

        return counted

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self._file("_local_scalar_dense", args[0])
        return func(*args, **(kwargs or {}))

    def enter(self, at) -> None:
        self.at = at
        self.on_phase(at)

    def count(self, phase, kind: str | None = None) -> int:
        return sum(at == phase and kind in (None, k) for at, k in self.reads)


def _in_transformers_masking() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith(os.path.join("transformers", "masking_utils.py")):
            return True
        frame = frame.f_back
    return False


def watch_phases(monkeypatch, reads: HostReads, optimisers: list) -> None:
    """File the reads of each phase under ("step", name, n) while step n runs and ("after", name, n)
    from its end to the next step's start (observation, logging, checkpoint); collect its optimisers."""
    real = pipeline_mod.run_phase

    def watched(**kwargs):
        name, step_fn = kwargs["name"], kwargs["step_fn"]
        optimisers.extend(o for o in kwargs["stateful"].values() if isinstance(o, torch.optim.Optimizer))

        def step(done):
            reads.enter(("step", name, done + 1))
            out = step_fn(done)
            reads.enter(("after", name, done + 1))
            return out

        try:
            with reads:  # the dispatch mode during the phase only: it slows every op down
                return real(**{**kwargs, "step_fn": step})
        finally:
            reads.enter(None)

    monkeypatch.setattr(pipeline_mod, "run_phase", watched)


@pytest.mark.slow
def test_search_and_retraining_steps_make_no_host_sync_between_logging_steps(bert_dir, tmp_path, monkeypatch):
    """12 search steps and 12 retraining steps with log_every 5: this library reads nothing during a
    step or after a step that does not log, and makes one transfer (.cpu()) after each logging step
    (5, 10, 12). The model's own reads: one per forward pass (3 on the search's beta steps 1, 5 and 9,
    forward difference; 1 on W's steps and on every retraining step)."""
    optimisers: list = []
    reads = HostReads(monkeypatch, optimisers)
    watch_phases(monkeypatch, reads, optimisers)
    run(bert_dir, tmp_path / "run", log_every=LOG_EVERY, **SHORT)
    assert len(optimisers) == 3  # W's and beta's in the search, retraining's: their step counts are known
    passes = {"search": [3, 1, 1, 1] * 3, "retrain": [1] * STEPS}
    for phase in ("search", "retrain"):
        steps = range(1, STEPS + 1)
        assert [
            reads.count(("step", phase, n)) - reads.count(("step", phase, n), "model") for n in steps
        ] == [0] * STEPS, reads.reads
        assert [reads.count(("step", phase, n), "model") for n in steps] == passes[phase]
        after = [reads.count(("after", phase, n)) for n in steps if n not in (5, 10, 12)]
        assert after == [0] * 9, reads.reads
        assert [reads.count(("after", phase, n), "cpu") for n in (5, 10, 12)] == [1, 1, 1], reads.reads


@pytest.mark.slow
def test_log_every_changes_when_the_search_is_read_not_what(bert_dir, tmp_path):
    """The same search logged every step and every 5 steps: the same records, ranks.json (ranks,
    alpha, trajectory, diagnostics) and metrics."""
    out = {n: run(bert_dir, tmp_path / str(n), log_every=n, **SHORT) for n in (1, LOG_EVERY)}
    files = {
        n: [json.loads((tmp_path / str(n) / f).read_text()) for f in ("alpha_history.json", "ranks.json")]
        for n in out
    }
    assert len(files[1][0]["history"]) == STEPS
    assert files[1] == files[LOG_EVERY]
    assert out[1]["eval"] == out[LOG_EVERY]["eval"] and out[1]["ranks"] == out[LOG_EVERY]["ranks"]


@pytest.mark.slow
def test_singular_values_from_the_grams_equal_the_qr_path_after_a_search(bert_dir, tmp_path):
    """What the tracker reads of the searched adapters, against rank_rules.spectrum (QR + SVD)."""
    overrides = {"model": str(bert_dir), "output_dir": str(tmp_path), **FAST, **SHORT}
    pipe = Pipeline(load_config(None, overrides))
    pipe.prepare()
    _, history, model = pipe.search()
    pipe.wait_for_figures()
    named = [(n, a) for n, a in autolora.adapters(model) if a.beta is not None]
    assert len(history) == STEPS and len(named) == 4
    for _, a in named:
        qr = spectrum(a.U.detach(), a.V.detach(), a.alpha().detach(), a.scaling)
        grams = spectrum_from_grams(*update_grams(a.U, a.V, a.alpha(), a.scaling))
        assert qr[-1] > 1e-3 * qr[0]  # trained: full rank, so every value is compared relative to itself
        torch.testing.assert_close(grams, qr, rtol=1e-9, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_search_and_retraining_steps_sync_only_at_logging_steps(bert_dir, tmp_path, monkeypatch):
    """On CUDA the driver checks too: torch.cuda.set_sync_debug_mode("error") from each step's start
    until a logging step's end, so a sync in a step, in the tracker's observation or in the loop
    raises. Eager attention: transformers' SDPA mask check syncs once per forward pass."""
    real_load = pipeline_mod.load_model
    monkeypatch.setattr(pipeline_mod, "load_model", lambda *a: real_load(*a[:4], True, *a[5:]))

    def strict_until_logging(at):
        logging = at is not None and at[0] == "after" and (at[2] % LOG_EVERY == 0 or at[2] == STEPS)
        torch.cuda.set_sync_debug_mode(0 if at is None or logging else "error")

    optimisers: list = []
    reads = HostReads(monkeypatch, optimisers, on_phase=strict_until_logging)
    watch_phases(monkeypatch, reads, optimisers)
    try:
        run(bert_dir, tmp_path / "run", log_every=LOG_EVERY, device="cuda", **SHORT)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    for phase in ("search", "retrain"):
        assert sum(reads.count(("step", phase, n)) for n in range(1, STEPS + 1)) == 0, reads.reads
        assert [reads.count(("after", phase, n), "cpu") for n in (5, 10, 12)] == [1, 1, 1], reads.reads
