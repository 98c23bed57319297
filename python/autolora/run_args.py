"""`autolora run`'s options as the Trainer's: the search's and the retraining's TrainingArguments and
the AutoLoraArguments, each option mapped in one place.

The mapping keeps the run's semantics: the search steps W at lr_w with a constant rate and beta at
lr_beta; retraining steps at lr_retrain (or lr_w) along retrain_schedule; neither clips gradients;
checkpoints every checkpoint_every steps, the losses read and logged every log_every steps (never in
between: no NaN filter that would read every step's loss on the host).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from autolora.config import PipelineConfig
from autolora.search_options import SearchOptions


def world_size() -> int:
    """Processes in this run (the launcher's WORLD_SIZE; 1 without torchrun/accelerate launch)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def phase_steps(epochs: float, examples: int, config: PipelineConfig, cap: int | None) -> int:
    """Optimizer steps of `epochs` passes over `examples`, each step one global batch (batch_size x
    grad_accum x processes; the last batch of a pass is topped up), capped at `cap`."""
    per_epoch = math.ceil(examples / (config.batch_size * config.grad_accum * world_size()))
    steps = max(1, math.ceil(epochs * per_epoch))
    return min(steps, cap) if cap else steps


def training_arguments(config: PipelineConfig, device_type: str, *, retrain: bool, steps: int):
    """The TrainingArguments of one phase.

    Args:
        config: the run's options.
        device_type: "cpu" or "cuda" (resolved from config.device).
        retrain: retraining's (lr_retrain, retrain_schedule) or the search's.
        steps: the phase's optimizer steps.

    Returns:
        transformers.TrainingArguments with output_dir = config.output_dir (the trainer puts each
        phase's checkpoints in search/ and retrain/ under it).
    """
    from transformers import TrainingArguments

    cfg = config
    return TrainingArguments(
        output_dir=cfg.output_dir,
        max_steps=steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=(cfg.lr_retrain or cfg.lr_w) if retrain else cfg.lr_w,
        lr_scheduler_type=cfg.retrain_schedule if retrain else "constant",
        weight_decay=cfg.weight_decay,
        max_grad_norm=0.0,
        seed=cfg.seed,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        use_cpu=device_type == "cpu",
        save_strategy="steps",
        save_steps=cfg.checkpoint_every,
        save_total_limit=cfg.save_total_limit,
        logging_strategy="steps",
        logging_steps=cfg.log_every,
        logging_nan_inf_filter=False,
        report_to=cfg.report_to or "none",
        disable_tqdm=not cfg.progress,
        ddp_timeout=int(cfg.dist_timeout),
        remove_unused_columns=False,  # the task's collate takes the tokenized columns as they are
        # On a GPU the Trainer's batches go to the device from pinned memory without a sync: a
        # blocking host-to-device copy waits for the device's queue, every step.
        dataloader_pin_memory=device_type == "cuda",
        accelerator_config={"non_blocking": device_type == "cuda"},
        # A sharded base (fsdp): the Trainer checkpoints no optimizer state for such a model.
        save_only_model=cfg.fsdp,
    )


def autolora_arguments(config: PipelineConfig, search_steps: int):
    """The search's options of `config` as AutoLoraArguments (search_steps given, split seeded by
    config.seed)."""
    from autolora.integrations.arguments import AutoLoraArguments

    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(SearchOptions)}
    return AutoLoraArguments(search_steps=search_steps, split_seed=config.seed, **shared)


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """The phase folders a run keeps its checkpoints in."""
    return [Path(output_dir) / "search", Path(output_dir) / "retrain"]
