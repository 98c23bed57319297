"""What AutoLoraTrainer keeps beside the Trainer's own state: its checkpoint file, the fixed-rank layout
a resumed retraining is rebuilt into, the D_tr/D_val split, the modules saved as heads, and the
Trainer settings it refuses before training."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerState, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME

from autolora.data.splits import split_train_val
from autolora.train.state import load_checkpoint
from autolora.tuner.params import adapter_layers, adapters
from autolora.tuner.selection import keep_selected_

STATE_NAME = "autolora_state.pt"  # in every checkpoint-N folder, beside the Trainer's files
RESULT_NAME = "result.pt"  # output_dir/search/: the finished search and the model retraining starts from
PHASES = ("search", "retrain")


def load_state(checkpoint: str | Path) -> dict:
    """The AutoLoRA state of a Trainer checkpoint folder; a clear error for a folder without one."""
    state = load_checkpoint(Path(checkpoint) / STATE_NAME)
    if state is None:
        raise ValueError(
            f"resume_from_checkpoint: {checkpoint} has no {STATE_NAME}; it was not written by AutoLoraTrainer"
        )
    if state.get("phase") not in PHASES:
        raise ValueError(f"resume_from_checkpoint: {Path(checkpoint) / STATE_NAME} has no valid phase")
    return state


def with_values(args: TrainingArguments, **fields) -> TrainingArguments:
    """A copy of a phase's arguments with other values. Not dataclasses.replace: building
    TrainingArguments again resets the accelerator state the Trainer already holds."""
    args = copy.copy(args)
    for name, value in fields.items():
        setattr(args, name, value)
    return args


def global_step(checkpoint: str) -> int:
    """The optimizer steps a Trainer checkpoint had taken."""
    return TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME)).global_step


def last_complete_checkpoint(folder: Path) -> str | None:
    """The latest checkpoint-N in `folder` a resume can read, or None: the Trainer writes its
    trainer_state.json last, so a run killed while saving leaves a newer folder without a readable
    one (and save_total_limit >= 2 keeps the one before it)."""
    if not folder.is_dir():
        return None
    found = [p for p in folder.glob("checkpoint-*") if p.name.removeprefix("checkpoint-").isdigit()]
    for path in sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")), reverse=True):
        try:
            TrainerState.load_from_json(str(path / TRAINER_STATE_NAME))
        except (OSError, ValueError):
            continue
        if (path / STATE_NAME).is_file():
            return str(path)
    return None


def resume_point(resume: str | bool | None, out: Path, phase: str) -> tuple[str, str | None, Path | None]:
    """Where AutoLoraTrainer.train() resumes: (the phase, its checkpoint or None, the finished
    search's result.pt or None).

    Args:
        resume: train()'s resume_from_checkpoint. True: a finished search (out/search/result.pt)
            resumes retraining from its latest checkpoint, else the search from its latest one. A
            path: that checkpoint (its autolora_state.pt names the phase; retraining's needs the
            result.pt of the run it came from).
        out: the run's output_dir.
        phase: the trainer's phase now: "search", or "retrain" for a model with given ranks.

    Returns:
        The phase to run first, its checkpoint, and the result.pt retraining starts from.

    Raises:
        ValueError: a retraining checkpoint whose run has no result.pt.
    """
    if not resume:
        return phase, None, None
    if resume is True:
        result = out / "search" / RESULT_NAME
        start = "retrain" if phase == "retrain" or result.exists() else "search"
        last = last_complete_checkpoint(out / start)
        return start, last, result if start == "retrain" and phase == "search" else None
    path = Path(resume)
    start = load_state(path)["phase"]
    result = path.parent.parent / "search" / RESULT_NAME
    if start == "retrain" and phase == "search" and not result.exists():
        raise ValueError(
            f"resume_from_checkpoint: {path} is a retraining checkpoint, and its run has no "
            f"{result} (the finished search it retrains)"
        )
    return start, str(path), result if start == "retrain" else None


@torch.no_grad()
def fixed_layout_(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Turn a freshly built search model into the fixed-rank model of `ranks` (values to be loaded next).

    Resuming after the switch must rebuild the retraining model before its weights are loaded. beta is
    set so that exactly the first r components are selected (beta_j = 0 for j < r, -30 after: their
    alpha is e^-30 / r, far below 1/k) and keep_selected_ does the conversion, so the layout is the one
    the uninterrupted run built at the switch.
    """
    for name, a in adapters(model):
        if a.beta is not None:
            if name not in ranks or not 1 <= ranks[name] <= a.rank:
                raise ValueError(
                    f"ranks: {name} needs a rank in 1..{a.rank}, the checkpoint has {ranks.get(name)}"
                )
            a.beta.fill_(-30.0)
            a.beta[: ranks[name]] = 0.0
    return keep_selected_(model, ranks)


def head_modules(model: nn.Module) -> list[str]:
    """Modules outside the adapters that own trainable parameters (the task head): PEFT's
    modules_to_save. Found structurally: a module counts if it holds such a parameter directly."""
    inside = {id(m) for _, layer in adapter_layers(model) for m in layer.modules()}
    return sorted(
        name
        for name, m in model.named_modules()
        if name and id(m) not in inside and any(p.requires_grad for p in m.parameters(recurse=False))
    )


def default_split(dataset, seed: int):
    """The pipeline's seeded 1:1 split of train_dataset into D_tr and D_val, stratified by an integer
    `labels` column (classification) when there is one."""
    import datasets

    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(
            "val_dataset: needed when train_dataset is not a datasets.Dataset "
            f"(got {type(dataset).__name__}); the default splits a datasets.Dataset into halves"
        )
    feature = dataset.features.get("labels")
    stratify = isinstance(feature, datasets.ClassLabel) or (
        isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint", "bool"))
    )
    return split_train_val(dataset, seed, stratify)


def check_setup(trainer, searched: list) -> None:
    """Everything AutoLoraTrainer cannot run with, refused before any training.

    Args:
        trainer: the AutoLoraTrainer being built (its model, args and train_dataset are read).
        searched: its search-mode adapters, (name, adapter) pairs; empty when only retraining.

    Raises:
        ValueError: the setting at fault, named.
    """
    if not list(adapters(trainer.model)):
        raise ValueError("model: has no AutoLoRA adapters; call autolora.inject(model, mode='search') first")
    a, args = trainer.autolora_args, trainer.args
    if searched and (a.rank_total is not None or a.rank_budget is not None):
        ks = sorted({ad.rank for _, ad in searched})
        if len(ks) > 1:
            raise ValueError(
                f"rank_budget/rank_total: needs adapters of one k, got k in {ks}; "
                "set rank_budget=None for the rule's own ranks"
            )
    if trainer.train_dataset is None:
        raise ValueError("train_dataset: AutoLoraTrainer needs one (the search and retraining read it)")
    if args.load_best_model_at_end:
        raise ValueError("load_best_model_at_end: not supported (the best checkpoint may predate the switch)")
    if searched and (trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled):
        raise ValueError(
            "deepspeed/fsdp: the search needs whole adapters in every process (it differentiates "
            "through a lookahead step of them); search without sharding, then retrain the selected "
            "ranks sharded (autolora run --ranks ranks.json --fsdp full_shard)"
        )
    gc_on = getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing
    gc_kwargs = (
        getattr(args, "activation_checkpointing_kwargs", None) or args.gradient_checkpointing_kwargs or {}
    )
    if gc_on and isinstance(gc_kwargs, dict) and gc_kwargs.get("use_reentrant", False):
        raise ValueError(
            "activation_checkpointing_kwargs: use_reentrant=True cannot be differentiated with "
            "torch.autograd.grad, which the search needs; pass use_reentrant=False"
        )
