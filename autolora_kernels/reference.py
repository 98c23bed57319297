"""Reference AutoLoRA projection in plain PyTorch: the single source of truth for the math.

Every kernel in this package is tested against these functions (SPEC.md section 1):

    alpha = softmax(beta)                       (fixed mode: beta is None, alpha = 1)
    y     = x W0^T + b + s * ((x_a V^T) * alpha) U^T

where x_a is the adapter input (x after dropout, or x itself). Autograd of these expressions gives
dx, dU, dV and dbeta; W0 and b are frozen by the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selection_weights(beta: torch.Tensor | None, rank: int, like: torch.Tensor) -> torch.Tensor:
    """alpha = softmax(beta) in at least fp32 (shape (rank,)); all ones in fixed mode (beta None)."""
    if beta is None:
        return torch.ones(rank, dtype=torch.float32, device=like.device)
    return torch.softmax(beta.to(torch.promote_types(beta.dtype, torch.float32)), dim=-1)


def base_weight_nk(weight: torch.Tensor, conv1d: bool) -> torch.Tensor:
    """The frozen weight as N x K (out x in). Conv1D stores K x N: a transposed view, never a copy."""
    return weight.t() if conv1d else weight


def lora_delta_reference(
    x: torch.Tensor,
    U: torch.Tensor,
    V: torch.Tensor,
    beta: torch.Tensor | None,
    scaling: float,
) -> torch.Tensor:
    """s * ((x V^T) * alpha) U^T.  x: (..., K), U: (N, r), V: (r, K), beta: (r,) or None -> (..., N)."""
    alpha = selection_weights(beta, V.shape[0], x).to(x.dtype)
    t = F.linear(x, V)
    return F.linear(t * (alpha * scaling), U)


def autolora_linear_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    U: torch.Tensor,
    V: torch.Tensor,
    beta: torch.Tensor | None,
    scaling: float,
    conv1d: bool = False,
    x_adapter: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = x W0^T + b + s * ((x_a V^T) * softmax(beta)) U^T.

    x: (..., K); weight: (N, K), or (K, N) when conv1d; bias: (N,) or None; U: (N, r); V: (r, K);
    beta: (r,) or None (fixed mode); x_adapter: the adapter's input (x after dropout), default x.
    """
    y = F.linear(x, base_weight_nk(weight, conv1d), bias)
    return y + lora_delta_reference(x if x_adapter is None else x_adapter, U, V, beta, scaling)
