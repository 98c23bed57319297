"""The methods bench_compare.py runs, each under one training budget (experiments only, not the package).

Every method reads its data through autolora.data (load_task, split_train_val, the task's collate via
autolora.train.BatchStream) and is scored by autolora.eval.evaluate, so the comparison differs only
in what is trained and how.

Budget: `steps` optimiser updates of the model's weights, each on one batch of `batch_size` training
examples drawn from the same (sub-sampled) training set. AutoLoRA's search and retraining both count:
the search takes round(steps * search_fraction) bilevel iterations (each one AdamW update of W on a
D_tr batch, plus one Adam update of beta on a D_val batch), retraining the rest. A method's wall time
covers tokenizer + data loading, model construction and all training (search included); the final
evaluation is timed separately. With eval_points P, every method also scores the eval split every
steps // P steps (AutoLoRA: every steps // P retraining steps, recorded at their budget step, search
steps + n), the curve a reader checks convergence by; that scoring is timed apart and kept out of
the wall time, and changes no training (tests/test_bench_compare_methods.py). run(..., work) makes a run
resumable (the baselines through autolora.train.loop.run_phase, AutoLoRA through the pipeline's own
phase checkpoints); a cut run resumes to the uncut run's result (the same tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

import autolora
from autolora.config import PipelineConfig
from autolora.data import DataConfig, TaskData, load_task, split_train_val
from autolora.eval.evaluation import evaluate
from autolora.io.atomic import atomic_write_json
from autolora.models import load_model, load_tokenizer
from autolora.pipeline import Pipeline
from autolora.train.loop import run_phase
from autolora.train.lr_schedule import lr_schedule
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
    # same total retrained the same way; only how the total is shared across layers differs
    "autolora-random": ("second-order", "softmax"),
}
TARGETS = ["query", "value"]  # the paper's q and v projections (BERT/MiniLM names)
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


def timed_evaluate(model: torch.nn.Module, task: TaskData, batch_size: int, device: torch.device):
    """The eval split's metrics and the seconds they took (a curve point: nothing is chosen by it)."""
    t0 = time.perf_counter()
    metrics = evaluate(model, task, batch_size, device)
    return metrics, time.perf_counter() - t0


class Batches:
    """Endless shuffled batches (a fresh seeded permutation per epoch) collated by the task's collate.

    The baselines' own stream: autolora.train.loop.BatchStream's interface is being changed (micro-batch
    lists), and the baselines only need the plain single-process case.
    """

    def __init__(self, dataset, batch_size: int, collate: Callable, seed: int, device: torch.device):
        self.dataset, self.batch_size, self.collate, self.device = dataset, batch_size, collate, device
        self.gen = torch.Generator().manual_seed(seed)
        self.order: list[int] = []

    def next(self) -> dict[str, torch.Tensor]:
        if len(self.order) < self.batch_size:
            self.order += torch.randperm(len(self.dataset), generator=self.gen).tolist()
        idx, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return {k: v.to(self.device) for k, v in self.collate([self.dataset[i] for i in idx]).items()}

    def state_dict(self) -> dict:
        return {"generator": self.gen.get_state(), "order": list(self.order)}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"])
        self.order = list(state["order"])


class AdaLoraState:
    """What PEFT's AdaLoRA keeps outside the parameters, for a checkpoint: the rank allocator's
    importance averages and the rank pattern it has allocated so far (lora_E's masked entries are
    parameters, saved with them)."""

    KEYS = ("ipt", "exp_avg_ipt", "exp_avg_unc")

    def __init__(self, model) -> None:
        self.allocator = model.base_model.rankallocator
        self.config = model.peft_config["default"]

    def state_dict(self) -> dict:
        state = {k: dict(getattr(self.allocator, k)) for k in self.KEYS}
        return {**state, "rank_pattern": self.config.rank_pattern}

    def load_state_dict(self, state: dict) -> None:
        for k in self.KEYS:
            setattr(self.allocator, k, dict(state[k]))
        self.config.rank_pattern = state["rank_pattern"]


def load_data(spec: RunSpec) -> tuple[object, TaskData]:
    tokenizer = load_tokenizer(spec.model)
    return tokenizer, load_task(DataConfig(**spec.data), tokenizer)


def train_loop(
    model: torch.nn.Module,
    stream: Batches,
    steps: int,
    lr: float,
    after_backward: Callable[[int], None] | None = None,
    score: Callable[[], tuple[dict, float]] | None = None,
    every: int | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: int = NO_CHECKPOINTS,
    extra_state: dict | None = None,
    schedule: str = "constant",
) -> tuple[float, list[dict]]:
    """`steps` AdamW updates of the trainable parameters through autolora.train.loop.run_phase (so a
    cut run resumes from `checkpoint`, written every checkpoint_every steps, with its optimiser, batch
    order, RNG, lr schedule and extra_state); returns the mean loss of the last 5 steps and the history.

    after_backward(step): AdaLoRA's update_and_allocate, called after optimizer.step() and before
    zero_grad() as PEFT documents. score() -> (metrics, seconds): the eval curve, every `every` steps
    after the update is complete (not at the last step: the caller's final evaluation is that point),
    kept in the history as "eval" and "eval_seconds" so it resumes with the run.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    lr_at = lr_schedule(opt, schedule, steps)
    model.train()
    history: list[dict] = []

    def step(done: int) -> dict[str, float]:
        loss = model(**stream.next()).loss
        loss.backward()
        opt.step()
        if lr_at is not None:
            lr_at.step()
        if after_backward is not None:
            after_backward(done + 1)
        opt.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach())}

    def on_step(n: int, losses: dict, readings: None) -> dict:
        record = {"step": n, **losses}
        if score is not None and every and n % every == 0 and n < steps:
            record["eval"], record["eval_seconds"] = score()
        return record

    stateful = {"opt": opt, "stream": stream, **({"schedule": lr_at} if lr_at else {}), **(extra_state or {})}
    run_phase(name="train", total_steps=steps, step_fn=step, model=model, stateful=stateful,
              checkpoint=checkpoint, checkpoint_every=checkpoint_every, history=history, on_step=on_step,
              progress=False)  # fmt: skip
    return statistics.fmean(r["loss"] for r in history[-5:]), history


def _peft_model(spec: RunSpec, model, new_modules: list[str], kind: str, ranks: tuple[int, int] | None):
    from peft import AdaLoraConfig, LoraConfig, TaskType, get_peft_model

    names = [n for n, _ in model.named_modules()]
    for extra in spec.extra_trainable:  # PEFT would skip a name that matches nothing; say so instead
        if not any(n == extra or n.endswith("." + extra) for n in names):
            raise ValueError(f"extra_trainable: {extra!r} matches no module of {spec.model}")
    common = dict(
        task_type=TaskType.SEQ_CLS,
        target_modules=TARGETS,
        lora_alpha=spec.lora_alpha,
        lora_dropout=0.0,  # AutoLoRA's default dropout is 0 too
        modules_to_save=[*new_modules, *spec.extra_trainable],
    )
    if kind == "adalora":
        n = spec.steps
        cfg = AdaLoraConfig(
            init_r=spec.adalora_init_r,
            target_r=spec.adalora_target_r,
            tinit=max(1, round(0.1 * n)),  # warm-up 10%, final fine-tuning 20% of the budget
            tfinal=max(1, round(0.2 * n)),
            deltaT=max(1, n // 50),
            total_step=n,
            **common,
        )
    else:
        r_q, r_v = ranks or (spec.lora_r, spec.lora_r)
        cfg = LoraConfig(r=r_q, rank_pattern={"value": r_v} if r_v != r_q else {}, **common)
    return get_peft_model(model, cfg)


def _adalora_final(model) -> dict:
    """Final ranks (kept triplets per matrix; PEFT keys rank_pattern by the lora_E parameter names)
    and the adapter parameters they hold, r * (in + out + 1) per matrix (rows of A, columns of B, E)."""
    pattern = model.peft_config["default"].rank_pattern or {}
    params = dict(model.named_parameters())
    params.update(model.base_model.model.named_parameters())  # PEFT may key without the wrapper prefix
    ranks, total = {}, 0
    for key, mask in pattern.items():
        r = int(sum(bool(m) for m in mask))
        a, b = params[key.replace("lora_E", "lora_A")], params[key.replace("lora_E", "lora_B")]
        name = key.removeprefix("base_model.model.").removesuffix(".lora_E.default")
        ranks[name] = r
        total += r * (a.shape[1] + b.shape[0] + 1)
    return {"ranks": ranks, "effective_adapter_params": total}


def _memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _memory_peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def run_baseline(
    spec: RunSpec, seed: int, work: Path | None = None, every_ckpt: int = NO_CHECKPOINTS
) -> dict:
    """full-ft, lora-r4 or adalora: train on the whole training set for spec.steps updates (from work's
    checkpoint when it holds one)."""
    device = torch.device(spec.device)
    _memory_reset(device)
    t0 = time.perf_counter()
    tokenizer, task = load_data(spec)
    torch.manual_seed(seed)  # the new classifier's initialisation
    model, new_modules = load_model(spec.model, task.task, task.num_labels, tokenizer, pooling=spec.pooling)
    extra: dict = {}
    hook, state = None, {}
    if spec.method == "full-ft":
        lr = spec.lr_full
    else:
        kind = "adalora" if spec.method == "adalora" else "lora"
        model = _peft_model(spec, model, new_modules, kind, None)
        lr = spec.lr_lora
        if kind == "adalora":
            hook, state = model.base_model.update_and_allocate, {"adalora": AdaLoraState(model)}
    model.to(device)
    trainable = autolora.count_trainable(model)
    stream = Batches(task.train, spec.batch_size, task.collate, seed, device)
    checkpoint = work / "checkpoints" / "train.pt" if work is not None else None
    resumed = checkpoint is not None and checkpoint.exists()
    curve_seconds = 0.0  # this process's share (the history holds every process's points)

    def score() -> tuple[dict, float]:
        nonlocal curve_seconds
        metrics, seconds = timed_evaluate(model, task, spec.eval_batch_size, device)
        curve_seconds += seconds
        return metrics, seconds

    loss, history = train_loop(model, stream, spec.steps, lr, hook, score, spec.eval_every, checkpoint,
                               every_ckpt, state, spec.schedule)  # fmt: skip
    t_train = time.perf_counter() - t0 - curve_seconds
    if spec.method == "adalora":
        extra["adalora"] = _adalora_final(model)
    t1 = time.perf_counter()
    metrics = evaluate(model, task, spec.eval_batch_size, device)
    points = [{"step": r["step"], **r["eval"]} for r in history if "eval" in r]
    curve_out = {"eval_curve": [*points, {"step": spec.steps, **metrics}],
                 "curve_eval_seconds": sum(r["eval_seconds"] for r in history if "eval" in r)
                 } if spec.eval_every else {}  # fmt: skip
    return {
        "seed": seed,
        "metric": task.metric,
        "score": metrics[task.metric],
        "eval": metrics,
        **curve_out,
        "final_train_loss": loss,
        "trainable_parameters": trainable,
        "train_seconds": t_train,
        "resumed": resumed,
        "eval_seconds": time.perf_counter() - t1,
        "gpu_peak_mb": _memory_peak(device),
        **extra,
    }


def run_autolora(
    spec: RunSpec, seed: int, work: Path | None = None, every_ckpt: int = NO_CHECKPOINTS
) -> dict:
    """The package's Pipeline (prepare -> search -> retrain), evaluated with the same evaluate(); with
    a work directory its output (and the phases' checkpoints, which it resumes from) stays there."""
    hypergradient, selection = AUTOLORA_VARIANTS[spec.method]
    device = torch.device(spec.device)
    _memory_reset(device)
    keep = contextlib.nullcontext(str(work / "pipeline")) if work is not None else None
    with keep or tempfile.TemporaryDirectory(prefix="bench_autolora_") as out:
        resumed = any((Path(out) / "checkpoints" / f).exists() for f in ("search.pt", "retrain.pt"))
        cfg = PipelineConfig(
            model=spec.model,
            pooling=spec.pooling,
            data=DataConfig(**spec.data),
            output_dir=out,
            seed=seed,
            device=spec.device,
            k=spec.k,
            lora_alpha=spec.lora_alpha,
            selection=selection,
            trainable=["@head", *spec.extra_trainable],
            retrain_init=spec.retrain_init,
            retrain_schedule=spec.schedule,
            hypergradient=hypergradient,
            lr_w=spec.lr_lora,
            lr_beta=spec.lr_beta,
            rank_rule=spec.rank_rule,
            rank_budget=None,  # the studies retrain the rule's own ranks (the totals it selects)
            beta_every=spec.beta_every,
            batch_size=spec.batch_size,
            search_epochs=1e6,  # the step caps below bind
            max_search_steps=spec.search_steps,
            retrain_epochs=1e6,
            max_retrain_steps=spec.retrain_steps,
            eval_batch_size=spec.eval_batch_size,
            eval_every=spec.eval_every,  # counted in retraining steps: budget step = search_steps + n
            checkpoint_every=every_ckpt,  # without a work directory: each phase's final one, as a user gets
            progress=False,
        )
        t0 = time.perf_counter()
        pipe = Pipeline(cfg)
        curve_seconds = 0.0
        score = pipe.evaluate

        def timed(model):  # the pipeline's eval-curve scoring, kept out of the wall time
            nonlocal curve_seconds
            t = time.perf_counter()
            out = score(model)
            curve_seconds += time.perf_counter() - t
            return out

        pipe.evaluate = timed
        pipe.prepare()
        t_prepare = time.perf_counter() - t0
        ranks, history, searched = pipe.search()  # the plots: drawn at once, or in a child process
        searched_ranks = ranks
        if spec.method == "autolora-random":
            ranks = random_ranks(list(ranks), sum(ranks.values()), spec.k, seed)
        t_search = time.perf_counter() - t0 - t_prepare
        search_trainable = autolora.count_trainable(searched)
        if spec.retrain_init == "fresh":
            searched = None  # as Pipeline.run: one model in memory at a time (warm retrains it in place)
        model = pipe.retrain(ranks, searched)
        t_wait = time.perf_counter()
        pipe.wait_for_figures()  # what a child process drawing beside retraining left to wait for
        plot_wait = time.perf_counter() - t_wait
        t_train = time.perf_counter() - t0 - curve_seconds
        t1 = time.perf_counter()
        metrics = evaluate(model, pipe.task, spec.eval_batch_size, pipe.device)
    last = history[-1] if history else {}
    curve_out = {}
    if spec.eval_every:
        points = [{**p, "step": spec.search_steps + p["step"]} for p in pipe.eval_curve]
        curve_out = {"eval_curve": [*points, {"step": spec.steps, **metrics}],
                     "curve_eval_seconds": curve_seconds}  # fmt: skip
    return {
        "seed": seed,
        "metric": pipe.task.metric,
        "score": metrics[pipe.task.metric],
        "eval": metrics,
        "trainable_parameters": autolora.count_trainable(model),
        "search_trainable_parameters": search_trainable,
        **curve_out,
        "ranks": ranks,
        **({"searched_ranks": searched_ranks} if spec.method == "autolora-random" else {}),
        "rank_total": sum(ranks.values()),
        "search_steps": spec.search_steps,
        "retrain_steps": spec.retrain_steps,
        "final_search_loss": {k: last.get(k) for k in ("loss_tr", "loss_val")},
        "train_seconds": t_train,
        "resumed": resumed,
        "phase_seconds": {
            "prepare": t_prepare,
            "search": t_search,
            "retrain": t_train - t_prepare - t_search - plot_wait,
            "plots_wait": plot_wait,  # what drawing in a child process left on the critical path
        },
        "eval_seconds": time.perf_counter() - t1,
        "gpu_peak_mb": _memory_peak(device),
    }


def run_grid(spec: RunSpec, seed: int) -> dict:
    """A LoRA rank grid search: each (r_q, r_v) trained on D_tr for spec.steps, scored on D_val.

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
        model = _peft_model(spec, model, new_modules, "lora", (r_q, r_v)).to(device)
        trainable = autolora.count_trainable(model)
        stream = Batches(d_tr, spec.batch_size, task.collate, seed, device)
        train_loop(model, stream, spec.steps, spec.lr_lora)
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
    for ckpt in (work / "checkpoints", work / "pipeline" / "checkpoints"):
        shutil.rmtree(ckpt, ignore_errors=True)  # the result holds what they were for
    return result
