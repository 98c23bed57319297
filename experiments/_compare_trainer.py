"""bench_compare's baselines on transformers.Trainer: their PEFT models, the training arguments of the
shared budget, the eval curve and PEFT AdaLoRA's rank allocation as TrainerCallbacks (experiments
only, not the package).

The Trainer runs the step loop, the optimiser (AdamW, weight decay 0, no gradient clipping), the lr
schedule, the shuffled batches and the checkpoints (`save_steps`, `resume_from_checkpoint`); nothing
here steps a model by hand.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from autolora.data import TaskData
from autolora.eval.evaluation import evaluate

CHECKPOINT_PREFIX = "checkpoint-"  # the Trainer's checkpoint folders: checkpoint-<global step>
TARGETS = ["query", "value"]  # the paper's q and v projections (BERT/MiniLM names)


def peft_model(spec, model, new_modules: list[str], kind: str, ranks: tuple[int, int] | None):
    """The PEFT model of a baseline: LoRA (r=spec.lora_r, or (r_q, r_v) = ranks) or AdaLoRA (init_r ->
    target_r, its schedule over spec.steps), on TARGETS, training the new head modules and
    spec.extra_trainable beside the adapters; spec is a _compare_methods.RunSpec.

    Raises:
        ValueError: an extra_trainable name that matches no module.
    """
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
            total_step=n,  # the run's max_steps: the allocation's schedule is laid over it
            **common,
        )
    else:
        r_q, r_v = ranks or (spec.lora_r, spec.lora_r)
        cfg = LoraConfig(r=r_q, rank_pattern={"value": r_v} if r_v != r_q else {}, **common)
    return get_peft_model(model, cfg)


def adalora_final(model) -> dict:
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


class EvalCurve(TrainerCallback):
    """Scores the eval split with autolora.eval.evaluate every `every` steps, after the step's update
    (not at the last step: the caller's final evaluation is that point).

    Each point goes into the Trainer's log_history as {"step", "curve": metrics, "curve_seconds"}, so
    it is saved with a checkpoint and comes back on resume; `seconds` is this process's share, kept out
    of the wall time by the caller.

    Args:
        task: the task whose eval split is scored.
        every: steps between points.
        steps: the run's max_steps (no point there).
        batch_size: evaluation batch size.
        device: where the eval batches go.
    """

    def __init__(self, task: TaskData, every: int, steps: int, batch_size: int, device: torch.device):
        self.task, self.every, self.steps = task, every, steps
        self.batch_size, self.device = batch_size, device
        self.seconds = 0.0

    def on_step_end(self, args, state, control, model=None, **kwargs):
        n = state.global_step
        if n % self.every == 0 and n < self.steps:
            t0 = time.perf_counter()
            metrics = evaluate(model, self.task, self.batch_size, self.device)  # restores train mode
            seconds = time.perf_counter() - t0
            self.seconds += seconds
            state.log_history.append({"step": n, "curve": metrics, "curve_seconds": seconds})


class AdaLoraAllocation(TrainerCallback):
    """PEFT's AdaLoRA rank allocation, `model.base_model.update_and_allocate(step)`, after every
    optimizer step and before the gradients are zeroed (it reads them), as PEFT documents.

    The Trainer calls on_optimizer_step right after optimizer.step() and before model.zero_grad();
    on_step_end would come after zero_grad. Without this callback a Trainer trains AdaLoRA as a plain
    LoRA of rank init_r: nothing allocates.

    Checkpoints: the allocator's importance averages and the rank pattern live outside the parameters,
    so they are written beside each Trainer checkpoint (FILE) and read back from `resume_from`. The
    config's rank_pattern is held here between steps and set only while PEFT allocates: PEFT saves an
    adapter cut down to a set rank_pattern, which would not load back into the uncut model a resumed
    run trains (the masked entries of lora_E are zeros in the saved parameters, so nothing is lost).

    Args:
        model: the PEFT AdaLoRA model the Trainer trains (adapter "default").
        resume_from: the Trainer checkpoint the run resumes from (None: a fresh run).
    """

    FILE = "adalora_allocator.pt"
    KEYS = ("ipt", "exp_avg_ipt", "exp_avg_unc")

    def __init__(self, model, resume_from: Path | None = None):
        self.model, self.resume_from = model, resume_from
        self.config = model.peft_config["default"]
        self.allocator = model.base_model.rankallocator
        self.pattern = self.config.rank_pattern

    def state_dict(self) -> dict:
        state = {k: dict(getattr(self.allocator, k)) for k in self.KEYS}
        return {**state, "rank_pattern": self.pattern}

    def load_state_dict(self, state: dict) -> None:
        for k in self.KEYS:
            setattr(self.allocator, k, dict(state[k]))
        self.pattern = state["rank_pattern"]

    def on_train_begin(self, args, state, control, **kwargs):
        if self.resume_from is not None:  # the Trainer has loaded the parameters by now
            self.load_state_dict(torch.load(self.resume_from / self.FILE, weights_only=True))
        self.config.rank_pattern = None

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.config.rank_pattern = self.pattern
        self.model.base_model.update_and_allocate(state.global_step + 1)  # the step just taken, from 1
        self.pattern, self.config.rank_pattern = self.config.rank_pattern, None

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        torch.save(self.state_dict(), folder / self.FILE)

    def on_train_end(self, args, state, control, **kwargs):
        self.config.rank_pattern = self.pattern  # what the run allocated, for the caller to read


class NoFinalCheckpoint(TrainerCallback):
    """No checkpoint at the last step: resumed from one at max_steps the Trainer still takes a step
    (it checks for the end only after a step), so a run cut after its last step resumes from the
    checkpoint before and takes that step again, to the same result."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False  # runs after DefaultFlowCallback, which set it


def last_checkpoint(folder: Path | None, needs: tuple[str, ...] = ()) -> Path | None:
    """The newest complete Trainer checkpoint under `folder` (its trainer_state.json and the `needs`
    files written), or None: a process killed while saving leaves the one before."""
    if folder is None or not folder.is_dir():
        return None
    done = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*")
            if all((p / f).is_file() for f in ("trainer_state.json", *needs))]  # fmt: skip
    return max(done, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)), default=None)


def training_arguments(
    out: Path, steps: int, batch_size: int, lr: float, schedule: str, seed: int, device: str,
    save_every: int | None,
) -> TrainingArguments:  # fmt: skip
    """The budget as TrainingArguments: `steps` AdamW updates on batches of `batch_size` (an epoch's
    last partial batch dropped, so every update sees batch_size examples), lr constant or linear to 0,
    no warm-up, weight decay or clipping; the loss logged every step; a checkpoint every save_every
    steps (None: none)."""
    return TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        lr_scheduler_type=schedule,
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=0.0,  # 0: no clipping
        optim="adamw_torch",
        seed=seed,
        data_seed=seed,
        use_cpu=device == "cpu",
        dataloader_drop_last=True,
        remove_unused_columns=False,  # the task's collate picks the columns
        logging_steps=1,
        save_strategy="steps" if save_every else "no",
        save_steps=save_every or 1,
        save_total_limit=2,  # the newest, and the one before in case the newest was cut while written
        report_to="none",
        disable_tqdm=True,
    )


def train(
    model: torch.nn.Module,
    dataset,
    collate: Callable,
    args: dict,
    callbacks: list[TrainerCallback] = (),
    checkpoints: Path | None = None,
    resume_from: Path | None = None,
) -> tuple[float, list[dict]]:
    """Train `model` with transformers.Trainer as training_arguments(**args) says.

    Args:
        model: the model, its trainable parameters set.
        dataset: the training examples (a datasets.Dataset), batched by `collate`.
        collate: the task's collate, the Trainer's data_collator.
        args: training_arguments' keyword arguments but `out`.
        callbacks: TrainerCallbacks (the eval curve, AdaLoRA's allocation).
        checkpoints: the Trainer's output_dir (checkpoints; None: a temporary folder, nothing kept).
        resume_from: a checkpoint of that folder to continue from.

    Returns:
        The mean training loss of the last 5 steps, and the Trainer's log_history (resumed with it).

    Raises:
        ValueError: fewer training examples than one batch.
    """
    if len(dataset) < args["batch_size"]:
        raise ValueError(f"batch_size: {args['batch_size']} is more than the {len(dataset)} training "
                         "examples")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as tmp:
        out = checkpoints if checkpoints is not None else Path(tmp)
        trainer = Trainer(model=model, args=training_arguments(out, **args), train_dataset=dataset,
                          data_collator=collate, callbacks=[*callbacks, NoFinalCheckpoint()])  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # the per-step logs are kept, not printed
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    history = trainer.state.log_history
    losses = [r["loss"] for r in history if "loss" in r]
    return statistics.fmean(losses[-5:]), history
