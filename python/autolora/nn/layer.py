"""FusedAutoLoraLinear: a frozen projection plus an AutoLoRA adapter, fused into one op.

y = x W0^T + b + s * ((drop(x) V^T) * softmax(beta)) U^T

The module wraps the base layer (nn.Linear, or transformers' Conv1D whose (in, out) weight is read
through strides, never copied). The projection runs through `autolora_kernels.autolora_linear`:
Triton on CUDA tensors, the reference on CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from autolora.nn.adapter import AutoLoraAdapter
from autolora.nn.base_layer import add_to_base_weight, base_features, is_conv1d
from autolora_kernels import autolora_linear, check_x


class FusedAutoLoraLinear(AutoLoraAdapter):
    """An AutoLoRA adapter over the whole output of `base_layer`, which it keeps frozen.

    Computes y = x W0^T + b + s * ((x V^T) * alpha) U^T in one op (`autolora_kernels.autolora_linear`:
    Triton on CUDA tensors, the PyTorch reference elsewhere). Inherits the adapter's parameters and
    methods from `AutoLoraAdapter`.

    Args:
        base_layer: an `nn.Linear`, or transformers' `Conv1D` (GPT-2), whose weight W0: (out, in)
            (Conv1D: (in, out), read through strides) and bias stay frozen and are shared, not copied.
        rank: k in search mode, r in fixed mode.
        lora_alpha: the scaling numerator: the update is scaled by lora_alpha / rank.
        dropout: probability of dropping an input of the adapter.
        mode: "search" (beta trainable) or "fixed".
        selection: "softmax" (the paper) or "sigmoid" (its ablation).
    """

    def __init__(
        self,
        base_layer: nn.Module,
        rank: int = 8,
        lora_alpha: float = 16.0,
        dropout: float = 0.0,
        mode: str = "search",
        selection: str = "softmax",
    ) -> None:
        in_features, out_features = base_features(base_layer)
        w = base_layer.weight
        super().__init__(
            in_features, out_features, rank, lora_alpha, dropout, mode, w.dtype, w.device, selection
        )
        self.base_layer = base_layer
        self.conv1d = is_conv1d(base_layer)
        self.merged = False
        for p in base_layer.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_layer(cls, layer: nn.Module, **kwargs) -> FusedAutoLoraLinear:
        """Wrap an existing nn.Linear or Conv1D (shares its weight; nothing is copied).

        Args:
            layer: the projection to wrap.
            **kwargs (Any): the constructor's other arguments (rank, lora_alpha, dropout, mode, selection).

        Returns:
            The wrapping layer.
        """
        return cls(layer, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The projection and its adapter (dropout on the adapter's input in training only).

        Args:
            x: (..., in_features).

        Returns:
            (..., out_features); once merged, the base layer's output alone.
        """
        if self.merged:
            check_x(x, self.in_features, self.base_layer.weight)
            return self.base_layer(x)
        use_dropout = self.training and isinstance(self.dropout, nn.Dropout)
        U, beta = self.op_args()
        return autolora_linear(
            x,
            self.base_layer.weight,
            self.base_layer.bias,
            U,
            self.V,
            beta,
            self.scaling,
            conv1d=self.conv1d,
            x_adapter=self.dropout(x) if use_dropout else None,
        )

    def merge(self) -> None:
        """Fold Delta into the base weight (inference); the adapter is then bypassed."""
        if not self.merged:
            add_to_base_weight(self.base_layer, self.delta_weight(), slice(None), +1.0)
            self.merged = True

    def unmerge(self) -> None:
        """Subtract Delta again: restores W0 up to one fp rounding of W0 + Delta."""
        if self.merged:
            add_to_base_weight(self.base_layer, self.delta_weight(), slice(None), -1.0)
            self.merged = False
