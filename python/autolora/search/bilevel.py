"""One iteration of AutoLoRA's bilevel rank search (docs/METHOD.md sections 3-5, paper Algorithm 1).

Inner variables W (every U, V and any trainable head) learn on D_tr; outer variables A (every beta)
learn on D_val through a one-step lookahead W' = W - xi * g. The hypergradient of beta is

  second-order:  d_direct - xi * (grad_beta L_tr(W+) - grad_beta L_tr(W-)) / (2 eps)   (DARTS)
                 or, with fd_scheme="forward" (the default), d_direct - xi * (grad_beta L_tr(W+)
                 - grad_beta L_tr(W)) / eps, where grad_beta L_tr(W) comes free with step 1's pass
  first-order:   grad_beta L_val(W)                                  (the paper's eta = 0 ablation)
  exact:         autograd through W' = W - xi * g with create_graph (small models; the oracle)
  none:          no hypergradient: beta stays where it is (0: alpha = 1/k) and a step trains W
                 alone on B_tr; not the paper's method, the control that asks what the meta-learned
                 alpha adds to ranks read from the update's spectrum (docs/METHOD.md 6.3)

with v = grad_W' L_val(W'), eps = r / ||v||, W+- = W +- eps * v. Every pass over B_tr replays the
same RNG state, so dropout draws the same masks: otherwise mask noise divided by 2 eps swamps the
second-order signal. The elementwise lookahead work (backup, virtual step, norm, perturb, restore)
goes through autolora_kernels.lookahead, one fused call per step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from autolora.checks import check_choice, check_float
from autolora.options import FD_SCHEMES, HYPERGRADIENTS, LOOKAHEADS
from autolora.run_options import TrainOptions
from autolora.search.rng import RngReplay
from autolora.search_options import SearchOptions, default_of
from autolora_kernels import lookahead

LossFn = Callable[[nn.Module, dict], torch.Tensor]


def model_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """The Hugging Face convention: the model computes its own loss when the batch has labels.

    Args:
        model: a transformers model.
        batch: its keyword inputs, labels included.

    Returns:
        The scalar loss.
    """
    return model(**batch).loss


@dataclass
class SearchStepConfig:
    """How one search iteration computes beta's hypergradient (docs/METHOD.md sections 4 and 5).

    Attributes:
        hypergradient: "second-order" (the finite-difference approximation), "first-order" (the
            paper's eta = 0 ablation), "exact" (autograd through the lookahead; small models, one
            process) or "none" (beta never moves, W trains alone).
        xi: the lookahead's step size; the paper takes the inner learning rate.
        fd_r: the finite difference's radius: eps = fd_r / ||v||.
        lookahead: the virtual step's direction: "sgd" (the paper's Eq. 4) or "adam" (the inner
            optimiser's).
        fd_scheme: "forward" (one-sided: three training passes an iteration, an O(r) error in the
            implicit term) or "central" (the paper's: four passes, O(r^2)).

    Raises:
        ValueError: a value out of range, named in the message.
    """

    hypergradient: str = default_of(SearchOptions, "hypergradient")
    xi: float = default_of(TrainOptions, "lr_w")  # lookahead step; the paper takes the inner rate
    fd_r: float = default_of(SearchOptions, "fd_r")  # eps = r / ||v||
    lookahead: str = default_of(SearchOptions, "lookahead")  # "sgd" (paper Eq. 4) or "adam"
    # "central" is the paper's difference (docs/METHOD.md section 5: passes at W+ and W-). "forward"
    # takes W's end of the difference from step 1's pass, which already differentiates
    # L_tr(W, beta; B_tr) with the same masks: one training pass fewer (a search iteration is 3
    # passes, not 4) for an O(r) instead of O(r^2) error in the implicit term (tests/test_search.py
    # and benchmarks/bench_search_profile.py measure it).
    fd_scheme: str = default_of(SearchOptions, "fd_scheme")

    def __post_init__(self) -> None:
        check_choice("hypergradient", self.hypergradient, HYPERGRADIENTS)
        check_choice("fd_scheme", self.fd_scheme, FD_SCHEMES)
        check_choice("lookahead", self.lookahead, LOOKAHEADS)
        check_float("xi", self.xi, 0)
        check_float("fd_r", self.fd_r, 0, low_open=True)


Batches = dict | list[dict]


def _grads(loss: torch.Tensor, params: list[torch.Tensor], **kw) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True, **kw)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _check_whole(params: list[torch.Tensor]) -> None:
    """torch.autograd.grad gives no gradient for a parameter FSDP shards (its forward runs on the
    gathered copy), so W and A must stay whole: the search would otherwise silently never move them."""
    if not torch.distributed.is_available():
        return
    from torch.distributed.tensor import DTensor

    if any(isinstance(p, DTensor) for p in params):
        raise ValueError(
            "inner/outer: a parameter is sharded (a DTensor, e.g. from fully_shard or from_pretrained's "
            "distributed_config); the search differentiates with torch.autograd.grad and needs W and beta "
            "whole: shard only the frozen base (autolora.train.sharding.shard_frozen_base)"
        )


def _no_reduce(tensors: list[torch.Tensor]) -> None:
    """Single process: nothing to average."""


class BilevelSearch:
    """Holds W, A and their optimisers; `step(b_tr, b_val)` runs one search iteration.

    A batch may be a list of micro-batches (gradient accumulation): every pass then averages its
    gradients over them.

    Args:
        model: a model with search-mode adapters.
        inner: the inner variables W (`autolora.inner_parameters`).
        outer: the outer variables A, every beta (`autolora.selection_parameters`).
        inner_opt: W's optimiser (AdamW in the pipeline).
        outer_opt: beta's optimiser (Adam in the pipeline).
        config: how the hypergradient is computed.
        loss_fn: (model, batch) -> scalar loss.
        reduce: averages a list of tensors across data-parallel ranks in place
            (autolora.train.distributed); applied to g (before the virtual step, so W' is the same
            on every replica), to v (so eps and the perturbation are too) and to the hypergradient.
            None: a single process.
        autocast: the dtype for torch.autocast (bf16/fp16), or None.
        loss_scale: multiplies every loss before its backward (and divides the gradients after), so
            fp16 gradients do not underflow.
        step_inner: True: `step` updates W with inner_opt. False: W's gradient is left in .grad,
            multiplied by `grad_scale`, for the caller's optimizer step (the Trainer's, whose
            clipping, fp16 scaler and schedule then apply); inner_opt is then only read (the Adam
            lookahead's moments).

    Raises:
        ValueError: `outer` is empty, a parameter of `inner` or `outer` is sharded (a DTensor), or
            "exact" is asked of several processes.
    """

    def __init__(
        self,
        model: nn.Module,
        inner: list[nn.Parameter],
        outer: list[nn.Parameter],
        inner_opt: torch.optim.Optimizer,
        outer_opt: torch.optim.Optimizer,
        config: SearchStepConfig,
        loss_fn: LossFn = model_loss,
        reduce: Callable[[list[torch.Tensor]], None] | None = None,
        autocast: torch.dtype | None = None,
        loss_scale: float = 1.0,
        step_inner: bool = True,
    ) -> None:
        if not outer:
            raise ValueError("outer: the model has no selection variables (beta); inject in search mode")
        if config.hypergradient == "exact" and reduce is not None:
            raise ValueError(
                "hypergradient: 'exact' runs in a single process only (it is the small-model oracle)"
            )
        _check_whole(inner + outer)
        self.model, self.inner, self.outer = model, inner, outer
        self.inner_opt, self.outer_opt = inner_opt, outer_opt
        self.config, self.loss_fn, self.autocast = config, loss_fn, autocast
        self.reduce = reduce or _no_reduce
        self.loss_scale = loss_scale
        self.step_inner = step_inner
        self.grad_scale = 1.0  # what W's .grad is multiplied by when the caller steps W (fp16 scaler)
        self._backup_workspace: list[torch.Tensor] | None = None  # W's backup, reused every iteration

    def _loss(self, model, batches: Batches) -> torch.Tensor:
        """Mean loss over the micro-batches, under autocast when asked."""
        batches = [batches] if isinstance(batches, dict) else batches
        ctx = torch.autocast(self.inner[0].device.type, self.autocast) if self.autocast else nullcontext()
        with ctx:
            return sum(self.loss_fn(model, b) for b in batches) / len(batches)

    def _loss_and_grads(self, model, batches: Batches, params, **kw):
        """(mean loss, mean gradients) over the micro-batches, one backward per micro-batch."""
        batches = [batches] if isinstance(batches, dict) else batches
        total_loss, total = 0.0, None
        for b in batches:
            loss = self._loss(model, b) / len(batches)
            grads = _grads(loss * self.loss_scale, params, **kw)
            if self.loss_scale != 1.0:
                grads = [g / self.loss_scale for g in grads]
            total = grads if total is None else [t + g for t, g in zip(total, grads, strict=True)]
            total_loss = total_loss + (loss if kw.get("create_graph") else loss.detach())
        return total_loss, total

    def hypergradient(self, b_tr: Batches, b_val: Batches):
        """(loss_tr, g = grad_W L_tr, hypergradient of each beta, loss_val); W is left unchanged."""
        if self.config.hypergradient == "none":
            raise ValueError("hypergradient: 'none' computes no hypergradient (step() trains W alone)")
        rng = RngReplay(self.inner[0].device)
        if self.config.hypergradient == "exact":
            return self._exact(b_tr, b_val)
        first_order = self.config.hypergradient == "first-order" or self.config.xi == 0
        forward = not first_order and self.config.fd_scheme == "forward"
        params = self.inner + self.outer if forward else self.inner  # forward: grad_beta L_tr(W) too
        loss_tr, grads = self._loss_and_grads(self.model, b_tr, params)  # step 1, also W's update
        g, beta_grad_at_w = grads[: len(self.inner)], grads[len(self.inner) :]
        self.reduce(g)
        if first_order:
            loss_val, hyper = self._loss_and_grads(self.model, b_val, self.outer)
        else:
            hyper, loss_val = self._second_order(g, beta_grad_at_w, b_tr, b_val, rng)
        losses = [loss_tr.reshape(1), loss_val.reshape(1)]
        self.reduce(hyper + losses)
        return losses[0][0], g, hyper, losses[1][0]

    def step(self, b_tr: Batches, b_val: Batches) -> dict[str, torch.Tensor]:
        """One iteration: beta <- Adam(hypergradient), W <- AdamW(grad L_tr).

        With hypergradient "none", W's step alone (b_val is not used).

        Args:
            b_tr: a batch of D_tr (W's data), or a list of micro-batches.
            b_val: a batch of D_val (beta's data), or a list of micro-batches.

        Returns:
            The losses, 0-d tensors on the device: "loss_tr", and "loss_val" where beta moved. Reading
            one (float(), .item()) waits for the device's queue: the pipeline reads them in batches.
        """
        if self.config.hypergradient == "none":
            return self.inner_step(b_tr)
        loss_tr, g, hyper, loss_val = self.hypergradient(b_tr, b_val)
        for p, h in zip(self.outer, hyper, strict=True):
            p.grad = h.detach()
        self.outer_opt.step()
        self.outer_opt.zero_grad(set_to_none=True)
        self._update_inner(g)
        return {"loss_tr": loss_tr.detach(), "loss_val": loss_val.detach()}

    def _update_inner(self, g: list[torch.Tensor]) -> None:
        """W's gradient into .grad, and W's step unless the caller takes it (step_inner False)."""
        scale = 1.0 if self.step_inner else self.grad_scale
        for p, gi in zip(self.inner, g, strict=True):
            p.grad = gi.detach() * scale if scale != 1.0 else gi.detach()
        if self.step_inner:
            self.inner_opt.step()
            self.inner_opt.zero_grad(set_to_none=True)

    def train_gradient(self, b_tr: Batches) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(loss_tr, g = grad_W L_tr), reduced across replicas; beta gets no gradient."""
        loss_tr, g = self._loss_and_grads(self.model, b_tr, self.inner)
        loss = [loss_tr.reshape(1)]  # the replicas' mean, as hypergradient's losses
        self.reduce(g + loss)
        return loss[0][0], g

    def inner_step(self, b_tr: Batches) -> dict[str, torch.Tensor]:
        """W <- AdamW(grad L_tr) alone, beta untouched: the search's warm-up steps, and every step of
        hypergradient "none". At U = 0 (LoRA's init) every hypergradient of beta is 0, so the first
        steps would move beta only by noise. Returns {"loss_tr": a 0-d tensor on the device}."""
        loss_tr, g = self.train_gradient(b_tr)
        self._update_inner(g)
        return {"loss_tr": loss_tr.detach()}

    def _backup_and_virtual_step(self, g: list[torch.Tensor]) -> list[torch.Tensor]:
        """Back W up (into a workspace reused across iterations) and take W <- W - xi * g, or the inner
        AdamW's step from its moments (which stay untouched), in one pass; returns the backup."""
        xi, out = self.config.xi, self._backup_workspace
        if self.config.lookahead == "sgd":
            saved = lookahead.backup_and_sgd_step_(self.inner, g, xi, out=out)
        else:
            group = self.inner_opt.param_groups[0]
            states = [self.inner_opt.state.get(p, {}) for p in self.inner]
            pairs = list(zip(states, self.inner, strict=True))
            avg = [s["exp_avg"] if s else torch.zeros_like(p) for s, p in pairs]
            sq = [s["exp_avg_sq"] if s else torch.zeros_like(p) for s, p in pairs]
            step = int(states[0]["step"]) + 1 if states[0] else 1
            b1, b2 = group["betas"]
            wd = group["weight_decay"]
            saved = lookahead.backup_and_adam_step_(
                self.inner, g, avg, sq, step, xi, b1, b2, group["eps"], wd, out=out
            )
        self._backup_workspace = saved
        return saved

    def _second_order(self, g, beta_grad_at_w, b_tr, b_val, rng: RngReplay):
        """DARTS: d_direct - xi * d_implicit. `beta_grad_at_w` (grad_beta L_tr at W, from step 1) is
        the forward difference's base point; empty for the central scheme."""
        backup = self._backup_and_virtual_step(g)  # step 2: W' = W - xi g
        loss_val, grads = self._loss_and_grads(self.model, b_val, self.outer + self.inner)  # step 3
        d_direct, v = grads[: len(self.outer)], grads[len(self.outer) :]
        self.reduce(v)
        eps = lookahead.fd_eps(v, self.config.fd_r)  # step 4, stays on the device
        central = self.config.fd_scheme == "central"
        beta_grads = []
        for sign in (1.0, -1.0) if central else (1.0,):  # steps 5-6
            lookahead.set_perturbed_(self.inner, backup, v, eps, sign)
            rng.replay()
            beta_grads.append(self._loss_and_grads(self.model, b_tr, self.outer)[1])
        lookahead.restore_(self.inner, backup)  # step 8: W exactly as before
        upper, lower = beta_grads if central else (beta_grads[0], beta_grad_at_w)
        scale = self.config.xi / (2 * eps if central else eps)
        hyper = [d - scale * (gp - gm) for d, gp, gm in zip(d_direct, upper, lower, strict=True)]
        return hyper, loss_val

    def _exact(self, b_tr, b_val):
        """Differentiate L_val(W - xi * g(W, beta), beta) with respect to beta through g."""
        from torch.func import functional_call

        names = {id(p): n for n, p in self.model.named_parameters()}
        loss_tr, g = self._loss_and_grads(self.model, b_tr, self.inner, create_graph=True)
        shifted = {names[id(p)]: p - self.config.xi * gi for p, gi in zip(self.inner, g, strict=True)}

        def model_at_w_prime(**batch):  # the model with W' substituted, differentiable in W' and beta
            return functional_call(self.model, shifted, args=(), kwargs=batch, strict=False)

        loss_val, hyper = self._loss_and_grads(model_at_w_prime, b_val, self.outer)
        return loss_tr, [gi.detach() for gi in g], hyper, loss_val
