"""The rank search's options, declared once: `autolora run` (PipelineConfig) and AutoLoraTrainer
(AutoLoraArguments) both inherit them, and SearchStepConfig takes its defaults from them.

Imports no torch: the CLI's parser and `autolora doctor` read it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from autolora.checks import check_bool, check_choice, check_float, check_int
from autolora.errors import InputError
from autolora.options import (
    BETA_EVERY,
    DEFAULT_BUDGET,
    DEFAULT_RULE,
    FD_SCHEMES,
    HYPERGRADIENTS,
    LOOKAHEADS,
    RANK_RULES,
    RANK_SHARES,
    RETRAIN_INITS,
    RULE_FOR_NONE,
    opt,
    rule_fits_hypergradient,
)


def default_of(cls: type, name: str) -> Any:
    """The declared default of a dataclass field (for another class that must not repeat it)."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].default


@dataclass
class SearchOptions:
    """How the bilevel search runs and how its ranks are read and shared (`--hypergradient` ...).

    Each field's meaning is in its `opt` metadata, printed by `autolora run --help`. The upper bound
    of rank_budget (k) belongs to the model: PipelineConfig and AutoLoraTrainer check it.
    """

    hypergradient: str = opt(
        "second-order",
        "beta's hypergradient: second-order (finite-difference DARTS), first-order (eta = 0), exact "
        "(autograd through the lookahead; small models) or none (not the paper's: beta never moves, the "
        "search trains W alone on D_tr at a third of the cost, and a spectral rank_rule reads the ranks)",
        "search",
        choices=HYPERGRADIENTS,
    )
    xi: float | None = opt(None, "learning rate of the one-step lookahead; none: lr_w", "search")
    fd_r: float = opt(0.01, "finite-difference radius: eps = fd_r / ||grad_W' L_val(W')|| (DARTS)", "search")
    fd_scheme: str = opt(
        "forward",
        "forward: one-sided (3 passes a step); central: the paper's two extra passes "
        "(docs/METHOD.md section 5)",
        "search",
        choices=FD_SCHEMES,
    )
    lookahead: str = opt(
        "sgd", "the virtual step W' of the lookahead: an SGD or an Adam step", "search", choices=LOOKAHEADS
    )
    lr_beta: float = opt(
        1e-2,
        "Adam learning rate of beta (the paper: 1e-3; see README, the rank search on real data)",
        "search",
    )
    rank_rule: str = opt(
        DEFAULT_RULE,
        "how a searched adapter's rank is read (autolora.tuner.rank_rules): effective-rank rounds the "
        "learned update's effective rank exp(entropy of its singular-value shares); spectrum counts the "
        "singular values holding >= 1/k of its nuclear norm; alpha is the paper's "
        "#{alpha_j >= 1/k} at the last step; alpha-avg averages alpha over stability_window steps",
        "search",
        choices=RANK_RULES,
    )
    stability_window: int = opt(
        50,
        "steps over which the diagnostics measure each component's movement and the ranks' stability",
        "search",
        "steps",
    )
    stop_when_stable: bool = opt(
        False,
        "end the search once every adapter's selection has been decisive for stability_window steps "
        "(never before min_search_steps), judged at logging steps: the first one at which it has settled",
        "search",
    )
    min_search_steps: int = opt(0, "the search runs at least this long, even when stable", "search", "steps")
    beta_warmup_steps: int = opt(
        0,
        "steps that train W alone before beta moves (at U = 0 beta's hypergradient is 0)",
        "search",
        "steps",
    )
    beta_every: int = opt(
        BETA_EVERY,
        "beta moves every this many search steps, W every step (1: the paper's; m > 1 is not: 1/m as "
        "many, staler outer steps for 1 + 2/m training passes' work a step instead of 3; 4: the same "
        "ranks as 1 on CoLA, SST-2 and MR at about half the search's cost, README)",
        "search",
        "steps",
    )
    rank_budget: float | None = opt(
        DEFAULT_BUDGET,
        "average rank per adapter that retraining gets (4: LoRA r=4's parameters); the search decides "
        "how the total is shared. none: the rule's own ranks, whose total follows the search's length "
        "(docs/diagnostics.md); a --ranks file's ranks are kept as given unless rank_total is set",
        "retraining",
        "ranks",
    )
    rank_total: int | None = opt(
        None,
        "an exact total of ranks over the adapters instead of rank_budget (each adapter in 1..k); with "
        "--ranks, the file's ranks carried to it in the same order",
        "retraining",
        "ranks",
    )
    rank_share: str = opt(
        "selection",
        "how the total is shared across adapters: selection, by what the rule reads above one rank (the "
        "unrounded effective rank - 1, or the rank - 1); norm, by the Frobenius norm of each searched "
        "update s U diag(alpha) V (not with --ranks)",
        "retraining",
        choices=RANK_SHARES,
    )
    retrain_init: str = opt(
        "fresh",
        "fresh: new adapters of the selected ranks (the paper); warm: the kept components",
        "retraining",
        choices=RETRAIN_INITS,
    )

    def validate_search(self) -> None:
        """Checks every search option alone, then the pairs that must fit each other.

        Raises:
            InputError: the first option out of range, named with its value (a ValueError).
        """
        check_choice("hypergradient", self.hypergradient, HYPERGRADIENTS)
        check_float("xi", self.xi, 0, none=True)
        check_float("fd_r", self.fd_r, 0, low_open=True)
        check_choice("fd_scheme", self.fd_scheme, FD_SCHEMES)
        check_choice("lookahead", self.lookahead, LOOKAHEADS)
        check_float("lr_beta", self.lr_beta, 0, low_open=True)
        check_choice("rank_rule", self.rank_rule, RANK_RULES)
        check_int("stability_window", self.stability_window, 1)
        check_bool("stop_when_stable", self.stop_when_stable)
        check_int("min_search_steps", self.min_search_steps, 0)
        check_int("beta_warmup_steps", self.beta_warmup_steps, 0)
        check_int("beta_every", self.beta_every, 1)
        check_float("rank_budget", self.rank_budget, 1, none=True)
        check_int("rank_total", self.rank_total, 1, none=True)
        check_choice("rank_share", self.rank_share, RANK_SHARES)
        check_choice("retrain_init", self.retrain_init, RETRAIN_INITS)
        if not rule_fits_hypergradient(self.rank_rule, self.hypergradient):
            raise InputError("rank_rule", f"expected {RULE_FOR_NONE}, got {self.rank_rule!r}")
        if self.rank_share == "norm" and self.rank_total is None and self.rank_budget is None:
            raise InputError(
                "rank_share",
                "expected selection without a budget ('norm' shares rank_budget or rank_total), got 'norm'",
            )
