"""Putting adapters into a model and reading them back out.

targets.py (which modules, per model family) -> injection.py (wrap them; merge, unmerge, unload)
-> params.py (the adapters' parameters, ranks and summaries) -> selection.py (keep alpha >= threshold).
"""

from autolora.tuner.injection import inject, merge, unload, unmerge
from autolora.tuner.params import (
    adapter_layers,
    adapter_parameters,
    adapters,
    count_trainable,
    current_ranks,
    format_rank_summary,
    inner_parameters,
    rank_summary,
    selection_parameters,
)
from autolora.tuner.selection import keep_selected_, select_ranks
from autolora.tuner.targets import FUSED_PARTS, Target, candidate_names, default_targets, name_matches

__all__ = [
    "FUSED_PARTS",
    "Target",
    "adapter_layers",
    "adapter_parameters",
    "adapters",
    "candidate_names",
    "count_trainable",
    "current_ranks",
    "default_targets",
    "format_rank_summary",
    "inject",
    "inner_parameters",
    "keep_selected_",
    "merge",
    "name_matches",
    "rank_summary",
    "select_ranks",
    "selection_parameters",
    "unload",
    "unmerge",
]
