"""AutoLoRA in a Hugging Face Trainer script: the search, the rank selection and the retraining run
inside one `trainer.train()`.

    autolora.inject(model, rank=8, trainable=["classifier"])          # in place of get_peft_model
    trainer = AutoLoraTrainer(model=model, args=args, train_dataset=train,
                              autolora=AutoLoraArguments(search_steps=200))
    trainer.train()
    trainer.save_model()                                               # PEFT layout + ranks.json

Phases, by optimizer step (state.global_step):
  search   [0, search_steps): each step is one BilevelSearch iteration (autolora.search) on its own
           seeded streams over D_tr and D_val (val_dataset, or the pipeline's 1:1 split of
           train_dataset), so W never trains on the examples beta is judged on; the Trainer's batches
           of those steps are drawn and not used. grad_W L_tr goes into .grad, so the Trainer's
           clipping, optimizer and schedule update W; beta takes its own Adam step here.
  switch   ranks selected (AutoLoraArguments.rank_rule, rank_budget, rank_share: the budget's
           total shared by the search; autolora.tuner.allocation), the adapters turned in place
           into fixed-rank ones (warm start: nothing reloaded), ranks.json written, optimizer and
           schedule rebuilt.
  retrain  [search_steps, max_steps): the Trainer's own step on the whole train_dataset.
Each phase gets the Trainer's schedule (warmup and decay) over its own steps, as the pipeline trains
the searched and the fixed adapters in two runs.

Several processes (torchrun, accelerate launch): the steps run on the unwrapped model and average
gradients with autolora.train.distributed, not through DDP: the search differentiates with
torch.autograd.grad, which DDP's reducer does not see, and after the switch the fixed-rank
parameters are new tensors the DDP wrapper does not hold.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.distributed as torch_dist

from autolora.extras import MissingExtra, missing

if absent := missing("trainer"):
    raise MissingExtra("trainer", "AutoLoraTrainer", absent)

from transformers import Trainer, TrainerCallback

from autolora.integrations.arguments import AutoLoraArguments
from autolora.integrations.trainer_state import (
    STATE_NAME,
    default_split,
    fixed_layout_,
    head_modules,
    load_state,
)
from autolora.io.atomic import atomic_write_json
from autolora.io.peft_export import export_peft
from autolora.search import BilevelSearch, beta_moves
from autolora.train.distributed import DistContext
from autolora.train.loop import BatchStream, load_trainable_state, trainable_state
from autolora.train.state import save_checkpoint
from autolora.tuner.allocation import RankPolicy
from autolora.tuner.params import adapters, inner_parameters, selection_parameters
from autolora.tuner.selection import keep_selected_, policy_ranks

RANKS_NAME = "ranks.json"


class _SwitchAtStepEnd(TrainerCallback):
    """Switches to retraining right after the search's last optimizer step, so a checkpoint taken at
    that step already holds the fixed-rank model."""

    def __init__(self, trainer: AutoLoraTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._maybe_switch()
        return control


class AutoLoraTrainer(Trainer):
    """transformers.Trainer for a model with search-mode AutoLoRA adapters (autolora.inject).

    One `train()` searches (each optimizer step one bilevel iteration), selects the ranks, turns the
    adapters into fixed-rank ones in place and retrains them for the remaining steps. After
    `train()`, `ranks` holds the selected ranks (adapter name -> rank), output_dir/ranks.json too;
    `save_model()` writes the PEFT layout.

    Args:
        *args (Any): the Trainer's positional arguments.
        autolora: the search's length and options.
        val_dataset (Dataset | None): beta's data (the outer step); None splits train_dataset in halves with a
            seeded split.
        **kwargs (Any): the Trainer's keyword arguments (model, args, train_dataset, processing_class, ...);
            `optimizers` is refused, since each phase builds its own.

    Raises:
        TypeError: `autolora` is not an AutoLoraArguments.
        ValueError: `optimizers` given, no train_dataset, a model without search-mode adapters, or a
            Trainer setting the search cannot run with (named in the message).
    """

    def __init__(self, *args, autolora: AutoLoraArguments, val_dataset=None, **kwargs) -> None:
        if not isinstance(autolora, AutoLoraArguments):
            raise TypeError(f"autolora: expected AutoLoraArguments, got {type(autolora).__name__}")
        optimizers = kwargs.get("optimizers", (None, None))
        if optimizers[0] is not None or optimizers[1] is not None:
            raise ValueError(
                "optimizers: AutoLoraTrainer builds each phase's optimizer and schedule itself (retraining "
                "has new parameters); choose them with TrainingArguments.optim or optimizer_cls_and_kwargs"
            )
        super().__init__(*args, **kwargs)
        self.autolora_args = autolora
        self._check_setup()
        seed = self.args.seed if autolora.split_seed is None else autolora.split_seed
        self._seed = seed
        if val_dataset is None:
            self._d_tr, self._d_val = default_split(self.train_dataset, seed)
        else:
            self._d_tr, self._d_val = self.train_dataset, val_dataset
        self.phase = "search"
        self.ranks: dict[str, int] | None = None
        self._streams: tuple[BatchStream, BatchStream] | None = None
        self._searcher: BilevelSearch | None = None
        self._beta_opt: torch.optim.Optimizer | None = None
        self._resumed: dict | None = None  # the beta optimiser's and streams' state, until they exist
        self._total_steps: int | None = None
        self._search_logs: dict[str, float] = {}
        self._ranks_record: dict | None = None
        self.add_callback(_SwitchAtStepEnd(self))

    def _check_setup(self) -> None:
        """Everything the search cannot run with, refused before any training."""
        if not selection_parameters(self.model):
            raise ValueError(
                "model: has no search-mode AutoLoRA adapters; "
                "call autolora.inject(model, mode='search') first"
            )
        a = self.autolora_args
        if a.rank_total is not None or a.rank_budget is not None:
            ks = [ad.rank for _, ad in adapters(self.model) if ad.beta is not None]
            if len(set(ks)) > 1:
                raise ValueError(
                    f"rank_budget/rank_total: needs adapters of one k, got k in {sorted(set(ks))}; "
                    "set rank_budget=None for the rule's own ranks"
                )
            self._policy()  # an explicit rank_total outside n..n*k fails here
        if self.train_dataset is None:
            raise ValueError("train_dataset: AutoLoraTrainer needs one (the search and retraining read it)")
        if self.args.load_best_model_at_end:
            raise ValueError(
                "load_best_model_at_end: not supported (the best checkpoint may predate the switch)"
            )
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise ValueError("deepspeed/fsdp: not supported; the search needs whole, unsharded adapters")
        gc_on = getattr(self.args, "activation_checkpointing", None) or self.args.gradient_checkpointing
        gc_kwargs = (
            getattr(self.args, "activation_checkpointing_kwargs", None)
            or self.args.gradient_checkpointing_kwargs
            or {}
        )
        if gc_on and isinstance(gc_kwargs, dict) and gc_kwargs.get("use_reentrant", False):
            raise ValueError(
                "activation_checkpointing_kwargs: use_reentrant=True cannot be differentiated with "
                "torch.autograd.grad, which the search needs; pass use_reentrant=False"
            )

    # -- the search's data and length ----------------------------------------------------------------
    def _search_streams(self) -> tuple[BatchStream, BatchStream]:
        """Seeded streams over D_tr and D_val: this rank's `gradient_accumulation_steps` micro-batches of
        per_device_train_batch_size each step, with the columns the model does not take removed."""
        if self._streams is None:
            args = self.args

            def stream(dataset, seed: int) -> BatchStream:
                dataset = self._remove_unused_columns(dataset, description="autolora search")
                return BatchStream(
                    dataset,
                    args.per_device_train_batch_size,
                    self.data_collator,
                    seed,
                    args.device,
                    args.process_index,
                    args.world_size,
                    args.gradient_accumulation_steps,
                )

            self._streams = (stream(self._d_tr, self._seed), stream(self._d_val, self._seed + 1))
            if self._resumed is not None:
                for s, key in zip(self._streams, ("tr", "val"), strict=True):
                    s.load_state_dict(self._resumed["streams"][key])
        return self._streams

    @property
    def search_steps(self) -> int:
        """Optimizer steps of the search: search_steps, or search_epochs passes over D_tr.

        Returns:
            The number of steps before retraining begins.
        """
        a = self.autolora_args
        if a.search_steps is not None:
            return a.search_steps
        return max(1, math.ceil(a.search_epochs * len(self._search_streams()[0])))

    def _dist(self) -> DistContext:
        if self.args.world_size > 1 and torch_dist.is_available() and torch_dist.is_initialized():
            return DistContext(torch_dist.get_rank(), torch_dist.get_world_size())
        return DistContext()

    def _grad_scale(self) -> float:
        """fp16: the accelerator's loss scale (its optimizer step unscales .grad); 1 otherwise."""
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is None or not scaler.is_enabled():
            return 1.0
        # The scaler makes its scale on the first scale() call, which the search (it never calls
        # accelerator.backward) would not make: GradScaler.step would then refuse to step.
        scaler.scale(torch.ones((), device=self.args.device))
        return float(scaler.get_scale())

    # -- optimizers ----------------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        """The Trainer's optimizer over W only during the search: beta has its own Adam (lr_beta)."""
        betas = selection_parameters(self.model) if self.optimizer is None else []
        for b in betas:  # hidden from the Trainer's requires_grad filter for the time of the call
            b.requires_grad_(False)
        try:
            return super().create_optimizer(model)
        finally:
            for b in betas:
                b.requires_grad_(True)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The Trainer's schedule over the current phase's steps (num_training_steps is the run's)."""
        search = self.search_steps
        if self.phase == "search" and search >= num_training_steps:
            raise ValueError(
                f"search_steps: the search takes {search} of the run's {num_training_steps} optimizer steps "
                "and leaves none to retrain; raise max_steps/num_train_epochs or shorten the search"
            )
        self._total_steps = num_training_steps
        steps = search if self.phase == "search" else num_training_steps - search
        return super().create_scheduler(steps, optimizer)

    # -- steps ---------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        self._maybe_switch()  # a run resumed at exactly search_steps switches before its first step
        if self.phase == "search":
            # One search iteration per optimizer step, at the group's last micro-batch: it reads its
            # own accumulation micro-batches from D_tr and D_val; the others add nothing.
            if not self.accelerator.sync_gradients:
                return torch.zeros((), device=self.args.device)
            return self._search_step()
        dist = self._dist()
        if not dist.enabled:
            return super().training_step(model, inputs, num_items_in_batch)
        loss = super().training_step(self.model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:
            dist.allreduce_mean_([p.grad for p in self.model.parameters() if p.grad is not None])
        return loss

    def _get_searcher(self) -> BilevelSearch:
        if self._searcher is None:
            outer = selection_parameters(self.model)
            self._beta_opt = torch.optim.Adam(outer, lr=self.autolora_args.lr_beta)
            if self._resumed is not None and self._resumed.get("beta_opt") is not None:
                self._beta_opt.load_state_dict(self._resumed["beta_opt"])
            dist, args = self._dist(), self.args
            autocast = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
            self._searcher = BilevelSearch(
                self.model,
                inner_parameters(self.model),
                outer,
                getattr(self.optimizer, "optimizer", self.optimizer),  # lookahead="adam" reads its moments
                self._beta_opt,
                self.autolora_args.step_config(args.learning_rate),
                loss_fn=lambda model, batch: self.compute_loss(model, batch),
                reduce=dist.allreduce_mean_ if dist.enabled else None,
                autocast=autocast,
            )
        return self._searcher

    def _search_step(self) -> torch.Tensor:
        """BilevelSearch.step's update, with W's half left to the Trainer's optimizer."""
        searcher, (tr, val) = self._get_searcher(), self._search_streams()
        scale = self._grad_scale()
        searcher.loss_scale = scale
        self.model.train()
        a = self.autolora_args  # W alone (beta stays where it is) on the steps beta does not move
        if not beta_moves(self.state.global_step, a.hypergradient, a.beta_warmup_steps, a.beta_every):
            loss_tr, g = searcher.train_gradient(tr.next())
            self._search_logs = {}
        else:
            loss_tr, g, hyper, loss_val = searcher.hypergradient(tr.next(), val.next())
            for p, h in zip(searcher.outer, hyper, strict=True):
                p.grad = h.detach()
            self._beta_opt.step()
            self._beta_opt.zero_grad(set_to_none=True)
            self._search_logs = {"search_val_loss": loss_val.detach()}  # read in log(): no sync a step
        for p, gi in zip(searcher.inner, g, strict=True):
            p.grad = gi.detach() * scale if scale != 1.0 else gi.detach()
        return loss_tr.detach().to(self.args.device)

    def _policy(self) -> RankPolicy:
        """The rule, budget and share of AutoLoraArguments over this model's searched adapters."""
        a, ks = self.autolora_args, [ad.rank for _, ad in adapters(self.model) if ad.beta is not None]
        return RankPolicy.of(len(ks), max(ks), a.rank_rule, a.rank_budget, a.rank_total, a.rank_share)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.phase == "search" and "loss" in logs:  # the ranks the switch would apply now
            ranks = list(policy_ranks(self.model, self._policy())[2].values())
            search = {k: float(v) for k, v in self._search_logs.items()}
            logs = {**logs, **search, "rank_sum": sum(ranks), "rank_max": max(ranks)}
        super().log(logs, start_time)

    # -- the switch ----------------------------------------------------------------------------------
    def _maybe_switch(self) -> None:
        if self.phase == "search" and self.state.global_step >= self.search_steps:
            self._switch()

    def _switch(self) -> None:
        """Select ranks, keep the selected components in place, rebuild optimizer and schedule."""
        policy = self._policy()
        rule = policy.rule
        selected, sizes, ranks = policy_ranks(self.model, policy)
        searched = [(n, a) for n, a in adapters(self.model) if a.beta is not None]
        alpha = {n: a.alpha().detach().float().cpu().tolist() for n, a in searched}
        k = {n: a.rank for n, a in searched}
        norms = sizes if policy.share == "norm" else None
        weights = None
        if policy.total is not None:  # rule alpha: the top ranks by alpha
            weights = {n: a.alpha().detach() for n, a in searched}
        keep_selected_(self.model, ranks, rule=rule, weights=weights)
        self.phase, self.ranks = "retrain", ranks
        self._searcher = self._beta_opt = self._resumed = None
        self._ranks_record = {"ranks": ranks, "k": k, "alpha": alpha, "search_steps": self.search_steps}
        if policy.total is not None:
            self._ranks_record.update(ranks_selected=selected, update_norms=norms, rank_total=policy.total)
        if self.args.should_save:
            atomic_write_json(Path(self.args.output_dir) / RANKS_NAME, self._ranks_record)
        self.optimizer, self.lr_scheduler = None, None
        self.create_optimizer()
        self.optimizer = self.accelerator.prepare(self.optimizer)
        self.create_scheduler(self._total_steps or self.state.max_steps)
        for attr in ("model", "optimizer", "lr_scheduler"):
            setattr(self.callback_handler, attr, getattr(self, attr))

    # -- saving and resuming -------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The adapter in PEFT's layout (PeftModel.from_pretrained loads it) and ranks.json; in a
        checkpoint (the Trainer's internal call) also autolora_state.pt, which resuming reads."""
        if not self.args.should_save:
            return
        out = Path(output_dir or self.args.output_dir)
        base = getattr(getattr(self.model, "config", None), "_name_or_path", None) or None
        export_peft(self.model, out, head_modules(self.model), base)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(out)
        if self.ranks is not None:
            atomic_write_json(out / RANKS_NAME, self._ranks_record)
        if _internal_call:
            save_checkpoint(out / STATE_NAME, self._state())

    def _state(self) -> dict:
        tr, val = self._search_streams()
        return {
            "phase": self.phase,
            "search_step": min(self.state.global_step, self.search_steps),
            "search_steps": self.search_steps,
            "ranks": self.ranks,
            "ranks_record": self._ranks_record,
            "params": trainable_state(self.model),
            "beta_opt": self._beta_opt.state_dict() if self._beta_opt is not None else None,
            "streams": {"tr": tr.state_dict(), "val": val.state_dict()},
        }

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """The trainable parameters, beta's optimiser and the search's stream positions; after the
        switch the fixed-rank model is rebuilt first, so the retraining optimizer's state fits it."""
        state = load_state(resume_from_checkpoint)
        if state["search_steps"] != self.search_steps:
            raise ValueError(
                f"search_steps: the checkpoint's search is {state['search_steps']} steps, this run's "
                f"{self.search_steps}; resume with the same AutoLoraArguments"
            )
        if state["phase"] == "retrain" and self.phase == "search":
            fixed_layout_(self.model, state["ranks"])
            self.phase, self.ranks, self._ranks_record = "retrain", state["ranks"], state["ranks_record"]
            if self.args.should_save:  # this run's output_dir gets the ranks too, as at the switch
                atomic_write_json(Path(self.args.output_dir) / RANKS_NAME, self._ranks_record)
        load_trainable_state(self.model, state["params"])
        self._resumed = state if state["phase"] == "search" else None
        if self._streams is not None:  # built already (search_epochs): put them where the run was
            for s, key in zip(self._streams, ("tr", "val"), strict=True):
                s.load_state_dict(state["streams"][key])
