"""What a search step and a retraining step read on the host: nothing between logging steps, one
transfer at each. Counted on the CPU (what would wait for a GPU) and, on CUDA, by the driver itself.

The steps are AutoLoraTrainer's two Trainer runs (the search, retraining); step n runs from the
drawing of its batches (Trainer.get_batch_samples) to the end of its optimizer step, and what follows
it (the callbacks' on_step_end, logging, checkpoint) until the next step's batches is "after" it.
"""

from __future__ import annotations

import json
import os
import traceback

import pytest
import torch
from pipeline_fixtures import FAST, cola, run, save_tiny_bert
from torch.utils._python_dispatch import TorchDispatchMode
from transformers.trainer_callback import CallbackHandler

import autolora
import autolora.pipeline as pipeline_mod
from autolora.config import load_config
from autolora.integrations.trainer import AutoLoraTrainer
from autolora.pipeline import build_trainer, prepare
from autolora.run_args import training_arguments
from autolora.tuner.rank_rules import spectrum, spectrum_from_grams, update_grams

STEPS, LOG_EVERY = 12, 5  # logging steps 5, 10 and 12 (the last); a checkpoint at the last step only
LOGGING = (5, 10, 12)
SHORT = {"max_search_steps": STEPS, "max_retrain_steps": STEPS, "checkpoint_every": 100, **cola()}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _source(frames: list) -> str | None:
    """Who made a read, from its stack; None for host work on host data, which is not counted.

    Not counted: BatchStream.next's reads and the Trainer's DataLoader's (torch.utils.data: the sampler's
    permutation and the collated batch live on the host until their copy to the device), and
    torch.optim's reads of an optimiser's step count (_get_value: a CPU tensor unless the optimiser is
    capturable or fused). Counted apart: "checkpoint" (the Trainer's _save_checkpoint, at checkpoint
    steps), "model" (transformers' masking_utils: SDPA skips the attention mask when nothing is padded,
    one `padding_mask.all()` per forward pass, _ignore_bidirectional_mask_sdpa; eager attention makes
    none), "trainer" (transformers' trainer.py itself: the Trainer's loop); the rest is "autolora".
    """
    for f in frames:
        if os.path.join("torch", "utils", "data", "") in f.filename:
            return None
        if f.name == "next" and f.filename.endswith(os.path.join("autolora", "train", "stream.py")):
            return None
        if f.name == "_get_value" and f.filename.endswith(os.path.join("torch", "optim", "optimizer.py")):
            return None
    if any(f.name == "_save_checkpoint" for f in frames):
        return "checkpoint"
    inner = next((f.filename for f in reversed(frames) if "torch" not in f.filename.split(os.sep)), "")
    if inner.endswith(os.path.join("transformers", "masking_utils.py")):
        return "model"
    if inner.endswith(os.path.join("transformers", "trainer.py")):
        return "trainer"
    return "autolora"


class HostReads(TorchDispatchMode):
    """Records what waits for the device on a GPU: aten._local_scalar_dense (what .item(), float(),
    int() and bool() of a tensor dispatch) and the Tensor methods that copy to the host (cpu, tolist,
    numpy, item: patched, since on the CPU .cpu() and .tolist() of a CPU tensor never reach the
    dispatcher). Each read is filed as (at, kind, source): `at` the phase and step it happened in (set
    by watch_phases), kind the method or op, source as `_source` says.

    Args:
        monkeypatch: pytest's, to patch the Tensor methods for the test's time.
        on_phase: called with each new `at` (the CUDA test switches the driver's sync check with it).
        stacks: keep each read's stack too (a fourth field), to see where it comes from.
    """

    METHODS = ("cpu", "tolist", "numpy", "item")

    def __init__(self, monkeypatch, on_phase=None, stacks: bool = False) -> None:
        super().__init__()
        self.at, self.reads, self._inside = None, [], 0
        self.on_phase, self.stacks = on_phase or (lambda at: None), stacks
        for name in self.METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(name, getattr(torch.Tensor, name)))

    def _file(self, kind: str) -> None:
        if self._inside or self.at is None:
            return
        frames = traceback.extract_stack()[:-2]
        source = _source(frames)
        if source is not None:
            self.reads.append((self.at, kind, source, traceback.format_list(frames) if self.stacks else None))

    def _counted(self, name, method):
        def counted(t, *args, **kwargs):
            self._file(name)
            self._inside += 1  # .item() dispatches _local_scalar_dense too: one read, not two
            try:
                return method(t, *args, **kwargs)
            finally:
                self._inside -= 1

        return counted

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self._file("_local_scalar_dense")
        return func(*args, **(kwargs or {}))

    def enter(self, at) -> None:
        self.at = at
        self.on_phase(at)

    def count(self, at, kind: str | None = None, source: str | None = None) -> int:
        return sum(a == at and kind in (None, k) and source in (None, s) for a, k, s, _ in self.reads)

    def of(self, at) -> list[tuple[str, str]]:
        """(kind, source) of the reads at `at`, in order."""
        return [(k, s) for a, k, s, _ in self.reads if a == at]


def watch_phases(monkeypatch, reads: HostReads) -> None:
    """File the reads of each Trainer run of AutoLoraTrainer.train under ("step", phase, n) from the
    drawing of step n's batches (get_batch_samples) to the end of its optimizer step, ("after", phase,
    n) from the callbacks' on_step_end (the search's records, logging, checkpoint) to the next step's
    batches, and ("end", phase) from the Trainer's _finalize_training to the run's end."""
    names = ("_inner_training_loop", "get_batch_samples", "_finalize_training")
    real = {n: getattr(AutoLoraTrainer, n) for n in names}
    real_step_end, running = CallbackHandler.on_step_end, []

    def loop(self, *args, **kwargs):
        running.append(self)
        try:
            with reads:  # the dispatch mode during each run only: it slows every op down
                return real["_inner_training_loop"](self, *args, **kwargs)
        finally:
            reads.enter(None)
            running.pop()

    def batches(self, *args, **kwargs):
        reads.enter(("step", self.phase, self.state.global_step + 1))
        return real["get_batch_samples"](self, *args, **kwargs)

    def step_end(handler, args, state, control):
        if running:
            reads.enter(("after", running[-1].phase, state.global_step))
        return real_step_end(handler, args, state, control)

    def finalize(self, *args, **kwargs):
        reads.enter(("end", self.phase))
        return real["_finalize_training"](self, *args, **kwargs)

    monkeypatch.setattr(AutoLoraTrainer, "_inner_training_loop", loop)
    monkeypatch.setattr(AutoLoraTrainer, "get_batch_samples", batches)
    monkeypatch.setattr(AutoLoraTrainer, "_finalize_training", finalize)
    monkeypatch.setattr(CallbackHandler, "on_step_end", step_end)


@pytest.mark.slow
def test_search_and_retraining_steps_make_no_host_sync_between_logging_steps(bert_dir, tmp_path, monkeypatch):
    """12 search steps and 12 retraining steps with log_every 5: nothing is read during a step or after a
    step that does not log; after a search logging step (5, 10, 12) this library reads once, one
    transfer (.cpu(), SearchRecorder.flush), before anything else. Counted apart:
      model       one read per forward pass (3 on the search's beta steps 1, 5 and 9, forward
                  difference; 1 on W's steps and on every retraining step);
      trainer     at its own logging steps (5 and 10: it does not log at the last step), the
                  accumulated loss (transformers/trainer.py _maybe_log_save_evaluate:
                  `nested_gather(tr_loss, ...).mean().item()`) and then the gradient norm
                  (`grad_norm.item()`), the first of which waits for the device; once after the last
                  step, the run's train_loss (_finalize_training: `self._tr_loss.item()`);
      checkpoint  the checkpoint at the last step (the adapter's tensors copied to the host)."""
    reads = HostReads(monkeypatch)
    watch_phases(monkeypatch, reads)
    run(bert_dir, tmp_path / "run", log_every=LOG_EVERY, **SHORT)
    passes = {"search": [3, 1, 1, 1] * 3, "retrain": [1] * STEPS}
    steps = range(1, STEPS + 1)
    everything = [r[:3] for r in reads.reads]
    for phase in ("search", "retrain"):
        model = [reads.count(("step", phase, n), source="model") for n in steps]
        assert [reads.count(("step", phase, n)) for n in steps] == model, everything
        assert model == passes[phase]
        after = [reads.count(("after", phase, n)) for n in steps if n not in LOGGING]
        assert after == [0] * (STEPS - len(LOGGING)), everything
        ours = [reads.count(("after", phase, n), "cpu", "autolora") for n in LOGGING]
        assert ours == ([1, 1, 1] if phase == "search" else [0, 0, 0]), everything
        for n in LOGGING:  # the library's first read is its transfer; what follows reads what it brought
            first = next((r for r in reads.of(("after", phase, n)) if r[1] == "autolora"), None)
            assert first == (("cpu", "autolora") if phase == "search" else None), everything
        trainer = [reads.of(("after", phase, n)).count(("item", "trainer")) for n in LOGGING]
        assert trainer == [2, 2, 0], everything
        assert reads.of(("end", phase)) == [("item", "trainer")], everything
        checkpoint = [(a, s) for a, _, s in everything if s == "checkpoint" and a[1] == phase]
        assert checkpoint and {a for a, _ in checkpoint} == {("after", phase, STEPS)}, everything


def test_the_trainers_batches_reach_a_gpu_without_a_sync(tmp_path):
    """A blocking host-to-device copy waits for the device's queue (torch: memcpy_and_sync); the
    Trainer's DataLoader copies each batch to a GPU from pinned memory, non-blocking. On the CPU
    neither applies."""
    config = load_config(None, {"model": "x", "output_dir": str(tmp_path), **cola()})
    for kind, expected in (("cuda", True), ("cpu", False)):
        args = training_arguments(config, kind, retrain=False, steps=3)
        assert args.dataloader_pin_memory is expected
        assert args.accelerator_config.non_blocking is expected


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


class Searched(Exception):
    """Raised where AutoLoraTrainer would switch to retraining: the searched model stays as it is."""


@pytest.mark.slow
def test_singular_values_from_the_grams_equal_the_qr_path_after_a_search(bert_dir, tmp_path, monkeypatch):
    """What the tracker reads of the searched adapters, against rank_rules.spectrum (QR + SVD)."""
    config = load_config(None, {"model": str(bert_dir), "output_dir": str(tmp_path), **FAST, **SHORT})
    prep = prepare(config)
    trainer = build_trainer(config, prep, [])

    def searched(self, out):
        raise Searched

    monkeypatch.setattr(AutoLoraTrainer, "_switch", searched)
    with pytest.raises(Searched):
        trainer.train()
    named = [(n, a) for n, a in autolora.adapters(trainer.model) if a.beta is not None]
    assert trainer.state.global_step == STEPS and len(named) == 4
    for _, a in named:
        qr = spectrum(a.U.detach(), a.V.detach(), a.alpha().detach(), a.scaling)
        grams = spectrum_from_grams(*update_grams(a.U, a.V, a.alpha(), a.scaling))
        assert qr[-1] > 1e-3 * qr[0]  # trained: full rank, so every value is compared relative to itself
        torch.testing.assert_close(grams, qr, rtol=1e-9, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_search_and_retraining_steps_sync_only_at_logging_steps(bert_dir, tmp_path, monkeypatch):
    """On CUDA the driver checks too: torch.cuda.set_sync_debug_mode("error") from each step's start
    (its batches' copy to the device included) until a logging step's end, so a sync in a step, in the
    tracker's observation or in the Trainer's loop raises. Eager attention: transformers' SDPA mask
    check syncs once per forward pass."""
    real_load = pipeline_mod.load_model
    monkeypatch.setattr(pipeline_mod, "load_model", lambda *a: real_load(*a[:4], True, *a[5:]))

    def strict_until_logging(at):
        logging = at is not None and at[0] == "after" and at[2] in LOGGING
        torch.cuda.set_sync_debug_mode(0 if at is None or at[0] == "end" or logging else "error")

    reads = HostReads(monkeypatch, on_phase=strict_until_logging)
    watch_phases(monkeypatch, reads)
    try:
        run(bert_dir, tmp_path / "run", log_every=LOG_EVERY, device="cuda", **SHORT)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    everything = [r[:3] for r in reads.reads]
    for phase in ("search", "retrain"):
        assert sum(reads.count(("step", phase, n)) for n in range(1, STEPS + 1)) == 0, everything
        ours = [reads.count(("after", phase, n), "cpu", "autolora") for n in LOGGING]
        assert ours == ([1, 1, 1] if phase == "search" else [0, 0, 0]), everything
