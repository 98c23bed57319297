"""autolora: AutoLoRA (arXiv 2403.09113) for any Hugging Face model, fused with the frozen matmul."""

from autolora.adapter import AutoLoraAdapter
from autolora.inject import inject, merge, unload, unmerge
from autolora.io import load_adapter, save_adapter
from autolora.layer import FusedAutoLoraLinear
from autolora.params import (
    adapter_layers,
    adapter_parameters,
    adapters,
    count_trainable,
    current_ranks,
    format_rank_summary,
    rank_summary,
    selection_parameters,
)
from autolora.sliced import SlicedAutoLoraLinear

__version__ = "0.1.0"

__all__ = [
    "AutoLoraAdapter",
    "FusedAutoLoraLinear",
    "SlicedAutoLoraLinear",
    "adapter_layers",
    "adapter_parameters",
    "adapters",
    "count_trainable",
    "current_ranks",
    "format_rank_summary",
    "inject",
    "load_adapter",
    "merge",
    "rank_summary",
    "save_adapter",
    "selection_parameters",
    "unload",
    "unmerge",
]
