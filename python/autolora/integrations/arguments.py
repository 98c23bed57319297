"""What AutoLoraTrainer adds to TrainingArguments: how long the search runs, and its options."""

from __future__ import annotations

from dataclasses import dataclass

from autolora.checks import check_float, check_int
from autolora.errors import InputError
from autolora.options import opt
from autolora.run_options import MAX_SEED
from autolora.search import SearchStepConfig
from autolora.search_options import SearchOptions


@dataclass
class AutoLoraArguments(SearchOptions):
    """The search phase's length and options; the Trainer's own arguments set everything else.

    The search's options are SearchOptions', declared once for `autolora run` and the Trainer (their
    meaning: `autolora run --help` or autolora.search_options). The run's steps after the search
    (TrainingArguments.max_steps or num_train_epochs) retrain the fixed-rank adapters. Give exactly
    one of search_steps and search_epochs. xi None takes TrainingArguments.learning_rate, as the paper
    does. rank_budget's upper bound (the adapters' k) is checked by AutoLoraTrainer against the model.

    Attributes:
        search_steps: optimizer steps of the search.
        search_epochs: the search's length in passes over D_tr.
        split_seed: seeds the D_tr/D_val split and the search's batch order; None takes
            TrainingArguments.seed.

    Raises:
        ValueError: a value out of range or a combination that does not fit, named in the message
            (autolora.errors.InputError).
    """

    search_steps: int | None = opt(
        None, "optimizer steps of the search (or search_epochs)", "search", "steps"
    )
    search_epochs: float | None = opt(
        None, "the search's length in passes over D_tr (or search_steps)", "search", "epochs"
    )
    split_seed: int | None = opt(
        None, "seeds the D_tr/D_val split and the batch order; none: TrainingArguments.seed", "search"
    )

    def __post_init__(self) -> None:
        if (self.search_steps is None) == (self.search_epochs is None):
            raise InputError(
                "search_steps/search_epochs",
                f"give exactly one, got search_steps={self.search_steps!r}, "
                f"search_epochs={self.search_epochs!r}",
            )
        check_int("search_steps", self.search_steps, 1, none=True)
        check_float("search_epochs", self.search_epochs, 0, low_open=True, none=True)
        check_int("split_seed", self.split_seed, 0, MAX_SEED, none=True)
        self.validate_search()

    def step_config(self, learning_rate: float) -> SearchStepConfig:
        """The search step's options.

        Args:
            learning_rate: the Trainer's, taken as xi when xi is None.

        Returns:
            The SearchStepConfig of these arguments.
        """
        xi = learning_rate if self.xi is None else self.xi
        return SearchStepConfig(self.hypergradient, xi, self.fd_r, self.lookahead, self.fd_scheme)
