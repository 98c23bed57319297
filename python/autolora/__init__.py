"""autolora: AutoLoRA (arXiv 2403.09113) for any Hugging Face model, fused with the frozen matmul.

The package in the order data flows: data (read, tokenize, split, collate) -> nn (the adapter
layers) -> tuner (put them into a model) -> search (the bilevel rank search) -> train (phases,
checkpoints, several processes) -> eval (scores) -> io (adapter files, PEFT export, figures).
config, pipeline and cli tie them together; doctor reports the backends; the kernels are the
separate package autolora_kernels.
"""

from autolora.io.adapter_format import load_adapter, save_adapter
from autolora.nn import AutoLoraAdapter, FusedAutoLoraLinear, SlicedAutoLoraLinear
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
from autolora.tuner.pooling import mean_pooling

__version__ = "0.1.0"

# The pipeline pulls in datasets and the data readers: imported on first use, so that
# `from autolora import FusedAutoLoraLinear` stays light.
_LAZY = {
    "run_pipeline": "autolora.pipeline",
    "PipelineConfig": "autolora.config",
    "load_config": "autolora.config",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autolora' has no attribute {name!r}")


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
    "inner_parameters",
    "load_adapter",
    "load_config",
    "mean_pooling",
    "merge",
    "PipelineConfig",
    "run_pipeline",
    "rank_summary",
    "save_adapter",
    "selection_parameters",
    "unload",
    "unmerge",
]
