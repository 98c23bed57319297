"""What AutoLoraTrainer adds to TrainingArguments: how long the search runs, and its options."""

from __future__ import annotations

from dataclasses import dataclass

from autolora.options import (
    BETA_EVERY,
    DEFAULT_BUDGET,
    DEFAULT_RULE,
    RANK_SHARES,
    RULE_FOR_NONE,
    SPECTRAL_RULES,
    one_of,
    rule_fits_hypergradient,
)
from autolora.search import SearchStepConfig


@dataclass
class AutoLoraArguments:
    """The search phase's length and options; the Trainer's own arguments set everything else.

    The run's steps after the search (TrainingArguments.max_steps or num_train_epochs) retrain the
    fixed-rank adapters. Give exactly one of search_steps and search_epochs.

    Attributes:
        search_steps: optimizer steps of the search.
        search_epochs: the search's length in passes over D_tr.
        lr_beta: beta's Adam learning rate.
        rank_rule: how ranks are read: "effective-rank", "spectrum" or "alpha" (the paper's);
            see autolora.tuner.rank_rules.
        hypergradient: as SearchStepConfig's; "none" trains W alone during the search (beta stays 0)
            and needs a spectral rank_rule.
        xi: the lookahead step; None takes TrainingArguments.learning_rate, as the paper does.
        fd_r: as SearchStepConfig's.
        lookahead: as SearchStepConfig's.
        fd_scheme: as SearchStepConfig's.
        split_seed: seeds the D_tr/D_val split and the search's batch order; None takes
            TrainingArguments.seed.
        beta_warmup_steps: search steps that train W alone before beta moves.
        beta_every: beta moves on every this many search steps, W on every one.
        rank_budget: the retraining's average rank per adapter (default 4: LoRA r=4's parameters),
            shared by the search (autolora.tuner.allocation); None: the rule's own ranks.
        rank_total: an exact total of ranks over the adapters instead of rank_budget.
        rank_share: how the total is shared: "selection" (by what the rule reads above one rank) or
            "norm" (in proportion to the size of each searched update).

    Raises:
        ValueError: a value out of range or a combination that does not fit, named in the message.
    """

    search_steps: int | None = None
    search_epochs: float | None = None
    lr_beta: float = 1e-2  # the pipeline's default (README: the rank search on real data)
    rank_rule: str = DEFAULT_RULE  # or "spectrum", "alpha" (the paper's): autolora.tuner.rank_rules
    hypergradient: str = "second-order"
    xi: float | None = None
    fd_r: float = 0.01
    lookahead: str = "sgd"
    fd_scheme: str = "forward"
    split_seed: int | None = None
    beta_warmup_steps: int = 0  # search steps that train W alone before beta moves
    beta_every: int = BETA_EVERY  # beta moves on every this many search steps, W on every one
    rank_budget: float | None = DEFAULT_BUDGET  # average rank per adapter; None: the rule's own ranks
    rank_total: int | None = None
    rank_share: str = "selection"
    stability_window: int = 50
    stop_when_stable: bool = False
    min_search_steps: int = 0
    retrain_init: str = "fresh"

    def __post_init__(self) -> None:
        if (self.search_steps is None) == (self.search_epochs is None):
            raise ValueError(
                "search_steps/search_epochs: give exactly one, got "
                f"search_steps={self.search_steps!r}, search_epochs={self.search_epochs!r}"
            )
        steps = self.search_steps
        if steps is not None and (not isinstance(steps, int) or steps < 1):
            raise ValueError(f"search_steps: expected an integer >= 1, got {self.search_steps!r}")
        if self.search_epochs is not None and not self.search_epochs > 0:
            raise ValueError(f"search_epochs: expected a positive number, got {self.search_epochs!r}")
        rules = ("alpha", *SPECTRAL_RULES)  # the rules a model's state holds (alpha-avg needs a history)
        if self.rank_rule not in rules:
            raise ValueError(f"rank_rule: expected {one_of(rules)}, got {self.rank_rule!r}")
        if not rule_fits_hypergradient(self.rank_rule, self.hypergradient):
            raise ValueError(f"rank_rule: expected {RULE_FOR_NONE}, got {self.rank_rule!r}")
        if not self.lr_beta > 0:
            raise ValueError(f"lr_beta: expected a positive number, got {self.lr_beta!r}")
        for name, least in (("beta_warmup_steps", 0), ("beta_every", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < least:
                raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")
        total = self.rank_total
        if total is not None and (not isinstance(total, int) or total < 1):
            raise ValueError(f"rank_total: expected None or an integer >= 1, got {total!r}")
        if self.rank_share not in RANK_SHARES:
            raise ValueError(f"rank_share: expected {one_of(RANK_SHARES)}, got {self.rank_share!r}")
        budget = self.rank_budget
        number = isinstance(budget, int | float) and not isinstance(budget, bool)
        if budget is not None and (not number or budget < 1):
            raise ValueError(f"rank_budget: expected None or a number >= 1, got {budget!r}")
        if self.rank_share == "norm" and total is None and budget is None:
            raise ValueError(
                "rank_share: expected selection without a budget ('norm' shares rank_budget or rank_total)"
            )
        self.step_config(1.0)  # SearchStepConfig checks the scheme names, xi and fd_r now, not at step 1

    def step_config(self, learning_rate: float) -> SearchStepConfig:
        """The search step's options.

        Args:
            learning_rate: the Trainer's, taken as xi when xi is None.

        Returns:
            The SearchStepConfig of these arguments.
        """
        xi = learning_rate if self.xi is None else self.xi
        return SearchStepConfig(self.hypergradient, xi, self.fd_r, self.lookahead, self.fd_scheme)
