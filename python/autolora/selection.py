"""Rank selection (SPEC.md section 3): keep the components with alpha >= 1/k, then build fixed layers."""

from __future__ import annotations

import torch
from torch import nn

from autolora.adapter import AutoLoraAdapter
from autolora.params import adapters


def select_ranks(model: nn.Module) -> dict[str, int]:
    """r_l = #{j : softmax(beta_l)[j] >= 1/k_l} for every search-mode adapter (always >= 1)."""
    ranks = {name: a.selected_rank() for name, a in adapters(model) if a.beta is not None}
    if not ranks:
        raise ValueError("model: has no search-mode adapters to select ranks from")
    return ranks


@torch.no_grad()
def warm_start(fixed: nn.Module, searched: nn.Module) -> None:
    """Initialise each fixed-rank adapter from the kept components of its searched twin, and every
    other trainable parameter (the task head) from the searched model's value.

    The kept component j contributes s_k * alpha_j * U_j V_j; the fixed layer scales by s_r =
    lora_alpha / r, so U_j is rescaled by s_k * alpha_j / s_r and the update is reproduced exactly.
    """
    adapter_params = {id(p) for _, a in adapters(fixed) for p in a.parameters(recurse=False)}
    searched_params = dict(searched.named_parameters())
    for name, p in fixed.named_parameters():
        if p.requires_grad and id(p) not in adapter_params and name in searched_params:
            p.copy_(searched_params[name])
    source: dict[str, AutoLoraAdapter] = dict(adapters(searched))
    for name, a in adapters(fixed):
        if name not in source:
            raise KeyError(f"searched: has no adapter named {name!r}")
        s = source[name]
        keep = s.selected()
        if int(keep.sum()) != a.rank:
            raise ValueError(f"{name}: fixed rank {a.rank} but {int(keep.sum())} components selected")
        factor = (s.alpha()[keep] * s.scaling / a.scaling).to(a.U.dtype)
        a.U.copy_(s.U[:, keep] * factor)
        a.V.copy_(s.V[keep])
