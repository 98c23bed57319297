"""The worker of engine_step_time.py: one engine's `autolora run` in this process, each step timed
from outside the engine's code (what a step's boundaries are, per engine: engine_step_time.py's
docstring). The engine is whichever autolora PYTHONPATH names."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo-sst2.yaml"
PHASES = ("search", "retrain")


# -- the worker: one engine's run, timed from outside its code ---------------------------------------
def _blank() -> dict:
    return {k: [] for k in ("start", "end", "cpu_start", "cpu_end", "core", "core_cpu", "kind", "data")}


class _Clock:
    """Per-step timestamps of both phases, filled by the wrappers below."""

    def __init__(self) -> None:
        self.steps = {p: _blank() for p in PHASES}
        self.wall: dict[str, float] = {}
        self.marks: dict[str, dict[str, float]] = {p: {} for p in PHASES}  # phase boundaries
        self.data = 0.0  # the current step's seconds in the data's code
        self.core: tuple[float, float, str] | None = None  # the search step's BilevelSearch call

    def begin(self, phase: str) -> None:
        s = self.steps[phase]
        s["start"].append(time.perf_counter())
        s["cpu_start"].append(time.process_time())
        self.data, self.core = 0.0, None

    def end(self, phase: str) -> None:
        now, cpu, s = time.perf_counter(), time.process_time(), self.steps[phase]
        s["end"].append(now)
        s["cpu_end"].append(cpu)
        s["data"].append(self.data)
        if phase == "search":
            s["core"].append(self.core[0] if self.core else None)
            s["core_cpu"].append(self.core[1] if self.core else None)
            s["kind"].append(self.core[2] if self.core else None)
        else:
            s["core"].append(now - s["start"][-1] - self.data)
            s["core_cpu"].append(None)
            s["kind"].append("retrain")


def _timed(fn, add):
    """fn wrapped so that its wall and CPU seconds go to add(wall, cpu)."""

    def wrapper(*args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        add(time.perf_counter() - t, time.process_time() - c)
        return out

    return wrapper


def _time_search_and_data(clock: _Clock, stream_cls) -> None:
    from autolora.search.bilevel import BilevelSearch

    for name, kind in (("step", "bilevel"), ("inner_step", "inner")):
        orig = getattr(BilevelSearch, name)

        def add(sec: float, cpu: float, kind: str = kind) -> None:
            clock.core = (sec, cpu, kind)

        setattr(BilevelSearch, name, _timed(orig, add))

    def add_data(sec: float, cpu: float) -> None:
        clock.data += sec

    stream_cls.next = _timed(stream_cls.next, add_data)


def _patch_old(clock: _Clock, finish) -> None:
    import autolora.pipeline as pipeline
    from autolora.train.loop import BatchStream

    _time_search_and_data(clock, BatchStream)
    orig_run_phase = pipeline.run_phase

    def run_phase(*, name, step_fn, observe=None, **kwargs):
        def step(done):
            clock.begin(name)
            out = step_fn(done)
            if observe is None:
                clock.end(name)
            return out

        def observed():
            reading = observe()
            clock.end(name)
            return reading

        t = clock.marks[name]["entry"] = time.perf_counter()
        history = orig_run_phase(name=name, step_fn=step, observe=observed if observe else None, **kwargs)
        clock.marks[name]["exit"] = time.perf_counter()
        clock.wall[name] = clock.marks[name]["exit"] - t
        if name == "retrain":
            finish()
        return history

    pipeline.run_phase = run_phase


def _patch_new(clock: _Clock, finish) -> None:
    from transformers import Trainer, TrainerCallback

    import autolora.pipeline as pipeline
    from autolora.integrations.trainer import AutoLoraTrainer
    from autolora.train.stream import BatchStream

    _time_search_and_data(clock, BatchStream)

    class StepEnds(TrainerCallback):
        """First in the callback list: each step's end; `tag` marks the train begin/end callbacks."""

        def __init__(self, trainer, tag: str) -> None:
            self.trainer, self.tag = trainer, tag

        def on_train_begin(self, args, state, control, **kwargs):
            clock.marks[self.trainer.phase][f"train_begin_{self.tag}"] = time.perf_counter()
            return control

        def on_train_end(self, args, state, control, **kwargs):
            clock.marks[self.trainer.phase][f"train_end_{self.tag}"] = time.perf_counter()
            return control

        def on_step_end(self, args, state, control, **kwargs):
            if self.tag == "first":
                clock.end(self.trainer.phase)
            return control

    orig_batches = AutoLoraTrainer.get_batch_samples

    def get_batch_samples(self, *args, **kwargs):
        clock.begin(self.phase)
        t = time.perf_counter()
        out = orig_batches(self, *args, **kwargs)
        clock.data += time.perf_counter() - t
        return out

    AutoLoraTrainer.get_batch_samples = get_batch_samples
    orig_train = Trainer.train

    def train(self, *args, **kwargs):
        phase = self.phase
        t = clock.marks[phase]["entry"] = time.perf_counter()
        out = orig_train(self, *args, **kwargs)
        clock.marks[phase]["exit"] = time.perf_counter()
        clock.wall[phase] = clock.marks[phase]["exit"] - t
        if phase == "retrain":
            finish()
        return out

    Trainer.train = train
    orig_build = pipeline.build_trainer

    def build_trainer(*args, **kwargs):
        trainer = orig_build(*args, **kwargs)
        trainer.callback_handler.callbacks.insert(0, StepEnds(trainer, "first"))  # before the search's flush
        trainer.add_callback(StepEnds(trainer, "last"))  # after the run's own callbacks (its figures)
        return trainer

    pipeline.build_trainer = build_trainer


def worker(engine: str, out_json: Path, run_dir: Path, search_steps: int, retrain_steps: int) -> None:
    """One engine's `run_pipeline` on the demo's config; its timestamps to out_json, and the process
    exits as soon as retraining ends (evaluation and export are not timed).

    Args:
        engine: "old" (wraps run_phase) or "new" (wraps the Trainer); it must match the autolora
            that PYTHONPATH names.
        out_json: where the report goes.
        run_dir: the run's output folder (new, empty).
        search_steps, retrain_steps: max_search_steps and max_retrain_steps.

    Raises:
        RuntimeError: run_pipeline returned without its retraining phase ending.
    """
    import torch

    import autolora.pipeline as pipeline
    from autolora.config import load_config

    clock = _Clock()

    def finish() -> None:
        ranks = json.loads((run_dir / "ranks.json").read_text())["ranks"]  # retraining's size
        report = {"engine": engine, "steps": clock.steps, "wall": clock.wall, "marks": clock.marks,
                  "ranks": ranks, "threads": torch.get_num_threads()}  # fmt: skip
        out_json.write_text(json.dumps(report))
        sys.stdout.flush()
        os._exit(0)  # evaluation and export are not timed

    (_patch_old if engine == "old" else _patch_new)(clock, finish)
    pipeline.spare_core = lambda device: False  # the figures drawn in the foreground, between phases
    overrides = {
        "output_dir": str(run_dir),
        "max_search_steps": search_steps,
        "max_retrain_steps": retrain_steps,
        "progress": False,
        "checkpoint_every": 1_000_000,
    }
    pipeline.run_pipeline(load_config(CONFIG, overrides))
    raise RuntimeError(f"{engine}: run_pipeline returned without its retraining phase ending")
