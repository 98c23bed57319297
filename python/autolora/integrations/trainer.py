"""AutoLoRA in a Hugging Face Trainer script: the search, the rank selection and the retraining run
inside one `trainer.train()`. `autolora run` drives the same trainer.

    autolora.inject(model, rank=8, trainable=["classifier"])          # in place of get_peft_model
    trainer = AutoLoraTrainer(model=model, args=args, train_dataset=train,
                              autolora=AutoLoraArguments(search_steps=200))
    trainer.train()
    trainer.save_model()                                               # PEFT layout + ranks.json

`train()` is two Trainer runs on one model, each with the Trainer's loop, optimizer, schedule,
logging, checkpoints (output_dir/search/, output_dir/retrain/) and resume:
  search   each optimizer step one BilevelSearch step (autolora.search) on its own seeded streams over
           D_tr and D_val (val_dataset, or a seeded 1:1 split of train_dataset); the Trainer's batches
           are drawn and not used. W's gradient goes into .grad for the Trainer's optimizer; beta
           takes its own Adam step. Every step's record: autolora.integrations.search_phase.
  switch   the ranks turn the adapters in place into fixed-rank ones (autolora.tuner.retraining:
           warm or fresh); ranks.json and search/result.pt are written (a resume never searches again).
  retrain  the Trainer's own step on train_dataset (retrain_args: its own TrainingArguments).
Several processes: retraining runs under the accelerator's DDP; the search differentiates with
torch.autograd.grad, which DDP does not see, so the bilevel step averages its own gradients.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from autolora.extras import MissingExtra, missing

if absent := missing("trainer"):
    raise MissingExtra("trainer", "AutoLoraTrainer", absent)

from transformers import Trainer, TrainerState, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import TrainOutput

from autolora.integrations.arguments import AutoLoraArguments
from autolora.integrations.search_phase import SearchRecorder, ranks_report, search_streams
from autolora.integrations.trainer_state import (
    RESULT_NAME,
    STATE_NAME,
    check_setup,
    default_split,
    fixed_layout_,
    global_step,
    head_modules,
    load_state,
    resume_point,
    with_values,
)
from autolora.io.atomic import atomic_write_json
from autolora.io.peft_export import export_peft
from autolora.search import BilevelSearch, beta_moves, rng_state, set_rng_state
from autolora.search.tracker import SearchTracker
from autolora.train.distributed import DistContext
from autolora.train.host import NonFiniteLoss
from autolora.train.state import load_checkpoint, load_trainable_state, save_checkpoint, trainable_state
from autolora.train.stream import BatchStream
from autolora.tuner.allocation import RankPolicy
from autolora.tuner.params import adapters, inner_parameters, selection_parameters
from autolora.tuner.retraining import SearchResult, pre_search_state, start_retraining_

RANKS_NAME = "ranks.json"
HISTORY_NAME = "alpha_history.json"


class AutoLoraTrainer(Trainer):
    """transformers.Trainer for a model with AutoLoRA adapters (autolora.inject).

    One `train()` searches (each optimizer step one bilevel iteration), selects the ranks, turns the
    adapters into fixed-rank ones in place and retrains them. A model whose adapters are all fixed
    already (given ranks) is only retrained. After `train()`, `ranks` holds the selected ranks
    (adapter name -> rank) and `search_result` the search's records; output_dir/ranks.json has them
    too; `save_model()` writes the PEFT layout.

    Args:
        *args (Any): the Trainer's positional arguments.
        autolora: the search's length and options.
        val_dataset (Dataset | None): beta's data (the outer step); None splits train_dataset in halves
            with a seeded split.
        retrain_args (TrainingArguments | None): retraining's own arguments (learning rate, schedule,
            max_steps: its length); None: `args` for the run's steps after the search.
        **kwargs (Any): the Trainer's keyword arguments (model, args, train_dataset, processing_class, ...);
            `optimizers` is refused, since each phase builds its own.

    Raises:
        TypeError: `autolora` is not an AutoLoraArguments.
        ValueError: `optimizers` given, no train_dataset, a model without adapters, or a Trainer setting
            the search cannot run with (named in the message).
    """

    def __init__(
        self,
        *args,
        autolora: AutoLoraArguments,
        val_dataset=None,
        retrain_args: TrainingArguments | None = None,
        **kwargs,
    ) -> None:
        if not isinstance(autolora, AutoLoraArguments):
            raise TypeError(f"autolora: expected AutoLoraArguments, got {type(autolora).__name__}")
        optimizers = kwargs.get("optimizers", (None, None))
        if optimizers[0] is not None or optimizers[1] is not None:
            raise ValueError(
                "optimizers: AutoLoraTrainer builds each phase's optimizer and schedule itself (retraining "
                "has new parameters); choose them with TrainingArguments.optim or optimizer_cls_and_kwargs"
            )
        # The search's own RNG stream (its dropout): it starts as the caller left the RNG and is put
        # back before each search step, so what the Trainer draws between steps (its reseeding, a
        # new epoch of its unused batches) changes nothing the search draws.
        self._search_rng: dict = rng_state()
        super().__init__(*args, **kwargs)
        self.autolora_args, self.retrain_args = autolora, retrain_args
        self._searched = [(n, a) for n, a in adapters(self.model) if a.beta is not None]
        self.phase = "search" if self._searched else "retrain"
        check_setup(self, self._searched)
        self._seed = self.args.seed if autolora.split_seed is None else autolora.split_seed
        if val_dataset is None:
            self._d_tr, self._d_val = default_split(self.train_dataset, self._seed)
        else:
            self._d_tr, self._d_val = self.train_dataset, val_dataset
        self.ranks: dict[str, int] | None = None
        if self.phase == "retrain":
            self.ranks = {n: a.rank for n, a in adapters(self.model)}
        self.search_result: SearchResult | None = None
        self._initial = pre_search_state(self.model)  # a fresh retraining puts the head back to it
        self._streams: tuple[BatchStream, BatchStream] | None = None
        self._searcher: BilevelSearch | None = None
        self._beta_opt: torch.optim.Optimizer | None = None
        self._resumed: dict | None = None  # the beta optimiser's and streams' state, until they exist
        self._recorder: SearchRecorder | None = None
        if self._searched:
            a = autolora
            tracker = SearchTracker(
                self._searched,
                policy=self._policy(),  # an explicit rank_total outside n..n*k fails here
                window=a.stability_window,
                stop_when_stable=a.stop_when_stable,
                min_steps=a.min_search_steps,
            )
            self._recorder = SearchRecorder(tracker, lambda: self.phase == "search")
            self.add_callback(self._recorder)

    def _policy(self) -> RankPolicy:
        """The rule, budget and share of AutoLoraArguments over this model's searched adapters."""
        a, ks = self.autolora_args, [ad.rank for _, ad in self._searched]
        return RankPolicy.of(len(ks), max(ks), a.rank_rule, a.rank_budget, a.rank_total, a.rank_share)

    # -- the search's data and length ----------------------------------------------------------------
    def _search_streams(self) -> tuple[BatchStream, BatchStream]:
        """Seeded streams over D_tr and D_val: this rank's `gradient_accumulation_steps` micro-batches of
        per_device_train_batch_size each step, with the columns the model does not take removed."""
        if self._streams is None:
            data = [
                self._remove_unused_columns(d, description="autolora search")
                for d in (self._d_tr, self._d_val)
            ]
            self._streams = search_streams(self.args, self.data_collator, *data, self._seed)
            if self._resumed is not None:
                for s, key in zip(self._streams, ("tr", "val"), strict=True):
                    s.load_state_dict(self._resumed["streams"][key])
        return self._streams

    @property
    def search_steps(self) -> int:
        """Optimizer steps of the search: search_steps, or search_epochs passes over D_tr.

        Returns:
            The number of steps before retraining begins (fewer run if the stop rule ends the search).
        """
        a = self.autolora_args
        if a.search_steps is not None:
            return a.search_steps
        return max(1, math.ceil(a.search_epochs * len(self._search_streams()[0])))

    def _grad_scale(self) -> float:
        """fp16: the accelerator's loss scale (its optimizer step unscales .grad); 1 otherwise."""
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is None or not scaler.is_enabled():
            return 1.0
        # The scaler makes its scale on the first scale() call, which the search (it never calls
        # accelerator.backward) would not make: GradScaler.step would then refuse to step.
        scaler.scale(torch.ones((), device=self.args.device))
        return float(scaler.get_scale())

    # -- the two runs ---------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """Search, switch, retrain; with resume_from_checkpoint (True: the latest checkpoint of each
        phase under output_dir; a path: that checkpoint), a run that stopped continues where it was.

        Args:
            resume_from_checkpoint: as the Trainer's.
            **kwargs (Any): the Trainer's train() keyword arguments.

        Returns:
            The retraining run's TrainOutput.
        """
        base = self.args
        out = Path(base.output_dir)
        phase, checkpoint, result_file = resume_point(resume_from_checkpoint, out, self.phase)
        retrain_args = self._retrain_args(base, out / "retrain")  # its length is checked before the search
        try:
            if self.phase == "search" and phase == "retrain":
                self._restore_switch(load_checkpoint(result_file), out)
            elif self.phase == "search":
                self.args = with_values(base, output_dir=str(out / "search"), max_steps=self.search_steps)
                if checkpoint is not None and global_step(checkpoint) >= self.search_steps:
                    self._load_from_checkpoint(checkpoint)  # the search's last step: nothing to run
                    self._load_rng_state(checkpoint)
                else:
                    super().train(checkpoint, **kwargs)
                self._switch(out)
            self.args = retrain_args
            self.model_wrapped = self.model  # the accelerator wraps the retraining model anew (DDP)
            self.optimizer = self.lr_scheduler = None
            checkpoint = checkpoint if phase == "retrain" else None
            if checkpoint is not None and global_step(checkpoint) >= retrain_args.max_steps:
                return self._finished(checkpoint)  # the Trainer would take one more step
            return super().train(checkpoint, **kwargs)
        finally:
            self.args = base

    def _finished(self, checkpoint: str) -> TrainOutput:
        """A retraining whose last step is in `checkpoint`: its state, nothing run."""
        self._load_from_checkpoint(checkpoint)
        self.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
        return TrainOutput(self.state.global_step, float("nan"), {})

    def _retrain_args(self, base: TrainingArguments, folder: Path) -> TrainingArguments:
        if self.retrain_args is not None:
            return with_values(self.retrain_args, output_dir=str(folder))
        total = base.max_steps
        if total <= 0:  # num_train_epochs over the Trainer's own batches, as it counts them
            per_epoch = max(len(self.get_train_dataloader()) // base.gradient_accumulation_steps, 1)
            total = math.ceil(base.num_train_epochs * per_epoch)
        search = self.search_steps if self._searched else 0
        if total <= search:
            raise ValueError(
                f"search_steps: the search takes {search} of the run's {total} optimizer steps and leaves "
                "none to retrain; raise max_steps/num_train_epochs or shorten the search"
            )
        return with_values(base, output_dir=str(folder), max_steps=total - search)

    # -- steps ---------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        if self.phase != "search":
            return super().training_step(model, inputs, num_items_in_batch)
        # One search iteration per optimizer step, at the group's last micro-batch: it reads its own
        # accumulation micro-batches from D_tr and D_val; the others add nothing.
        if not self.accelerator.sync_gradients:
            return torch.zeros((), device=self.args.device)
        set_rng_state(self._search_rng)
        searcher, (tr, val) = self._get_searcher(), self._search_streams()
        searcher.loss_scale = searcher.grad_scale = self._grad_scale()  # fp16: the scaler's scale
        self.model.train()
        a, done = self.autolora_args, self.state.global_step
        if beta_moves(done, a.hypergradient, a.beta_warmup_steps, a.beta_every):
            losses = searcher.step(tr.next(), val.next())
        else:  # W alone (beta stays where it is) on the steps beta does not move
            losses = searcher.inner_step(tr.next())
        self._recorder.push(done + 1, losses)
        self._search_rng = rng_state()
        return losses["loss_tr"].to(self.args.device)

    def _get_searcher(self) -> BilevelSearch:
        if self._searcher is None:
            outer = selection_parameters(self.model)
            self._beta_opt = torch.optim.Adam(outer, lr=self.autolora_args.lr_beta)
            if self._resumed is not None and self._resumed.get("beta_opt") is not None:
                self._beta_opt.load_state_dict(self._resumed["beta_opt"])
            dist, args = DistContext.current(), self.args
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
                step_inner=False,  # the Trainer's optimizer steps W
            )
        return self._searcher

    def create_optimizer(self, model=None):
        """The Trainer's optimizer over W only during the search: beta has its own Adam (lr_beta)."""
        betas = selection_parameters(self.model) if self.phase == "search" else []
        for b in betas:  # hidden from the Trainer's requires_grad filter for the time of the call
            b.requires_grad_(False)
        try:
            return super().create_optimizer(model)
        finally:
            for b in betas:
                b.requires_grad_(True)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        loss = logs.get("loss")
        if self.phase == "retrain" and isinstance(loss, float) and not math.isfinite(loss):
            raise NonFiniteLoss(
                f"retrain: non-finite loss {loss} by step {self.state.global_step}; the checkpoints "
                "before it are kept"
            )
        history = self._recorder.history if self._recorder is not None else []
        if self.phase == "search" and "loss" in logs and history:  # read at this logging step
            last = history[-1]
            val = next((r["loss_val"] for r in reversed(history) if "loss_val" in r), None)
            extra = {} if val is None else {"search_val_loss": val}  # beta's latest outer loss
            ranks = list(last["ranks"].values())
            logs = {**logs, **extra, "rank_sum": sum(ranks), "rank_max": max(ranks)}
        super().log(logs, start_time)

    # -- the switch ----------------------------------------------------------------------------------
    def _switch(self, out: Path) -> None:
        """The search's ranks, the retraining model in place, ranks.json and search/result.pt."""
        result = self._recorder.result(self.model)
        a = self.autolora_args
        start_retraining_(self.model, result, a.retrain_init, self._initial, self._seed + 2)
        self._after_switch(result, out)

    def _restore_switch(self, saved: dict, out: Path) -> None:
        """A resumed run whose search had finished: the retraining model it switched to, rebuilt."""
        result: SearchResult = saved["result"]
        fixed_layout_(self.model, result.ranks)
        load_trainable_state(self.model, saved["start"])
        set_rng_state(saved["rng"])  # retraining draws what it drew in the run that switched
        self._recorder.history = result.history
        self._after_switch(result, out)

    def _after_switch(self, result: SearchResult, out: Path) -> None:
        """Retraining's phase; its ranks in ranks.json and alpha_history.json, and in search/result.pt
        with the model retraining starts from (a resumed run starts from it without searching)."""
        self.phase, self.ranks, self.search_result = "retrain", dict(result.ranks), result
        self._searcher = self._beta_opt = self._resumed = None
        if not self.args.should_save:
            return
        tracker = self._recorder.tracker
        k = {n: len(alpha) for n, alpha in result.alpha.items()}
        atomic_write_json(out / RANKS_NAME, ranks_report(result, tracker, k, self.autolora_args.rank_share))
        names = [n for n, _ in tracker.named]
        atomic_write_json(out / HISTORY_NAME, {"adapters": names, "history": result.history})
        state = {"result": result, "start": trainable_state(self.model), "rng": rng_state()}
        save_checkpoint(out / "search" / RESULT_NAME, state)

    # -- saving and resuming -------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The adapter in PEFT's layout (PeftModel.from_pretrained loads it); in a checkpoint (the
        Trainer's internal call) also autolora_state.pt, which resuming reads."""
        if not self.args.should_save:
            return
        out = Path(output_dir or self.args.output_dir)
        base = getattr(getattr(self.model, "config", None), "_name_or_path", None) or None
        export_peft(self.model, out, head_modules(self.model), base)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(out)
        if _internal_call:
            save_checkpoint(out / STATE_NAME, self._state())

    def _state(self) -> dict:
        state = {"phase": self.phase, "params": trainable_state(self.model)}
        if self.phase == "search":
            tr, val = self._search_streams()
            state.update(
                search_steps=self.search_steps,
                history=list(self._recorder.history),
                beta_opt=self._beta_opt.state_dict() if self._beta_opt is not None else None,
                streams={"tr": tr.state_dict(), "val": val.state_dict()},
                search_rng=self._search_rng,
            )
        return state

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """The trainable parameters and, in the search, beta's optimiser, the stream positions and the
        records so far."""
        state = load_state(resume_from_checkpoint)
        if state["phase"] != self.phase:
            raise ValueError(
                f"resume_from_checkpoint: {resume_from_checkpoint} is a {state['phase']} checkpoint, "
                f"this run is in its {self.phase} phase"
            )
        if self.phase == "search":
            if state["search_steps"] != self.search_steps:
                raise ValueError(
                    f"search_steps: the checkpoint's search is {state['search_steps']} steps, this run's "
                    f"{self.search_steps}; resume with the same AutoLoraArguments"
                )
            self._recorder.history = list(state["history"])
            self._search_rng = state["search_rng"]
            self._resumed = state
            if self._streams is not None:  # built already (search_epochs): put them where the run was
                for s, key in zip(self._streams, ("tr", "val"), strict=True):
                    s.load_state_dict(state["streams"][key])
        load_trainable_state(self.model, state["params"])
