"""`autolora run`: the data, the model and an AutoLoraTrainer, which searches, selects the ranks and
retrains (autolora.integrations.trainer); then evaluation and export.

Artifacts in the output directory (each written atomically):
  config.json           the resolved configuration and the data's fingerprint (what --resume checks)
  ranks.json            per-adapter ranks, alpha, the rank trajectory and the search's diagnostics
  alpha_history.json    every search step's record
  rank_heatmap.png, alpha_trajectories.png, rank_trajectories.png (the ranks along the search)
  metrics.json          the evaluation metrics of the retrained model, cost and parameter counts
  generations.jsonl     causal-lm with --max-generate: each input's generated text and references
  adapter/              the retrained adapter in PEFT's layout (adapter_config.json, safetensors)
  autolora_adapter/     the same in autolora's own format (autolora.load_adapter)
  merged/               on request: the merged model via save_pretrained
  search/, retrain/     the Trainer's checkpoints of each phase (search/result.pt: the finished
                        search), for --resume
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import autolora
from autolora.config import PipelineConfig
from autolora.data import TaskData, load_task
from autolora.devices import resolve_device
from autolora.errors import InputError
from autolora.eval.evaluation import evaluate
from autolora.fits import check_fits
from autolora.io.atomic import atomic_write_json
from autolora.io.peft_export import export_peft, save_merged
from autolora.models import load_model, load_tokenizer
from autolora.run_args import autolora_arguments, phase_steps, training_arguments, world_size
from autolora.run_folder import CONFIG_NAME, check_run_folder, clear_checkpoints, run_record
from autolora.train.activation_checkpointing import enable_activation_checkpointing
from autolora.tuner.ranks import check_ranks, check_total, read_ranks, scaled_ranks


def check_output_dir(path: Path, create: bool = True) -> None:
    """Fail before any training if the output directory cannot be created or written.
    create=False (a dry run) checks the same without creating anything: the nearest existing
    ancestor must be a writable directory."""
    if not create:
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            raise ValueError(f"output_dir: cannot create {path}: {existing} is not a directory")
        path = existing
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"output_dir: cannot create {path}: {err.strerror}") from err
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"output_dir: {path} is not writable")


def spare_core(device: torch.device) -> bool:
    """Whether a child process can draw the plots beside training without taking one of its cores:
    training on a GPU keeps about one core busy, on the CPU as many as torch has threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores > (torch.get_num_threads() if device.type == "cpu" else 1)


def run_device(spec: str) -> torch.device:
    """The device the Trainer will train on: autolora.devices.resolve_device's, where the Trainer can
    place a run (one process takes the first GPU; torchrun gives each process its own)."""
    device = resolve_device(spec)
    if device.type == "cuda" and (device.index or 0) > 0 and world_size() == 1:
        raise InputError(
            "device",
            f"{spec!r}: a single process trains on the first visible GPU; choose it with "
            f"CUDA_VISIBLE_DEVICES={device.index} and --device cuda",
        )
    if device.type not in ("cpu", "cuda"):
        raise InputError("device", f"{spec!r}: autolora run trains on cpu or cuda")
    return device


@dataclass
class Prepared:
    """Everything a run builds before training, every input checked.

    Attributes:
        task: the tokenized data and what the task needs.
        model: the model to train: search-mode adapters, or fixed ones of given ranks.
        trainable: the modules trained beside the adapters (the head).
        given_ranks: --ranks' ranks (no search), carried to rank_total when it is set, else None.
        listed_ranks: --ranks' ranks as the file lists them, else None.
        device: where training runs.
        search_steps: the search's optimizer steps (0 with given ranks).
        retrain_steps: retraining's optimizer steps.
        d_tr: the search's half of the training data W learns on, as the trainer splits it.
        d_val: the other half, beta's.
    """

    task: TaskData
    model: nn.Module
    trainable: list[str]
    given_ranks: dict[str, int] | None
    listed_ranks: dict[str, int] | None
    device: torch.device
    search_steps: int
    retrain_steps: int
    d_tr: Any
    d_val: Any


def build_model(
    config: PipelineConfig, task: TaskData, mode: str, ranks: dict[str, int] | None = None
) -> tuple[nn.Module, list[str]]:
    """The pretrained model with its task head and AutoLoRA adapters; (model, trainable modules)."""
    cfg = config
    model, new_modules = load_model(
        cfg.model, task.task, task.num_labels, task.tokenizer, cfg.hypergradient == "exact", cfg.pooling
    )
    wanted = ["@head"] if cfg.trainable is None else cfg.trainable
    trainable = [n for t in wanted for n in (new_modules if t == "@head" else [t])]
    autolora.inject(
        model,
        cfg.targets,
        rank=cfg.k,
        lora_alpha=cfg.lora_alpha,
        dropout=cfg.dropout,
        mode=mode,
        selection=cfg.selection,
        ranks=ranks,
        trainable=trainable,
    )
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(model)
    return model, trainable


def prepare(config: PipelineConfig) -> Prepared:
    """Everything that can fail on bad input, checked before any training starts and before anything
    is written (a dry run stops here): the output folder's state (autolora.run_folder), the device,
    the data, the model, k and max_length against it, --ranks and rank_total.

    Args:
        config: the run's options, validated.

    Returns:
        The data, the model and the phases' lengths.

    Raises:
        ValueError: bad input, named (autolora.errors.InputError: the option, the file and the line).
    """
    from autolora.integrations.trainer_state import default_split

    cfg = config
    check_output_dir(Path(cfg.output_dir), create=False)  # created once every check has passed
    check_run_folder(cfg)
    device = run_device(cfg.device)
    torch.manual_seed(cfg.seed)
    task = load_task(cfg.data, load_tokenizer(cfg.model))
    d_tr, d_val = default_split(task.train, cfg.seed)
    given = listed = None
    if cfg.ranks is not None:  # --ranks: no search; checked against this model's adapters
        given = listed = read_ranks(cfg.ranks)
        probe, _ = build_model(cfg, task, "search")
        names = [n for n, _ in autolora.adapters(probe)]
        check_ranks(given, names, cfg.k, where=f"ranks ({cfg.ranks})")
        if cfg.rank_total is not None:  # the file's ranks carried to an explicit total, same order
            check_total(len(names), cfg.rank_total, cfg.k, where="rank_total")
            given = scaled_ranks(given, cfg.rank_total, cfg.k)
        del probe
        torch.manual_seed(cfg.seed)
    model, trainable = build_model(cfg, task, "fixed" if given else "search", given)
    check_fits(model, cfg.k, cfg.data.max_length)
    if given is None and cfg.rank_total is not None:
        check_total(len(list(autolora.adapters(model))), cfg.rank_total, cfg.k, where="rank_total")
    search = 0 if given else phase_steps(cfg.search_epochs, len(d_tr), cfg, cfg.max_search_steps)
    retrain = phase_steps(cfg.retrain_epochs, len(task.train), cfg, cfg.max_retrain_steps)
    return Prepared(task, model, trainable, given, listed, device, search, retrain, d_tr, d_val)


def build_trainer(config: PipelineConfig, prep: Prepared, callbacks: list):
    """The AutoLoraTrainer of a run: the search's and retraining's TrainingArguments from the options."""
    from transformers.trainer_callback import PrinterCallback

    from autolora.integrations.trainer import AutoLoraTrainer
    from autolora.train.sharding import shard_for_trainer

    kind = prep.device.type
    retrain_args = training_arguments(config, kind, retrain=True, steps=prep.retrain_steps)
    if prep.given_ranks is not None:  # retraining alone
        args, search = retrain_args, 1
    else:
        args, search = (
            training_arguments(config, kind, retrain=False, steps=prep.search_steps),
            prep.search_steps,
        )
    if config.fsdp:  # the process group exists now (TrainingArguments started it)
        shard_for_trainer(prep.model, config.hypergradient)
    trainer = AutoLoraTrainer(
        model=prep.model,
        args=args,
        retrain_args=retrain_args,
        train_dataset=prep.task.train,
        data_collator=prep.task.collate,
        callbacks=callbacks,
        autolora=autolora_arguments(config, search),
    )
    if not config.progress:  # --no-progress: quiet, no log line printed every log_every steps
        trainer.remove_callback(PrinterCallback)
    return trainer


def resume_message(out: Path, phase: str) -> str:
    """What --resume will continue: the phase and the step, or that nothing was there to resume."""
    from autolora.integrations.trainer_state import global_step, resume_point

    start, checkpoint, _ = resume_point(True, out, phase)
    if checkpoint is not None:
        name = "the search" if start == "search" else "retraining"
        return f"autolora: resuming {name} after step {global_step(checkpoint)} ({checkpoint})"
    if start == "retrain" and phase == "search":
        return "autolora: resuming after the finished search: retraining from its first step"
    return f"autolora: --resume: nothing to resume in {out}; starting afresh"


def run_pipeline(config: PipelineConfig) -> dict:
    """Run the whole pipeline, as `autolora run` does.

    Args:
        config: the run's options (`load_config` builds one).

    Returns:
        On the main process, the summary written to metrics.json: eval metrics, the eval curve, ranks,
        rank_total, the selection's verdict, trainable parameters, seconds per phase; on the others,
        their ranks.
    """
    from autolora.run_callbacks import EvalCurve, PhaseClock, RunFiguresAtSwitch

    cfg, out = config, Path(config.output_dir)
    t0 = time.perf_counter()
    prep = prepare(cfg)
    check_output_dir(out)
    clear_checkpoints(cfg)
    if cfg.ranks is not None and cfg.retrain_init == "warm":
        print(f"autolora: --ranks {cfg.ranks}: no searched components to start from, retraining fresh")

    def score(model: nn.Module, progress: bool = False, generations: Path | None = None) -> dict:
        args = (cfg.eval_batch_size, prep.device, progress, cfg.max_generate, cfg.decoding, generations)
        return evaluate(model, prep.task, *args)

    clock = PhaseClock(t0)
    curve = EvalCurve(cfg.eval_every, score, every_process=cfg.fsdp)
    figures = RunFiguresAtSwitch(out, spare_core(prep.device))
    trainer = build_trainer(cfg, prep, [clock, curve, figures])
    curve.trainer = figures.trainer = trainer
    main = trainer.is_world_process_zero()
    if main:
        atomic_write_json(out / CONFIG_NAME, run_record(cfg))
        if prep.task.label_names:  # class id -> the label the data spelled it with
            atomic_write_json(out / "labels.json", dict(enumerate(map(str, prep.task.label_names))))
        if cfg.resume:
            print(resume_message(out, trainer.phase), file=sys.stderr)
    trainer.train(resume_from_checkpoint=True if cfg.resume else None)
    model = trainer.model
    if main or cfg.fsdp:  # a sharded base: every process runs the forward passes (each gathers the
        # base's shards from the others); the main one keeps the scores and writes
        metrics = score(model, cfg.progress and main, out / "generations.jsonl" if main else None)
    if not main:  # evaluation and artifacts are the main process's
        return {"ranks": trainer.ranks, "rank": trainer.args.process_index}
    figures.wait()
    export_peft(model, out / "adapter", prep.trainable, cfg.model)
    autolora.save_adapter(model, out / "autolora_adapter", prep.trainable)
    if cfg.save_merged:
        save_merged(model, out / "merged", prep.task.tokenizer)
    summary = _summary(cfg, prep, trainer, metrics, clock, curve, t0)
    atomic_write_json(out / "metrics.json", summary)
    return summary


def _ranks_from(cfg: PipelineConfig, result) -> str:
    total = result.rank_total if result is not None else None
    if total is None:
        return f"search ({cfg.rank_rule} rule, its own ranks)"
    return f"search ({cfg.rank_rule} rule; {total} ranks shared by {cfg.rank_share})"


def _summary(cfg, prep: Prepared, trainer, metrics: dict, clock, curve, t0: float) -> dict:
    result = trainer.search_result
    ranks = trainer.ranks
    searched = prep.given_ranks is None
    selection = None
    if searched and result is not None and result.diagnostics is not None:
        selection = {k: v for k, v in result.diagnostics.items() if k != "per_adapter"}
    rule_ranks = result.rule_ranks if searched and result is not None else prep.listed_ranks
    return {
        "task": prep.task.task,
        "metric": prep.task.metric,
        "eval": metrics,
        "eval_curve": [*curve.records(), {"step": prep.retrain_steps, **metrics}] if cfg.eval_every else None,
        "ranks": ranks,
        "rank_total": sum(ranks.values()),
        "ranks_selected": None if rule_ranks == ranks else rule_ranks,
        "ranks_from": cfg.ranks if not searched else _ranks_from(cfg, result),
        "update_norms": result.update_norms if searched and result is not None else None,
        "selection": selection,
        "trainable_parameters": autolora.count_trainable(trainer.model),
        "seconds": {**clock.seconds(searched), "eval_curve": round(curve.seconds, 2),
                    "total": round(time.perf_counter() - t0, 2)},
        "device": str(prep.device),
        "world_size": trainer.args.world_size,
    }  # fmt: skip
