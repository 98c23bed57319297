"""What `autolora run` adds to the trainer's two runs, as Trainer callbacks: the phases' seconds, the
eval curve of retraining (--eval-every) and the search's figures, drawn while retraining runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from autolora.io.plots import RunFigures

CURVE_PREFIX = "curve/"  # the eval curve's entries in the Trainer's log history (kept in checkpoints)


class PhaseClock(TrainerCallback):
    """The wall seconds of the search (setup included) and of retraining, ended at each run's end."""

    def __init__(self, t0: float) -> None:
        self.t0, self.ends = t0, []

    def on_train_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())
        return control

    def seconds(self, searched: bool) -> dict[str, float]:
        """{"search": s, "retrain": s} of this process; a phase a resume found finished took 0 s."""
        ends = [self.t0] * (1 + searched - len(self.ends)) + self.ends
        if not searched:  # retraining alone (given ranks): no search
            return {"search": 0.0, "retrain": round(ends[-1] - self.t0, 2)}
        return {"search": round(ends[0] - self.t0, 2), "retrain": round(ends[1] - ends[0], 2)}


class EvalCurve(TrainerCallback):
    """Every `every` retraining steps, the eval metrics on the main process, logged (so the Trainer's
    log history, which its checkpoints keep, holds the curve across a resume, and report_to shows it).

    Args:
        every: the steps between scores; None: no curve.
        score: model -> metrics.
        every_process: score in every process (a sharded base: each forward pass gathers the shards
            from all of them); the main one logs.
    """

    def __init__(self, every: int | None, score: Callable, every_process: bool = False) -> None:
        self.every, self.score, self.every_process = every, score, every_process
        self.trainer = None  # set once the trainer exists
        self.seconds = 0.0

    def on_step_end(self, args, state, control, **kwargs):
        t = self.trainer
        step = state.global_step
        if not self.every or t.phase != "retrain" or step % self.every or step >= state.max_steps:
            return control
        if t.is_world_process_zero() or self.every_process:
            start = time.perf_counter()
            metrics = self.score(t.model)
            t.model.train()
            self.seconds += time.perf_counter() - start
            if t.is_world_process_zero():
                t.log({CURVE_PREFIX + k: v for k, v in metrics.items() if isinstance(v, int | float)})
        return control

    def records(self) -> list[dict]:
        """[{"step": n, metric: value, ...}] of the retraining run, from its log history."""
        out = []
        for entry in self.trainer.state.log_history:
            values = {k[len(CURVE_PREFIX) :]: v for k, v in entry.items() if k.startswith(CURVE_PREFIX)}
            if values:
                out.append({"step": entry["step"], **values})
        return out


class RunFiguresAtSwitch(TrainerCallback):
    """The search's figures (from ranks.json and alpha_history.json), started when retraining begins."""

    def __init__(self, out: Path, background: bool) -> None:
        self.out, self.background = out, background
        self.trainer = None  # set once the trainer exists
        self._figures: RunFigures | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        t = self.trainer
        if t.phase == "retrain" and t.search_result is not None and t.is_world_process_zero():
            self._figures = RunFigures(self.out, background=self.background)
        return control

    def wait(self) -> None:
        """Block until the figures are written; raises if drawing them failed."""
        if self._figures is not None:
            figures, self._figures = self._figures, None
            figures.wait()
