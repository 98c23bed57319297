"""The composite AutoLoRA projection: the vendor GEMM (cuBLAS on CUDA) for the frozen product, then the
low-rank update added in place. Plain PyTorch, no Triton, no autograd of its own.

    forward:  t = x_a V^T                          (M x r)
              y = addmm(b, x, W0^T);  y += (t * c) U^T   in place (one GEMM with beta = 1)
    backward: h = gy U
              gx = gy W0;  gx += (h * c) V              in place (to gx_a instead when dropout is separate)
              gU = gy^T (t * c),  gV = (h * c)^T x_a,  gcoef = sum_m t * h

c = s * alpha (fp32, cast to the input dtype for the thin products). The same signatures as the Triton
launchers of fused_linear_launch.py, so the op can take either (dispatch.py chooses); tested against
reference.py. The in-place adds keep one M x N (M x K) tensor per product, where y + delta would
allocate a second: 134 MB more at 16k tokens x 4096 in bf16.
"""

from __future__ import annotations

import torch

from autolora_kernels.reference import base_weight_nk


def composite_linear_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    U: torch.Tensor,
    V: torch.Tensor,
    coef: torch.Tensor,
    conv1d: bool = False,
    x_adapter: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x W0^T + b + ((x_a V^T) * coef) U^T and t = x_a V^T (fp32).

    x, x_adapter: (M, K); weight: (N, K) or (K, N) when conv1d; bias: (N,) or None; U: (N, r);
    V: (r, K); coef: (r,) fp32 = s * alpha. Returns y (M, N) in x's dtype and t (M, r) fp32.
    """
    w_kn = base_weight_nk(weight, conv1d).t()  # a view: Conv1D's stored (K, N) weight as it is
    t = (x if x_adapter is None else x_adapter) @ V.t()
    y = x @ w_kn if bias is None else torch.addmm(bias, x, w_kn)
    y.addmm_(t * coef.to(t.dtype), U.t())
    return y, t.float()


def composite_linear_backward(
    grad_y: torch.Tensor,
    x_a: torch.Tensor,
    weight: torch.Tensor,
    U: torch.Tensor,
    V: torch.Tensor,
    coef: torch.Tensor,
    t: torch.Tensor,
    conv1d: bool = False,
    need_dx: bool = True,
    need_dx_adapter: bool = False,
    adapter_separate: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of `composite_linear_forward`: (gx, gx_a, gU, gV, gcoef), as the Triton launcher's.

    grad_y: (M, N); x_a: (M, K) the adapter input; t: (M, r) fp32 from the forward. gx is None unless
    need_dx, gx_a None unless need_dx_adapter; with adapter_separate gx holds gy W0 only and gx_a
    the adapter's part. gcoef: (r,) fp32 = sum_m t * h.
    """
    dtype = grad_y.dtype
    c = coef.to(dtype)
    h = grad_y @ U  # (M, r)
    hc = h * c
    gx = gx_a = None
    if need_dx:
        gx = grad_y @ base_weight_nk(weight, conv1d)
        if not adapter_separate:
            gx.addmm_(hc, V)
    if need_dx_adapter:
        gx_a = hc @ V
    g_u = grad_y.t() @ (t.to(dtype) * c)
    g_v = hc.t() @ x_a
    g_coef = (t * h.float()).sum(0)
    return gx, gx_a, g_u, g_v, g_coef
