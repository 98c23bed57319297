"""The whole AutoLoRA pipeline: split -> bilevel search -> rank selection -> retrain -> evaluate -> export.

Artifacts in the output directory (each written atomically):
  config.json           the resolved configuration
  ranks.json            per-adapter ranks (alpha >= 1/k) and final alpha
  alpha_history.json    alpha of every adapter along the search
  rank_heatmap.png, alpha_trajectories.png, rank_trajectories.png (the ranks along the search)
  metrics.json          the evaluation metrics of the retrained model, cost and parameter counts
  generations.jsonl     causal-lm with --max-generate: each input's generated text and references
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
from autolora.search import BilevelSearch, SearchStepConfig, beta_moves, model_loss
from autolora.search.diagnostics import json_safe
from autolora.search.tracker import SearchTracker
from autolora.train.activation_checkpointing import enable_activation_checkpointing
from autolora.train.distributed import init_distributed
from autolora.train.loop import BatchStream, run_phase
from autolora.train.lr_schedule import lr_schedule
from autolora.tuner.allocation import RankPolicy
from autolora.tuner.ranks import check_ranks, check_total, read_ranks, scaled_ranks
from autolora.tuner.selection import keep_selected_, update_norms


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
    """`autolora run` as an object: split, search, select, retrain, evaluate, export.

    Runs the phases in order; each phase resumes from its checkpoint when config.resume is set.
    Under torchrun or accelerate every process builds one; rank 0 writes the artifacts.

    Args:
        config: the run's options, validated here.

    Raises:
        ValueError: an option out of range.
    """

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
        self.given_ranks = None
        names = [n for n, a in autolora.adapters(self._search_model) if a.beta is not None]
        if self.config.ranks is not None:  # --ranks: no search; checked against this model's adapters
            self.given_ranks = read_ranks(self.config.ranks)
            check_ranks(self.given_ranks, names, self.config.k, where=f"ranks ({self.config.ranks})")
        if self.config.rank_total is not None:
            check_total(len(names), self.config.rank_total, self.config.k, where="rank_total")
        return self.task

    @property
    def search_model(self) -> nn.Module | None:
        """The model prepare() built for the search (None once the search has taken it)."""
        return self._search_model

    def new_model(self, mode: str, ranks: dict[str, int] | None = None) -> nn.Module:
        cfg = self.config
        model, new_modules = load_model(
            cfg.model,
            self.task.task,
            self.task.num_labels,
            self.tokenizer,
            cfg.hypergradient == "exact",
            cfg.pooling,
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
        named = [(n, a) for n, a in autolora.adapters(model) if a.beta is not None]
        policy = RankPolicy.of(
            len(named), cfg.k, cfg.rank_rule, cfg.rank_budget, cfg.rank_total, cfg.rank_share
        )
        tracker = SearchTracker(
            named,
            policy=policy,
            window=cfg.stability_window,
            stop_when_stable=cfg.stop_when_stable,
            min_steps=cfg.min_search_steps,
        )
        history: list[dict] = []

        def step(done: int) -> dict[str, torch.Tensor]:
            if beta_moves(done, cfg.hypergradient, cfg.beta_warmup_steps, cfg.beta_every):
                return searcher.step(tr.next(), val.next())
            return searcher.inner_step(tr.next())  # W alone (autolora.search.schedule)

        run_phase(
            name="search",
            total_steps=_steps(cfg.search_epochs, tr, cfg.max_search_steps),
            step_fn=step,
            model=model,
            stateful={"inner_opt": inner_opt, "outer_opt": outer_opt, "tr": tr, "val": val},
            checkpoint=self.out / "checkpoints" / "search.pt",
            checkpoint_every=cfg.checkpoint_every,
            history=history,
            on_step=lambda i, losses, readings: tracker.record(i, losses, history, readings),
            observe=tracker.observe,
            log_every=cfg.log_every,
            progress=cfg.progress,
            is_main=self.main,
            stop=tracker.should_stop,
        )
        ranks = tracker.ranks(history)
        self.diagnostics = tracker.diagnose(history)
        self._keep_weights = tracker.keep_weights(history)
        if self._keep_weights is None and policy.total is not None:  # rule alpha: the top ranks by alpha
            self._keep_weights = {n: a.alpha().detach() for n, a in named}
        norms = update_norms(model) if cfg.rank_share == "norm" else None  # exact, not the 5-decimal record
        self.searched = {
            "rank_total": policy.total,
            "ranks_selected": history[-1].get("rule_ranks"),
            "update_norms": norms,
        }
        if self.main:
            final_alpha = {n: [float(v) for v in a.alpha().detach().cpu()] for n, a in named}
            report = {"ranks": ranks, "k": cfg.k, "rule": cfg.rank_rule, "alpha": final_alpha}
            report.update(rank_share=cfg.rank_share, **self.searched)
            report["rank_trajectory"] = tracker.rank_trajectory(history)
            report["diagnostics"] = json_safe(self.diagnostics)
            atomic_write_json(self.out / "ranks.json", report)
            atomic_write_json(
                self.out / "alpha_history.json", {"adapters": [n for n, _ in named], "history": history}
            )
            self._figures = RunFigures(self.out, background=spare_core(self.device))
        return ranks, history, model

    def wait_for_figures(self) -> None:
        """Block until the search's plots are written; raises if drawing them failed."""
        if self._figures is not None:
            figures, self._figures = self._figures, None
            figures.wait()

    def retrain(
        self, ranks: dict[str, int], searched: nn.Module | None, init: str | None = None
    ) -> nn.Module:
        """Train fixed-rank adapters of `ranks` on D_tr + D_val. warm: the searched model itself, turned
        in place into the fixed-rank model of its kept components (nothing is loaded again); fresh: a
        new model from the pretrained weights (`searched` is not used). init: default retrain_init."""
        cfg = self.config
        if (init or cfg.retrain_init) == "warm":
            if searched is None:
                raise ValueError("retrain_init: 'warm' needs the searched model in this process")
            model = keep_selected_(searched, ranks, rule=cfg.rank_rule, weights=self._keep_weights).train()
        else:
            model = self.new_model(mode="fixed", ranks=ranks).train()
        from datasets import concatenate_datasets

        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr_retrain or cfg.lr_w, weight_decay=cfg.weight_decay)
        stream = self.stream(concatenate_datasets([self.d_tr, self.d_val]), cfg.seed + 2)
        scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        dtype = cfg.autocast_dtype
        steps = _steps(cfg.retrain_epochs, stream, cfg.max_retrain_steps)
        stateful = {"opt": opt, "stream": stream, "scaler": scaler}
        schedule = lr_schedule(opt, cfg.retrain_schedule, steps)
        if schedule is not None:
            stateful["schedule"] = schedule

        def step(done: int) -> dict[str, torch.Tensor]:
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
            if schedule is not None:
                schedule.step()
            return {"loss": total[0]}

        def eval_step(n: int) -> bool:  # a logging step, so its record is made right after the step
            return bool(cfg.eval_every) and n % cfg.eval_every == 0 and n < steps

        def on_step(n: int, losses: dict, readings: None) -> dict:  # the eval curve resumes with history
            record = {"step": n, **losses}
            if eval_step(n) and self.main:
                record["eval"] = self.evaluate(model)
            return record

        history = run_phase(
            name="retrain",
            total_steps=steps,
            step_fn=step,
            model=model,
            stateful=stateful,
            checkpoint=self.out / "checkpoints" / "retrain.pt",
            checkpoint_every=cfg.checkpoint_every,
            history=[],
            on_step=on_step,
            log_every=cfg.log_every,
            log_at=eval_step,
            progress=cfg.progress,
            is_main=self.main,
        )
        self.eval_curve = [{"step": r["step"], **r["eval"]} for r in history if "eval" in r]
        self.retrain_steps = steps
        return model

    def _ranks_from(self) -> str:
        cfg, total = self.config, self.searched["rank_total"]
        if total is None:
            return f"search ({cfg.rank_rule} rule, its own ranks)"
        return f"search ({cfg.rank_rule} rule; {total} ranks shared by {cfg.rank_share})"

    def evaluate(self, model: nn.Module, generations: Path | None = None) -> dict[str, float]:
        """The eval metrics; generations: where the generated texts go (the final evaluation's)."""
        cfg = self.config
        args = (cfg.eval_batch_size, self.device, cfg.progress, cfg.max_generate, cfg.decoding, generations)
        return evaluate(model, self.task, *args)

    # -- everything --------------------------------------------------------------------------------
    def run(self) -> dict:
        """The whole pipeline; the artifacts (ranks.json, metrics.json, adapter/, ...) go to output_dir.

        Returns:
            On rank 0, the summary written to metrics.json: eval metrics, ranks, rank_total, the
            selection's verdict, trainable parameters, seconds per phase; on other ranks, their ranks.
        """
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
        if self.given_ranks is not None:  # reuse a search: retrain from the pretrained weights
            ranks, searched, self._search_model, self.diagnostics = self.given_ranks, None, None, None
            if cfg.retrain_init == "warm" and self.main:
                print(
                    f"autolora: --ranks {cfg.ranks}: no searched components to start from, retraining fresh"
                )
        else:
            ranks, _, searched = self.search()
        t_search = time.perf_counter() - t0
        selected, norms = ranks, None
        if self.given_ranks is None:  # the search applied the policy: its budget, shared by the search
            selected, norms = self.searched["ranks_selected"] or ranks, self.searched["update_norms"]
        elif cfg.rank_total is not None:  # a --ranks file carried to an explicit total, same order
            ranks = scaled_ranks(ranks, cfg.rank_total, cfg.k)
        init = "fresh" if self.given_ranks is not None else cfg.retrain_init
        if init == "fresh":
            searched = None  # freed before the fresh model is built: one model in memory at a time
        model = self.retrain(ranks, searched, init)
        t_retrain = time.perf_counter() - t0 - t_search
        if not self.main:  # evaluation and artifacts are rank 0's; the others wait for it
            self.dist.barrier()
            return {"ranks": ranks, "rank": self.dist.rank}
        metrics = self.evaluate(model, self.out / "generations.jsonl")
        self.wait_for_figures()
        export_peft(model, self.out / "adapter", self.trainable, cfg.model)
        autolora.save_adapter(model, self.out / "autolora_adapter", self.trainable)
        if cfg.save_merged:
            save_merged(model, self.out / "merged", self.tokenizer)
        summary = {
            "task": self.task.task,
            "metric": self.task.metric,
            "eval": metrics,
            "eval_curve": [*self.eval_curve, {"step": self.retrain_steps, **metrics}]
            if cfg.eval_every
            else None,
            "ranks": ranks,
            "rank_total": sum(ranks.values()),
            "ranks_selected": None if selected == ranks else selected,
            "ranks_from": cfg.ranks if self.given_ranks is not None else self._ranks_from(),
            "update_norms": norms,
            "selection": None
            if self.diagnostics is None
            else {k: v for k, v in json_safe(self.diagnostics).items() if k != "per_adapter"},
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
    """Run the whole pipeline, as `autolora run` does.

    Args:
        config: the run's options (`load_config` builds one).

    Returns:
        The summary written to metrics.json (see `Pipeline.run`).
    """
    return Pipeline(config).run()
