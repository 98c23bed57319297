"""Reference AutoLoRA projection in plain PyTorch: the single source of truth for the math.

Every kernel in this package is tested against these functions (docs/METHOD.md section 1):

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
    """y = x W0^T + b + s * ((x_a V^T) * softmax(beta)) U^T, in plain PyTorch: the math the kernels
    are tested against.

    Args:
        x: (..., K).
        weight: (N, K), or (K, N) when conv1d.
        bias: (N,) or None.
        U: (N, r).
        V: (r, K).
        beta: (r,), or None in fixed mode (alpha = 1).
        scaling: s.
        conv1d: weight is laid out (K, N), as transformers' Conv1D holds it.
        x_adapter: (..., K), the adapter's input (x after dropout); None: x.

    Returns:
        y: (..., N).
    """
    y = F.linear(x, base_weight_nk(weight, conv1d), bias)
    return y + lora_delta_reference(x if x_adapter is None else x_adapter, U, V, beta, scaling)


def sliced_linear_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    adapters: list[tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor | None, float]],
    conv1d: bool = False,
    x_adapter: torch.Tensor | None = None,
) -> torch.Tensor:
    """A fused projection (GPT-2's c_attn: [q | k | v]) with one adapter per adapted column slice:
    y = x W0^T + b, then y[..., sl] += s * ((x_a V^T) * softmax(beta)) U^T for each adapter.

    adapters: (sl, U (n_sl, r), V (r, K), beta (r,) or None, s) with disjoint column slices sl;
    the other columns are the frozen projection's. Shapes otherwise as autolora_linear_reference.
    """
    y = F.linear(x, base_weight_nk(weight, conv1d), bias)
    x_a = x if x_adapter is None else x_adapter
    pieces, col = [], 0
    for sl, U, V, beta, scaling in sorted(adapters, key=lambda a: a[0].start):
        pieces += [y[..., col : sl.start], y[..., sl] + lora_delta_reference(x_a, U, V, beta, scaling)]
        col = sl.stop
    return torch.cat([*pieces, y[..., col:]], dim=-1)


def autolora_linear_backward_reference(
    grad_y: torch.Tensor,
    x_a: torch.Tensor,
    weight: torch.Tensor,
    U: torch.Tensor,
    V: torch.Tensor,
    beta: torch.Tensor | None,
    scaling: float,
    conv1d: bool = False,
    t: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The backward of `autolora_linear_reference` written out (docs/METHOD.md section 1), for code
    that cannot run autograd itself (a custom op's implementation runs below the autograd dispatch key).

    grad_y: (M, N); x_a: (M, K) the adapter input; t: x_a V^T if already known. Returns
    (gx_base, gx_adapter, gU, gV, gbeta): gx_base = gy W0 is the gradient through the frozen
    projection, gx_adapter = s (h * alpha) V through the adapter (their sum when x_a is x);
    gbeta is None in fixed mode. Tests check this against autograd of the forward above.
    """
    dtype = x_a.dtype
    alpha = selection_weights(beta, V.shape[0], x_a)
    coef = (alpha * scaling).to(dtype)
    t = F.linear(x_a, V) if t is None else t.to(dtype)
    h = grad_y @ U  # (M, r)
    hc = h * coef
    gx_base = grad_y @ base_weight_nk(weight, conv1d)
    gx_adapter = hc @ V
    g_u = grad_y.t() @ (t * coef)
    g_v = hc.t() @ x_a
    if beta is None:
        return gx_base, gx_adapter, g_u, g_v, None
    g_alpha = scaling * (t.to(alpha.dtype) * h.to(alpha.dtype)).sum(0)
    return gx_base, gx_adapter, g_u, g_v, softmax_backward(alpha, g_alpha).to(beta.dtype)


def softmax_backward(alpha: torch.Tensor, g_alpha: torch.Tensor) -> torch.Tensor:
    """The softmax Jacobian applied to g_alpha: d beta = alpha * (g_alpha - <alpha, g_alpha>)."""
    return alpha * (g_alpha - (alpha * g_alpha).sum())
