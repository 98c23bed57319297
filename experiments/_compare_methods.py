"""The methods bench_compare.py runs, each under one training budget (experiments only, not the package).

Every method reads its data through autolora.data (load_task, split_train_val, the task's collate) and
is scored by autolora.eval.evaluate, so the comparison differs only in what is trained and how.

Budget: `steps` optimiser updates of the model's weights, each on one batch of `batch_size` training
examples drawn from the same (sub-sampled) training set. The baselines (full fine-tuning, LoRA r=4,
AdaLoRA, the LoRA grid) train on transformers.Trainer (_compare_trainer.py). AutoLoRA's variants run
through the package's public entry point, autolora.pipeline.run_pipeline, and are read from the
summary it returns; its search and retraining both count: the search takes round(steps *
search_fraction) bilevel iterations (each one AdamW update of W on a D_tr batch, plus one Adam update
of beta on a D_val batch), retraining the rest. autolora-random is that search (same seed, same
ranks), then a seeded random allocation of the same total, retrained from fresh adapters (the
pipeline's given-ranks run).

A method's wall time covers tokenizer + data loading, model construction and all training (search
included); the final evaluation is timed separately. With eval_points P, every method also scores the
eval split every steps // P steps (AutoLoRA: every steps // P retraining steps, recorded at their
budget step, search steps + n), the curve a reader checks convergence by; that scoring is timed apart
and kept out of the wall time, and changes no training (tests/test_bench_compare_methods.py).
run(..., work) makes a run resumable (the baselines through the Trainer's checkpoints, AutoLoRA
through the pipeline's own); a cut run resumes to the uncut run's result (the same tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _compare_trainer import AdaLoraAllocation, EvalCurve, adalora_final, last_checkpoint, peft_model, train

import autolora
from autolora.config import PipelineConfig, load_config
from autolora.data import DataConfig, TaskData, load_task, split_train_val
from autolora.eval.evaluation import evaluate
from autolora.io.atomic import atomic_write_json
from autolora.models import load_model, load_tokenizer
from autolora.pipeline import run_pipeline
from autolora.run_folder import PHASE_DIRS
from autolora.tuner.ranks import random_ranks

METHODS = (
    "full-ft",
    "lora-r4",
    "adalora",
    "autolora",
    "autolora-first-order",
    "autolora-sigmoid",
    "autolora-w-alone",
    "autolora-random",
)
AUTOLORA_VARIANTS = {  # method -> (hypergradient, selection)
    "autolora": ("second-order", "softmax"),
    "autolora-first-order": ("first-order", "softmax"),  # the paper's eta = 0 ablation
    "autolora-sigmoid": ("second-order", "sigmoid"),  # the paper's element-wise sigmoid ablation
    "autolora-w-alone": ("none", "softmax"),  # not the paper's: beta never moves (docs/METHOD.md 6.3)
    # the control: autolora's search (same seed, same ranks), then a seeded random allocation of the
    # same total, retrained from fresh adapters (the pipeline's given-ranks run)
    "autolora-random": ("second-order", "softmax"),
}
NO_CHECKPOINTS = 10**9  # checkpoint_every when a run keeps no work directory


@dataclass
class RunSpec:
    """One method on one dataset; everything fixed up front (nothing is chosen on the eval split)."""

    model: str
    data: dict  # DataConfig fields
    method: str
    steps: int
    batch_size: int = 16
    search_fraction: float = 0.25
    lr_full: float = 5e-5
    lr_lora: float = 5e-4  # LoRA, AdaLoRA, AutoLoRA's W (search and retrain); xi = this too
    # the lr along training (options.RETRAIN_SCHEDULES): constant, or linear to 0 over each baseline's
    # steps and over AutoLoRA's retraining (the pipeline's retrain_schedule; its search stays constant)
    schedule: str = "constant"
    lr_beta: float = PipelineConfig().lr_beta  # the pipeline's default (the paper: 1e-3)
    rank_rule: str = PipelineConfig().rank_rule  # the pipeline's default (the paper: alpha)
    beta_every: int = PipelineConfig().beta_every  # the pipeline's default (the paper: 1)
    k: int = 8  # AutoLoRA's maximum rank (the paper's k)
    lora_r: int = 4
    # Trained alongside the adapters by every adapter method, next to the new head. MiniLM's [CLS]
    # pooler was never trained (all-MiniLM-L6-v2 is a mean-pooling sentence model), and a new classifier
    # on that frozen pooler stays at the majority class for thousands of steps on CoLA.
    extra_trainable: list[str] = field(default_factory=lambda: ["pooler"])
    pooling: str = "model"  # or "mean": the head reads a masked mean (autolora.tuner.pooling), every method
    # AutoLoRA's retraining starts from the searched components (docs/METHOD.md section 7)
    retrain_init: str = "warm"
    lora_alpha: float = 16.0
    adalora_init_r: int = 6  # 1.5 x target, the AdaLoRA paper's ratio (12 -> 8)
    adalora_target_r: int = 4  # average final rank = LoRA r=4's parameter count
    eval_batch_size: int = 64
    device: str = "cpu"
    grid: list[list[int]] = field(default_factory=list)  # method "lora-grid": (r_q, r_v) per config
    grid_val_samples: int | None = None  # the grid scores on this many D_val examples (None: all)
    eval_points: int = 0  # also score the eval split every steps // eval_points steps (0: at the end only)

    @property
    def search_steps(self) -> int:
        return max(1, round(self.steps * self.search_fraction))

    @property
    def retrain_steps(self) -> int:
        return max(1, self.steps - self.search_steps)

    @property
    def eval_every(self) -> int | None:
        return max(1, self.steps // self.eval_points) if self.eval_points else None


def load_data(spec: RunSpec) -> tuple[object, TaskData]:
    tokenizer = load_tokenizer(spec.model)
    return tokenizer, load_task(DataConfig(**spec.data), tokenizer)


def _memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _memory_peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _trainer_args(spec: RunSpec, seed: int, lr: float, save_every: int | None) -> dict:
    return dict(steps=spec.steps, batch_size=spec.batch_size, lr=lr, schedule=spec.schedule, seed=seed,
                device=spec.device, save_every=save_every)  # fmt: skip


def run_baseline(
    spec: RunSpec, seed: int, work: Path | None = None, every_ckpt: int = NO_CHECKPOINTS
) -> dict:
    """full-ft, lora-r4 or adalora on transformers.Trainer: spec.steps updates on the whole training
    set (from work's newest checkpoint when it holds one, checkpointing every every_ckpt steps)."""
    device = torch.device(spec.device)
    _memory_reset(device)
    t0 = time.perf_counter()
    tokenizer, task = load_data(spec)
    torch.manual_seed(seed)  # the new classifier's initialisation
    model, new_modules = load_model(spec.model, task.task, task.num_labels, tokenizer, pooling=spec.pooling)
    lr = spec.lr_full
    if spec.method != "full-ft":
        model = peft_model(spec, model, new_modules, "adalora" if spec.method == "adalora" else "lora", None)
        lr = spec.lr_lora
    model.to(device)
    trainable = autolora.count_trainable(model)
    checkpoints = work / "checkpoints" if work is not None else None
    needs = (AdaLoraAllocation.FILE,) if spec.method == "adalora" else ()
    resume = last_checkpoint(checkpoints, needs)
    callbacks = [AdaLoraAllocation(model, resume)] if spec.method == "adalora" else []
    curve = None
    if spec.eval_every:
        curve = EvalCurve(task, spec.eval_every, spec.steps, spec.eval_batch_size, device)
        callbacks.append(curve)
    args = _trainer_args(spec, seed, lr, every_ckpt if work is not None else None)
    loss, history = train(model, task.train, task.collate, args, callbacks, checkpoints, resume)
    t_train = time.perf_counter() - t0 - (curve.seconds if curve else 0.0)  # this process's curve share
    extra = {"adalora": adalora_final(model)} if spec.method == "adalora" else {}
    t1 = time.perf_counter()
    metrics = evaluate(model, task, spec.eval_batch_size, device)
    curve_out = {}
    if curve:  # every process's points: they resume with the Trainer's history
        points = [r for r in history if "curve" in r]
        curve_out = {"eval_curve": [*({"step": r["step"], **r["curve"]} for r in points),
                                    {"step": spec.steps, **metrics}],
                     "curve_eval_seconds": sum(r["curve_seconds"] for r in points)}  # fmt: skip
    return {
        "seed": seed,
        "metric": task.metric,
        "score": metrics[task.metric],
        "eval": metrics,
        **curve_out,
        "final_train_loss": loss,
        "trainable_parameters": trainable,
        "train_seconds": t_train,
        "resumed": resume is not None,
        "eval_seconds": time.perf_counter() - t1,
        "gpu_peak_mb": _memory_peak(device),
        **extra,
    }


def pipeline_config(spec: RunSpec, seed: int, out: str, every_ckpt: int, **changes) -> PipelineConfig:
    """The AutoLoRA variant's options for autolora.pipeline.run_pipeline (`changes` win): its budget
    split into max_search_steps and max_retrain_steps, the curve every eval_every retraining steps,
    resuming from out's checkpoints when it holds any."""
    hypergradient, selection = AUTOLORA_VARIANTS[spec.method]
    overrides = dict(
        model=spec.model, pooling=spec.pooling, output_dir=out, seed=seed, device=spec.device, k=spec.k,
        lora_alpha=spec.lora_alpha, selection=selection, trainable=["@head", *spec.extra_trainable],
        retrain_init=spec.retrain_init, retrain_schedule=spec.schedule, hypergradient=hypergradient,
        lr_w=spec.lr_lora, lr_beta=spec.lr_beta, rank_rule=spec.rank_rule,
        rank_budget=None,  # the studies retrain the rule's own ranks (the totals it selects)
        beta_every=spec.beta_every, batch_size=spec.batch_size,
        search_epochs=1e6, max_search_steps=spec.search_steps,  # the step caps bind
        retrain_epochs=1e6, max_retrain_steps=spec.retrain_steps,
        eval_batch_size=spec.eval_batch_size,
        eval_every=spec.eval_every,  # counted in retraining steps: budget step = search_steps + n
        checkpoint_every=every_ckpt,  # without a work directory: each phase's final one, as a user gets
        resume=True, progress=False,
    )  # fmt: skip
    data = {f"data.{k}": v for k, v in spec.data.items()}
    return load_config(None, {**overrides, **data, **changes})


def _output(work: Path | None, name: str):
    """The pipeline's output_dir: work/name, kept (its checkpoints resume a cut run), or a temporary one."""
    if work is not None:
        return contextlib.nullcontext(str(work / name))
    return tempfile.TemporaryDirectory(prefix="bench_autolora_")


def _has_checkpoints(out: str) -> bool:
    """Whether the pipeline's output_dir holds a phase's checkpoints (search/ or retrain/)."""
    return any((Path(out) / phase).is_dir() and any((Path(out) / phase).iterdir()) for phase in PHASE_DIRS)


def _searched(spec: RunSpec, seed: int, work: Path | None, every_ckpt: int) -> tuple[dict, bool]:
    """autolora-random's search: the autolora run of this seed (the same search) with one retraining
    step; its summary (metrics.json, read back when a cut run had finished it) and whether it resumed."""
    with _output(work, "search") as out:
        done = Path(out) / "metrics.json"
        if done.exists():
            return json.loads(done.read_text()), True
        resumed = _has_checkpoints(out)
        config = pipeline_config(spec, seed, out, every_ckpt, max_retrain_steps=1, eval_every=None)
        return run_pipeline(config), resumed


def run_autolora(
    spec: RunSpec, seed: int, work: Path | None = None, every_ckpt: int = NO_CHECKPOINTS
) -> dict:
    """An AutoLoRA variant through autolora.pipeline.run_pipeline (prepare -> search -> retrain),
    everything read from the summary it returns; with a work directory its output (and the phases'
    checkpoints, which it resumes from) stays there. autolora-random: the search's ranks, then a seeded
    random allocation of their total retrained from fresh adapters (the pipeline's given-ranks run)."""
    device = torch.device(spec.device)
    _memory_reset(device)
    searched, resumed, changes = None, False, {}
    with contextlib.ExitStack() as stack:
        if spec.method == "autolora-random":
            searched, resumed = _searched(spec, seed, work, every_ckpt)
            ranks = random_ranks(list(searched["ranks"]), searched["rank_total"], spec.k, seed)
            path = Path(stack.enter_context(_output(work, "random"))) / "random_ranks.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, ranks)
            changes = dict(ranks=str(path), retrain_init="fresh")  # given ranks: no searched components
        out = stack.enter_context(_output(work, "pipeline"))
        resumed = resumed or _has_checkpoints(out)
        summary = run_pipeline(pipeline_config(spec, seed, out, every_ckpt, **changes))
    seconds = summary["seconds"]
    curve_seconds = seconds.get("eval_curve", 0.0)  # the curve's scoring, kept out of the wall time
    search = seconds["search"] + (searched["seconds"]["search"] if searched else 0.0)
    curve_out = {}
    if spec.eval_every:
        points = [{**p, "step": spec.search_steps + p["step"]} for p in summary["eval_curve"]]
        curve_out = {"eval_curve": points, "curve_eval_seconds": curve_seconds}
    return {
        "seed": seed,
        "metric": summary["metric"],
        "score": summary["eval"][summary["metric"]],
        "eval": summary["eval"],
        "trainable_parameters": summary["trainable_parameters"],
        **curve_out,
        "ranks": summary["ranks"],
        **({"searched_ranks": searched["ranks"]} if searched else {}),
        "rank_total": summary["rank_total"],
        "search_steps": spec.search_steps,
        "retrain_steps": spec.retrain_steps,
        "selection": (searched or summary)["selection"],
        "pipeline_seconds": seconds,
        "train_seconds": search + seconds["retrain"] - curve_seconds,
        "resumed": resumed,
        # search: prepare included (and for autolora-random the retraining run's own prepare)
        "phase_seconds": {"search": search, "retrain": seconds["retrain"] - curve_seconds},
        # the final evaluation and what the pipeline writes after it (adapters, plots)
        "eval_seconds": seconds["total"] - seconds["search"] - seconds["retrain"],
        "gpu_peak_mb": _memory_peak(device),
    }


def run_grid(spec: RunSpec, seed: int) -> dict:
    """A LoRA rank grid search: each (r_q, r_v) trained on D_tr for spec.steps on transformers.Trainer
    (constant lr), scored on D_val.

    D_tr/D_val is the package's seeded 1:1 split of the training set, so the grid chooses without
    looking at the eval split. Returns each config's score and times and the chosen config.
    """
    device = torch.device(spec.device)
    tokenizer, task = load_data(spec)
    d_tr, d_val = split_train_val(task.train, seed, task.task == "classification")
    n_val = min(len(d_val), spec.grid_val_samples or len(d_val))
    val_task = dataclasses.replace(task, eval=d_val.select(range(n_val)))
    configs = []
    for r_q, r_v in spec.grid:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model, new_modules = load_model(
            spec.model, task.task, task.num_labels, tokenizer, pooling=spec.pooling
        )
        model = peft_model(spec, model, new_modules, "lora", (r_q, r_v)).to(device)
        trainable = autolora.count_trainable(model)
        args = dict(_trainer_args(spec, seed, spec.lr_lora, None), schedule="constant")
        train(model, d_tr, task.collate, args)
        t_train = time.perf_counter() - t0
        t1 = time.perf_counter()
        score = evaluate(model, val_task, spec.eval_batch_size, device)[task.metric]
        configs.append(
            {
                "r_q": r_q,
                "r_v": r_v,
                "trainable_parameters": trainable,
                "val_score": score,
                "train_seconds": t_train,
                "val_eval_seconds": time.perf_counter() - t1,
            }
        )
    best = max(configs, key=lambda c: c["val_score"])
    return {
        "seed": seed,
        "metric": task.metric,
        "configs": configs,
        "chosen": {"r_q": best["r_q"], "r_v": best["r_v"], "val_score": best["val_score"]},
        "train_seconds": sum(c["train_seconds"] for c in configs),
        "train_and_val_seconds": sum(c["train_seconds"] + c["val_eval_seconds"] for c in configs),
        "d_tr": len(d_tr),
        "d_val": len(d_val),
        "val_scored": n_val,
    }


# RunSpec fields added after work directories were written, at the value those runs trained with
UNRECORDED_SPEC = {"schedule": "constant"}


def _same_spec(work: Path, wanted: dict) -> None:
    """A work directory serves one (spec, seed): refuse another before anything is trained."""
    path = work / "spec.json"
    if path.exists():
        held = UNRECORDED_SPEC | json.loads(path.read_text())
        differ = sorted(k for k in {*held, *wanted} if held.get(k) != wanted.get(k))
        if differ:
            raise ValueError(
                f"work_dir: {work} holds a run of other settings ({', '.join(differ)} differ, {path}); "
                "give each run its own directory or remove this one"
            )
    else:
        atomic_write_json(path, wanted)


def run(spec: RunSpec, seed: int, work: Path | None = None, checkpoint_every: int = 500) -> dict:
    """One method, one seed. With `work` (a directory of its own) the run is resumable: its phases
    checkpoint there every checkpoint_every steps and continue from the last checkpoint when run again,
    and a finished run's result (result.json) is returned without training ("reused"); its checkpoints
    are removed once it is written. A resumed run's wall time counts only its last process ("resumed")."""
    if spec.method == "lora-grid":
        return run_grid(spec, seed)
    if spec.method in AUTOLORA_VARIANTS:
        fn = run_autolora
    elif spec.method in ("full-ft", "lora-r4", "adalora"):
        fn = run_baseline
    else:
        raise ValueError(f"method: expected one of {METHODS + ('lora-grid',)}, got {spec.method!r}")
    if work is None:
        return fn(spec, seed)
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: must be >= 1, got {checkpoint_every}")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    _same_spec(work, {**dataclasses.asdict(spec), "seed": seed})
    done = work / "result.json"
    if done.exists():  # its memory peak is not this process's
        return {**json.loads(done.read_text()), "reused": True}
    result = fn(spec, seed, work, checkpoint_every)
    atomic_write_json(done, result)
    pipelines = [work / name / phase for name in ("search", "pipeline") for phase in PHASE_DIRS]
    for ckpt in (work / "checkpoints", *pipelines):
        shutil.rmtree(ckpt, ignore_errors=True)  # the result holds what they were for
    return result
