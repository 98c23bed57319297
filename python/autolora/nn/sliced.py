"""AutoLoRA on slices of one fused projection: GPT-2's c_attn computes [q | k | v] in one Conv1D.

Each adapted slice (q and v, as in the paper) gets its own U, V, beta; the other slices (k) get no
update. The whole projection is one call of the fused op (autolora_kernels.autolora_linear): the
adapters are stacked into one of rank R = sum r_i, whose U (out, R) is block-diagonal over the
adapted slices with zero rows for the others, and whose per-slice weights s_i * alpha_i are folded
into U (so the op runs in fixed mode, alpha = 1, s = 1):

    y = x W0^T + b + (x_a [V_q; V_v]^T) [[s_q U_q diag(alpha_q), 0], [0, 0], [0, s_v U_v diag(alpha_v)]]^T

which is, slice by slice, reference.sliced_linear_reference. At GPT-2's k = 8 for q and v, R = 16 is
the rank pad the kernel uses for a single adapter anyway: the forward does the tensor work of one
rank-8 adapter over the whole projection. The backward's gU covers the zero blocks too (a thin pass
over all of gy, where the adapted columns are 2/3 of it) and autograd drops them. One dropout mask is
drawn for all slices, as loralib's MergedLinear does.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from autolora.nn.adapter import AutoLoraAdapter
from autolora.nn.base_layer import add_to_base_weight, base_features, is_conv1d
from autolora_kernels import autolora_linear, check_x


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
        self.conv1d = is_conv1d(base_layer)
        self.in_features, self.out_features = in_features, out_features
        self.merged = False
        for p in base_layer.parameters():
            p.requires_grad_(False)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The adapters as one, for a single fused call.

        Returns:
            (U, V): U (out, R) block-diagonal, each block s_i U_i diag(alpha_i) on its slice's rows
            (zero rows for slices without an adapter); V (R, in), the V_i stacked in the same order;
            R = the sum of the ranks. Differentiable: gradients reach each U_i, V_i and beta_i.
        """
        w = self.base_layer.weight
        blocks, vs = [], []
        for name, sl in self.slices.items():
            a = self.adapters[name] if name in self.adapters else None
            if a is None:
                blocks.append(w.new_zeros((sl.stop - sl.start, 0)))
                continue
            blocks.append(a.U * (a.alpha() * a.scaling).to(a.U.dtype))
            vs.append(a.V)
        return torch.block_diag(*blocks), torch.cat(vs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base projection with each adapted part's update on its slice, in one fused call.

        Args:
            x: (..., in_features).

        Returns:
            (..., out_features).
        """
        if self.merged:
            check_x(x, self.in_features, self.base_layer.weight)
            return self.base_layer(x)
        dropout = next(iter(self.adapters.values())).dropout  # the same p for every adapter
        use_dropout = self.training and isinstance(dropout, nn.Dropout)
        U, V = self.stacked()
        return autolora_linear(
            x,
            self.base_layer.weight,
            self.base_layer.bias,
            U,
            V,
            None,
            1.0,
            conv1d=self.conv1d,
            x_adapter=dropout(x) if use_dropout else None,
        )

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
