"""What AutoLoRA needs to know about a frozen base projection: nn.Linear or transformers' Conv1D."""

from __future__ import annotations

import torch
from torch import nn


def is_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2): weight stored (in, out), y = x @ W + b."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "nx")


def is_supported_base(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_conv1d(module)


def base_features(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a supported base layer."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if is_conv1d(module):
        return module.nx, module.nf
    raise TypeError(
        f"base_layer: unsupported module type {type(module).__name__}; "
        "expected torch.nn.Linear or transformers' Conv1D"
    )


@torch.no_grad()
def add_to_base_weight(base: nn.Module, delta_nk: torch.Tensor, rows: slice, sign: float) -> None:
    """base.weight[rows] += sign * delta (delta given as out x in), honouring Conv1D's (in, out)."""
    w = base.weight
    if is_conv1d(base):
        w[:, rows] += (sign * delta_nk.t()).to(w.dtype)
    else:
        w[rows, :] += (sign * delta_nk).to(w.dtype)
