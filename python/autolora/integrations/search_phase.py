"""What AutoLoraTrainer keeps of its search, step by step: the records, their NaN check and the stop
rule (autolora.search.tracker), read on the host at logging steps only.

After each search step the trainer hands its losses (0-d tensors left on the device) to `push`; at
the step's end, once the Trainer's optimizer has stepped W, `on_step_end` takes the tracker's readings
of the adapters (alpha, and the Grams of each update for the spectral rules), still on the device.
At the Trainer's logging and saving steps, and at the last step, `on_step_end` brings everything
pending to the host in one transfer, appends one record per step to the history (complete up to any
checkpoint: a checkpoint step reads too), raises NonFiniteLoss at the first non-finite loss, and
ends the search when the stop rule says it has settled (stop_when_stable).
"""

from __future__ import annotations

import math

import torch
from transformers import TrainerCallback

from autolora.search.diagnostics import json_safe
from autolora.search.tracker import SearchTracker
from autolora.train.host import NonFiniteLoss, to_host
from autolora.train.stream import BatchStream
from autolora.tuner.retraining import SearchResult
from autolora.tuner.selection import update_norms


class SearchRecorder(TrainerCallback):
    """The search's history, filled at logging steps.

    Args:
        tracker: reads each step's records and the diagnostics.
        is_search: returns whether the trainer is searching now (the callback is idle afterwards).
    """

    def __init__(self, tracker: SearchTracker, is_search) -> None:
        self.tracker, self.is_search = tracker, is_search
        self.history: list[dict] = []
        self._pending: list[tuple[int, dict[str, torch.Tensor], torch.Tensor | None]] = []

    def push(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        """Step `step`'s losses, left on the device; its readings are taken at its end (on_step_end),
        once the Trainer's optimizer has stepped W."""
        self._pending.append((step, losses, None))

    def _observe(self) -> None:
        if self._pending and self._pending[-1][2] is None:
            step, losses, _ = self._pending[-1]
            self._pending[-1] = (step, losses, self.tracker.observe())

    def flush(self) -> None:
        """The pending steps' records, from one host transfer.

        Raises:
            NonFiniteLoss: at the first step whose loss is NaN or inf.
        """
        if not self._pending:
            return
        values = [v for _, losses, _ in self._pending for v in losses.values()]
        host = to_host(values + [r for _, _, r in self._pending])
        losses_host, readings = iter(host[: len(values)]), iter(host[len(values) :])
        pending, self._pending = self._pending, []
        for step, losses, _ in pending:
            read = {k: float(next(losses_host)) for k in losses}
            bad = {k: v for k, v in read.items() if not math.isfinite(v)}
            if bad:
                raise NonFiniteLoss(
                    f"search: non-finite loss {bad} at step {step}; the checkpoints before it are kept"
                )
            self.history.append(self.tracker.record(step, read, self.history, next(readings)))

    def on_step_end(self, args, state, control, **kwargs):
        if not self.is_search():
            return control
        self._observe()  # after W's update: the step's state, as the records say
        last = state.global_step >= state.max_steps
        if control.should_log or control.should_save or control.should_training_stop or last:
            self.flush()
            if not last and self.tracker.should_stop(self.history):
                control.should_training_stop = True
        return control

    def result(self, model: torch.nn.Module) -> SearchResult:
        """The finished search's ranks and everything retraining and ranks.json read from it."""
        self.flush()
        tracker, history = self.tracker, self.history
        policy = tracker.policy
        keep = tracker.keep_weights(history)
        if keep is None and policy.total is not None:  # rule alpha under a budget: the top by alpha
            keep = {n: a.alpha().detach() for n, a in tracker.named}
        return SearchResult(
            ranks=tracker.ranks(history),
            rule=tracker.rule,
            steps=history[-1]["step"],
            rule_ranks=history[-1].get("rule_ranks"),
            rank_total=policy.total,
            update_norms=update_norms(model) if policy.share == "norm" else None,
            keep_weights=keep,
            alpha={n: [float(v) for v in a.alpha().detach().cpu()] for n, a in tracker.named},
            diagnostics=json_safe(tracker.diagnose(history)),
            history=history,
        )


def search_streams(args, collate, d_tr, d_val, seed: int) -> tuple[BatchStream, BatchStream]:
    """The search's seeded streams over D_tr (seed) and D_val (seed + 1): each step, this rank's
    `gradient_accumulation_steps` micro-batches of per_device_train_batch_size of one global batch.

    Args:
        args: the search's TrainingArguments.
        collate: the Trainer's data collator.
        d_tr: W's half of the training data.
        d_val: beta's half.
        seed: the split's seed.

    Returns:
        (the D_tr stream, the D_val stream).
    """

    def stream(dataset, seed: int) -> BatchStream:
        return BatchStream(
            dataset,
            args.per_device_train_batch_size,
            collate,
            seed,
            args.device,
            args.process_index,
            args.world_size,
            args.gradient_accumulation_steps,
        )

    return stream(d_tr, seed), stream(d_val, seed + 1)


def ranks_report(result: SearchResult, tracker: SearchTracker, k: dict[str, int], share: str) -> dict:
    """ranks.json: the ranks, the rule's own, the budget, alpha, the trajectory and the diagnostics."""
    return {
        "ranks": result.ranks,
        "k": k,
        "rule": result.rule,
        "search_steps": result.steps,
        "alpha": result.alpha,
        "rank_share": share,
        "rank_total": result.rank_total,
        "ranks_selected": result.rule_ranks,
        "update_norms": result.update_norms,
        "rank_trajectory": tracker.rank_trajectory(result.history),
        "diagnostics": result.diagnostics,
    }
