"""AutoLoRA on slices of one fused projection: GPT-2's c_attn computes [q | k | v] in one Conv1D.

Each adapted slice (q and v, as in the paper) gets its own U, V, beta; the other slices (k) are
left exactly as the base layer computes them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from autolora.nn.adapter import AutoLoraAdapter
from autolora.nn.base_layer import add_to_base_weight, base_features
from autolora_kernels import check_x


class SlicedAutoLoraLinear(nn.Module):
    """base_layer's output split into equal named parts; adapters on the parts named in `adapted`.

    For fused projections such as GPT-2's `c_attn` (q, k and v in one matrix): each adapted part gets
    its own `AutoLoraAdapter` in `adapters`, so q and v are searched and ranked separately.

    Args:
        base_layer: an `nn.Linear` or `Conv1D` whose out_features split into len(parts) equal parts.
        parts: the names of the parts, in output order.
        adapted: the parts that get an adapter, a non-empty subset of parts.
        rank: one rank for every adapted part, or a mapping part -> rank (fixed mode after selection).
        lora_alpha: the scaling numerator: each update is scaled by lora_alpha / rank.
        dropout: probability of dropping an input of the adapters.
        mode: "search" or "fixed".
        selection: "softmax" (the paper) or "sigmoid" (its ablation).

    Raises:
        ValueError: the outputs do not split into equal parts, or `adapted` names no part or an unknown one.
    """

    def __init__(
        self,
        base_layer: nn.Module,
        parts: tuple[str, ...] = ("q", "k", "v"),
        adapted: tuple[str, ...] = ("q", "v"),
        rank: int | Mapping[str, int] = 8,
        lora_alpha: float = 16.0,
        dropout: float = 0.0,
        mode: str = "search",
        selection: str = "softmax",
    ) -> None:
        super().__init__()
        in_features, out_features = base_features(base_layer)
        if out_features % len(parts):
            raise ValueError(f"parts: {out_features} outputs do not split into {len(parts)} equal parts")
        unknown = [a for a in adapted if a not in parts]
        if unknown or not adapted:
            raise ValueError(f"adapted: expected a non-empty subset of {parts}, got {adapted}")
        size = out_features // len(parts)
        self.slices = {p: slice(i * size, (i + 1) * size) for i, p in enumerate(parts)}
        w = base_layer.weight
        self.adapters = nn.ModuleDict(
            {
                p: AutoLoraAdapter(
                    in_features,
                    size,
                    rank[p] if isinstance(rank, Mapping) else rank,
                    lora_alpha,
                    dropout,
                    mode,
                    w.dtype,
                    w.device,
                    selection,
                )
                for p in parts
                if p in adapted
            }
        )
        self.base_layer = base_layer
        self.in_features, self.out_features = in_features, out_features
        self.merged = False
        for p in base_layer.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base projection with each adapted part's update added to its slice of the output.

        Args:
            x: (..., in_features).

        Returns:
            (..., out_features).
        """
        check_x(x, self.in_features, self.base_layer.weight)
        y = self.base_layer(x)
        if self.merged:
            return y
        pieces = []
        for name, sl in self.slices.items():
            piece = y[..., sl]
            pieces.append(piece + self.adapters[name].delta(x) if name in self.adapters else piece)
        return torch.cat(pieces, dim=-1)

    def merge(self) -> None:
        """Fold every part's Delta into its slice of the base weight (inference)."""
        if not self.merged:
            for name, adapter in self.adapters.items():
                add_to_base_weight(self.base_layer, adapter.delta_weight(), self.slices[name], +1.0)
            self.merged = True

    def unmerge(self) -> None:
        """Subtract every part's Delta again: restores W0 up to one fp rounding."""
        if self.merged:
            for name, adapter in self.adapters.items():
                add_to_base_weight(self.base_layer, adapter.delta_weight(), self.slices[name], -1.0)
            self.merged = False
