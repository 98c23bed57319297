"""bench_compare's baselines on transformers.Trainer: the training arguments of the shared budget, the
eval curve and PEFT AdaLoRA's rank allocation as TrainerCallbacks (experiments only, not the package).

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


class EvalCurve(TrainerCallback):
    """Scores the eval split with autolora.eval.evaluate every `every` steps, after the step's update
    (not at the last step: the caller's final evaluation is that point).

    Each point goes into the Trainer's log_history as {"step", "curve": metrics, "curve_seconds"}, so
    it is saved with a checkpoint and comes back on resume; `seconds` is this process's share, kept out
    of the wall time by the caller.
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
        raise ValueError(f"batch_size: {args['batch_size']} is more than the {len(dataset)} training examples")
    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as tmp:
        out = checkpoints if checkpoints is not None else Path(tmp)
        trainer = Trainer(model=model, args=training_arguments(out, **args), train_dataset=dataset,
                          data_collator=collate, callbacks=[*callbacks, NoFinalCheckpoint()])  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # the per-step logs are kept, not printed
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    history = trainer.state.log_history
    losses = [r["loss"] for r in history if "loss" in r]
    return statistics.fmean(losses[-5:]), history
