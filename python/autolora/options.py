"""The option lists and constants that more than one subpackage reads, each written once.

Imports nothing from autolora, so every layer (nn, search, data, eval, config) may import it.
"""

from dataclasses import field
from typing import Any

# Label of positions the loss skips: torch cross_entropy's default ignore_index. The data side pads
# and masks labels with it; evaluation and the metrics skip it.
IGNORE_INDEX = -100

TASK_TYPES = ("classification", "regression", "token-classification", "causal-lm")
# How beta becomes alpha: the paper's softmax (sums to one), or its ablation, element-wise sigmoid.
SELECTIONS = ("softmax", "sigmoid")
# The hypergradient of beta: see autolora.search for the schemes. "none" never moves beta (alpha stays
# 1/k): the search trains W alone and a spectral rule reads the ranks from the learned update.
HYPERGRADIENTS = ("second-order", "first-order", "exact", "none")
FD_SCHEMES = ("forward", "central")
# beta's step on every this many search steps, W's on every one (autolora.search.schedule). 1 is the
# paper's; 4 (README, "The rank search on real data": the same ranks, agreeing across seeds, at about
# half the search's cost) is the default.
BETA_EVERY = 4
LOOKAHEADS = ("sgd", "adam")
# What a sequence classifier's head reads: the model's own pooler, or the mean of the hidden states
# over the real tokens (autolora.tuner.pooling).
POOLINGS = ("model", "mean")
RETRAIN_INITS = ("fresh", "warm")
# The learning rate along retraining: constant, or falling linearly to 0 over the steps (the
# default of transformers' Trainer; the last iterate then moves least).
RETRAIN_SCHEDULES = ("constant", "linear")
# How a searched adapter's rank is read: see autolora.tuner.rank_rules.
RANK_RULES = ("alpha", "alpha-avg", "spectrum", "effective-rank")
# Not the paper's alpha rule: the effective rank of the learned update keeps its order across seeds
# (docs/results.md), where alpha >= 1/k does not on the models tried.
DEFAULT_RULE = "effective-rank"
# How --rank-total is shared across adapters: the rule's selection carried to it (same order), or in
# proportion to the size (Frobenius norm) of each searched update (autolora.tuner.rank_rules).
RANK_SHARES = ("selection", "norm")
# The retraining's default budget, an average rank per adapter (autolora.tuner.allocation): LoRA r=4's
# parameters, the common LoRA setting the searched allocation competes with.
DEFAULT_BUDGET = 4.0
# The rules that read the learned update's singular values rather than alpha.
SPECTRAL_RULES = ("spectrum", "effective-rank")
PRECISIONS = ("fp32", "bf16", "fp16")


def one_of(choices: tuple[str, ...]) -> str:
    """'a, b or c': how error messages list the allowed values."""
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


def rule_fits_hypergradient(rank_rule: str, hypergradient: str) -> bool:
    """hypergradient "none" leaves alpha at 1/k, so only a spectral rule can read ranks from it."""
    return hypergradient != "none" or rank_rule in SPECTRAL_RULES


# What a rule that does not fit is told it should be (after "expected ").
RULE_FOR_NONE = (
    f"{one_of(SPECTRAL_RULES)} with hypergradient 'none' "
    "(alpha stays 1/k, so an alpha rule keeps every component)"
)


def opt(default: Any, doc: str, group: str, unit: str = "", choices: tuple[str, ...] = ()) -> Any:
    """A documented option: `autolora run --help` (and anything else that documents the config) reads
    doc, group, unit and choices from this metadata, so the docs cannot drift from the defaults."""
    return field(default=default, metadata={"help": doc, "group": group, "unit": unit, "choices": choices})
