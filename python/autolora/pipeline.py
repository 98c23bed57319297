"""The whole AutoLoRA pipeline: split -> bilevel search -> rank selection -> retrain -> evaluate -> export.

Artifacts in the output directory (each written atomically):
  config.json           the resolved configuration
  ranks.json            per-adapter ranks (alpha >= 1/k) and final alpha
  alpha_history.json    alpha of every adapter along the search
  rank_heatmap.png, alpha_trajectories.png
  metrics.json          the evaluation metrics of the retrained model, cost and parameter counts
  adapter/              the retrained adapter in PEFT's layout (adapter_config.json, safetensors)
  autolora_adapter/     the same in autolora's own format (autolora.load_adapter)
  merged/               on request: the merged model via save_pretrained
  checkpoints/          search.pt and retrain.pt, for --resume
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

import autolora
from autolora.config import PipelineConfig
from autolora.data import TaskData, load_task, split_train_val
from autolora.eval.evaluation import evaluate
from autolora.io.atomic import atomic_write_json
from autolora.io.peft_export import export_peft, save_merged
from autolora.io.plots import RunFigures
from autolora.models import load_model, load_tokenizer
from autolora.search import BilevelSearch, SearchStepConfig, model_loss
from autolora.train.activation_checkpointing import enable_activation_checkpointing
from autolora.train.distributed import init_distributed
from autolora.train.loop import BatchStream, run_phase
from autolora.tuner.selection import keep_selected_, select_ranks


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


def _steps(epochs: float, stream: BatchStream, cap: int | None) -> int:
    steps = max(1, math.ceil(epochs * len(stream)))
    return min(steps, cap) if cap else steps


class Pipeline:
    """Runs the phases in order; each phase resumes from its checkpoint when config.resume is set."""

    def __init__(self, config: PipelineConfig) -> None:
        config.validate()
        self.config = config
        self.out = Path(config.output_dir)
        self.dist, self.device = init_distributed(config.device, config.dist_timeout)
        self.main = self.dist.is_main
        self._search_model: nn.Module | None = None
        self._figures: RunFigures | None = None  # the search's plots, drawn while retraining runs

    # -- setup -------------------------------------------------------------------------------------
    def prepare(self, create_output: bool = True) -> TaskData:
        """Everything that can fail on bad input, before any training starts (create_output=False:
        the output directory is checked, not created, as for a dry run)."""
        check_output_dir(self.out, create=create_output)
        torch.manual_seed(self.config.seed)
        self.tokenizer = load_tokenizer(self.config.model)
        self.task = load_task(self.config.data, self.tokenizer)
        stratify = self.task.task == "classification"
        self.d_tr, self.d_val = split_train_val(self.task.train, self.config.seed, stratify)
        # Builds the search model now, so bad targets or trainable modules fail before any training.
        self._search_model = self.new_model(mode="search")
        return self.task

    @property
    def search_model(self) -> nn.Module | None:
        """The model prepare() built for the search (None once the search has taken it)."""
        return self._search_model

    def new_model(self, mode: str, ranks: dict[str, int] | None = None) -> nn.Module:
        cfg = self.config
        model, new_modules = load_model(
            cfg.model, self.task.task, self.task.num_labels, self.tokenizer, cfg.hypergradient == "exact"
        )
        wanted = ["@head"] if cfg.trainable is None else cfg.trainable
        self.trainable = [n for t in wanted for n in (new_modules if t == "@head" else [t])]
        autolora.inject(
            model,
            cfg.targets,
            rank=cfg.k,
            lora_alpha=cfg.lora_alpha,
            dropout=cfg.dropout,
            mode=mode,
            selection=cfg.selection,
            ranks=ranks,
            trainable=self.trainable,
        )
        if cfg.gradient_checkpointing:
            enable_activation_checkpointing(model)
        model = model.to(self.device)
        self.dist.broadcast_([p.data for p in model.parameters() if p.requires_grad])  # same start
        return model

    def stream(self, dataset, seed: int) -> BatchStream:
        cfg, d = self.config, self.dist
        return BatchStream(
            dataset,
            cfg.batch_size,
            self.task.collate,
            seed,
            self.device,
            d.rank,
            d.world_size,
            cfg.grad_accum,
        )

    # -- phases ------------------------------------------------------------------------------------
    def search(self) -> tuple[dict[str, int], list[dict], nn.Module]:
        cfg = self.config
        model = self._search_model if self._search_model is not None else self.new_model(mode="search")
        self._search_model = None  # the pipeline holds no second copy once the search has it
        model.train()
        inner, outer = autolora.inner_parameters(model), autolora.selection_parameters(model)
        inner_opt = torch.optim.AdamW(inner, lr=cfg.lr_w, weight_decay=cfg.weight_decay)
        outer_opt = torch.optim.Adam(outer, lr=cfg.lr_beta)
        step_cfg = SearchStepConfig(
            cfg.hypergradient, cfg.lr_w if cfg.xi is None else cfg.xi, cfg.fd_r, cfg.lookahead, cfg.fd_scheme
        )
        searcher = BilevelSearch(
            model,
            inner,
            outer,
            inner_opt,
            outer_opt,
            step_cfg,
            model_loss,
            reduce=self.dist.allreduce_mean_ if self.dist.enabled else None,
            autocast=cfg.autocast_dtype,
            loss_scale=cfg.loss_scale if cfg.precision == "fp16" else 1.0,
        )
        tr, val = self.stream(self.d_tr, cfg.seed), self.stream(self.d_val, cfg.seed + 1)
        names = [n for n, a in autolora.adapters(model) if a.beta is not None]

        searched = [a for _, a in autolora.adapters(model) if a.beta is not None]

        def on_step(step: int, losses: dict) -> dict:
            with torch.no_grad():  # one host transfer for every alpha (one sync per step on a GPU)
                rows = (
                    torch.cat([a.alpha().float() for a in searched]).cpu().split([a.rank for a in searched])
                )
            alphas = {n: [round(v, 5) for v in r.tolist()] for n, r in zip(names, rows, strict=True)}
            ranks = sum(a.selected_rank(r) for a, r in zip(searched, rows, strict=True))
            return {"step": step, **losses, "rank_sum": ranks, "alpha": alphas}

        history: list[dict] = []
        run_phase(
            name="search",
            total_steps=_steps(cfg.search_epochs, tr, cfg.max_search_steps),
            step_fn=lambda: searcher.step(tr.next(), val.next()),
            model=model,
            stateful={"inner_opt": inner_opt, "outer_opt": outer_opt, "tr": tr, "val": val},
            checkpoint=self.out / "checkpoints" / "search.pt",
            checkpoint_every=cfg.checkpoint_every,
            history=history,
            on_step=on_step,
            progress=cfg.progress,
            is_main=self.main,
        )
        ranks = select_ranks(model)
        final_alpha = {n: [float(v) for v in a.alpha().detach().cpu()] for n, a in autolora.adapters(model)}
        if self.main:
            atomic_write_json(self.out / "ranks.json", {"ranks": ranks, "k": cfg.k, "alpha": final_alpha})
            atomic_write_json(self.out / "alpha_history.json", {"adapters": names, "history": history})
            self._figures = RunFigures(self.out, background=spare_core(self.device))
        return ranks, history, model

    def wait_for_figures(self) -> None:
        """Block until the search's plots are written; raises if drawing them failed."""
        if self._figures is not None:
            figures, self._figures = self._figures, None
            figures.wait()

    def retrain(self, ranks: dict[str, int], searched: nn.Module | None) -> nn.Module:
        """Train fixed-rank adapters of `ranks` on D_tr + D_val. warm: the searched model itself, turned
        in place into the fixed-rank model of its kept components (nothing is loaded again); fresh: a
        new model from the pretrained weights (`searched` is not used)."""
        cfg = self.config
        if cfg.retrain_init == "warm":
            if searched is None:
                raise ValueError("retrain_init: 'warm' needs the searched model in this process")
            model = keep_selected_(searched, ranks).train()
        else:
            model = self.new_model(mode="fixed", ranks=ranks).train()
        from datasets import concatenate_datasets

        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr_retrain or cfg.lr_w, weight_decay=cfg.weight_decay)
        stream = self.stream(concatenate_datasets([self.d_tr, self.d_val]), cfg.seed + 2)
        scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        dtype = cfg.autocast_dtype

        def step() -> dict[str, float]:
            micro = stream.next()
            total = torch.zeros(1, device=self.device)
            for batch in micro:
                with torch.autocast(self.device.type, dtype) if dtype else nullcontext():
                    loss = model_loss(model, batch) / len(micro)
                scaler.scale(loss).backward()
                total += loss.detach().float()
            scaler.unscale_(opt)
            self.dist.allreduce_mean_([p.grad for p in params if p.grad is not None] + [total])
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            return {"loss": float(total)}

        run_phase(
            name="retrain",
            total_steps=_steps(cfg.retrain_epochs, stream, cfg.max_retrain_steps),
            step_fn=step,
            model=model,
            stateful={"opt": opt, "stream": stream, "scaler": scaler},
            checkpoint=self.out / "checkpoints" / "retrain.pt",
            checkpoint_every=cfg.checkpoint_every,
            history=[],
            progress=cfg.progress,
            is_main=self.main,
        )
        return model

    # -- everything --------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        t0 = time.perf_counter()
        self.prepare()
        if not cfg.resume and self.main:
            for ckpt in ("search.pt", "retrain.pt"):
                (self.out / "checkpoints" / ckpt).unlink(missing_ok=True)
        if self.main:
            atomic_write_json(self.out / "config.json", cfg.to_dict())
        self.dist.barrier()  # no rank may read a checkpoint that rank 0 is about to delete
        # On resume a finished search reloads its final checkpoint and takes no step.
        ranks, _, searched = self.search()
        t_search = time.perf_counter() - t0
        if cfg.retrain_init == "fresh":
            searched = None  # freed before the fresh model is built: one model in memory at a time
        model = self.retrain(ranks, searched)
        t_retrain = time.perf_counter() - t0 - t_search
        if not self.main:  # evaluation and artifacts are rank 0's; the others wait for it
            self.dist.barrier()
            return {"ranks": ranks, "rank": self.dist.rank}
        metrics = evaluate(model, self.task, cfg.eval_batch_size, self.device, cfg.progress, cfg.max_generate)
        self.wait_for_figures()
        export_peft(model, self.out / "adapter", self.trainable, cfg.model)
        autolora.save_adapter(model, self.out / "autolora_adapter", self.trainable)
        if cfg.save_merged:
            save_merged(model, self.out / "merged", self.tokenizer)
        summary = {
            "task": self.task.task,
            "metric": self.task.metric,
            "eval": metrics,
            "ranks": ranks,
            "rank_total": sum(ranks.values()),
            "trainable_parameters": autolora.count_trainable(model),
            "seconds": {
                "search": round(t_search, 2),
                "retrain": round(t_retrain, 2),
                "total": round(time.perf_counter() - t0, 2),
            },
            "device": str(self.device),
            "world_size": self.dist.world_size,
        }
        atomic_write_json(self.out / "metrics.json", summary)
        self.dist.barrier()
        return summary


def run_pipeline(config: PipelineConfig) -> dict:
    return Pipeline(config).run()
