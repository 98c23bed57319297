"""The lookahead ops as single-tensor Python loops: the test oracle and the last fallback.

Math is fp32 for every dtype (widen, compute, round once), as in the C++ and foreach paths. The
input rules (also enforced in C++, csrc/lookahead.h) are checked here by `check_*`:
- every tensor is float32, float16 or bfloat16, contiguous, on the device of the first tensor;
- lists that pair with ``params`` have its length and, position by position, its shape and dtype.
  Dtypes MAY differ across positions (e.g. bf16 adapters with an fp32 head); math is fp32 anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)  # float64: foreach/reference only


def check_tensors(ts: Sequence[Tensor], name: str, device: torch.device | None = None) -> None:
    if not isinstance(ts, (list, tuple)):
        raise ValueError(f"{name}: expected a list of tensors, got {type(ts).__name__}")
    for i, t in enumerate(ts):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}[{i}]: expected a tensor, got {type(t).__name__}")
        if t.dtype not in _DTYPES:
            raise ValueError(
                f"{name}[{i}]: expected dtype float32, float16, bfloat16 or float64, got {t.dtype}"
            )
        if device is None:
            device = t.device
        if t.device != device:
            raise ValueError(
                f"{name}[{i}]: expected device {device} (all tensors of one call share a device), "
                f"got {t.device}"
            )
        if not t.is_contiguous():
            raise ValueError(
                f"{name}[{i}]: expected a contiguous tensor, got shape {list(t.shape)} "
                f"with strides {list(t.stride())}"
            )


def check_like(other: Sequence[Tensor], name: str, ref: Sequence[Tensor], ref_name: str) -> None:
    """`other` pairs with `ref`: same length, per position the same shape and dtype, same device."""
    if not isinstance(other, (list, tuple)):
        raise ValueError(f"{name}: expected a list of tensors, got {type(other).__name__}")
    if len(other) != len(ref):
        raise ValueError(f"{name}: expected {len(ref)} tensors (as many as {ref_name}), got {len(other)}")
    for i, (o, r) in enumerate(zip(other, ref, strict=True)):
        if not isinstance(o, Tensor):
            raise ValueError(f"{name}[{i}]: expected a tensor, got {type(o).__name__}")
        if o.shape != r.shape:
            raise ValueError(
                f"{name}[{i}]: expected shape {list(r.shape)} (as {ref_name}[{i}]), got {list(o.shape)}"
            )
        if o.dtype != r.dtype:
            raise ValueError(f"{name}[{i}]: expected dtype {r.dtype} (as {ref_name}[{i}]), got {o.dtype}")
    check_tensors(other, name, ref[0].device if len(ref) else None)


def check_eps(eps: Tensor, params: Sequence[Tensor]) -> None:
    if not isinstance(eps, Tensor) or eps.dtype != torch.float32 or eps.numel() != 1:
        got = f"dtype {eps.dtype} and shape {list(eps.shape)}" if isinstance(eps, Tensor) else type(eps)
        raise ValueError(f"eps: expected a 0-d float32 tensor, got {got}")
    if len(params) and eps.device != params[0].device:
        raise ValueError(f"eps: expected device {params[0].device}, got {eps.device}")


def check_apart(out: Sequence[Tensor], name: str, params: Sequence[Tensor]) -> None:
    """out[i] shares no memory with params[i] (a backup that aliases W would hold the stepped W)."""
    for i, (o, p) in enumerate(zip(out, params, strict=True)):
        a, b, n = o.data_ptr(), p.data_ptr(), p.numel() * p.element_size()
        if n and not (a + n <= b or b + n <= a):
            raise ValueError(
                f"{name}[{i}]: expected memory apart from params[{i}], got an overlapping tensor"
            )


def _check_out(out: Sequence[Tensor], params: Sequence[Tensor]) -> None:
    check_like(out, "out", params, "params")
    check_apart(out, "out", params)


def backup(params: Sequence[Tensor], out: Sequence[Tensor] | None = None) -> list[Tensor]:
    """Copies of `params`: new tensors, or written into `out` (a list like `params`) and returned."""
    check_tensors(params, "params")
    if out is None:
        return [p.clone() for p in params]
    _check_out(out, params)
    for o, p in zip(out, params, strict=True):
        o.copy_(p)
    return list(out)


def restore_(params: Sequence[Tensor], backups: Sequence[Tensor]) -> None:
    check_tensors(params, "params")
    check_like(backups, "backups", params, "params")
    for p, b in zip(params, backups, strict=True):
        p.copy_(b)


def sgd_step_(params: Sequence[Tensor], grads: Sequence[Tensor], xi: float) -> None:
    """p <- p - xi * g."""
    check_tensors(params, "params")
    check_like(grads, "grads", params, "params")
    for p, g in zip(params, grads, strict=True):
        p.copy_(p.float() - xi * g.float())


def backup_and_sgd_step_(
    params: Sequence[Tensor], grads: Sequence[Tensor], xi: float, out: Sequence[Tensor] | None = None
) -> list[Tensor]:
    """saved = backup(params, out); sgd_step_(params, grads, xi); returns saved. Checks come first."""
    check_tensors(params, "params")
    if out is not None:
        _check_out(out, params)
    check_like(grads, "grads", params, "params")
    saved = backup(params, out)
    sgd_step_(params, grads, xi)
    return saved


def check_adam(params, grads, exp_avg, exp_avg_sq, step: int) -> None:
    """The AdamW step's inputs beside an already checked `params`: lists like it, and step >= 1."""
    for other, name in ((grads, "grads"), (exp_avg, "exp_avg"), (exp_avg_sq, "exp_avg_sq")):
        check_like(other, name, params, "params")
    if step < 1:
        raise ValueError(f"step: expected the step number of this update (>= 1), got {step}")


def adam_step_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avg: Sequence[Tensor],
    exp_avg_sq: Sequence[Tensor],
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """p <- the AdamW update of p with moments advanced by g; the moments themselves are not written.

    m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2; p <- p (1 - lr wd) - lr / (1 - beta1^step)
    * m / (sqrt(v) / sqrt(1 - beta2^step) + eps): torch.optim.AdamW's single-tensor formula.
    """
    check_tensors(params, "params")
    check_adam(params, grads, exp_avg, exp_avg_sq, step)
    step_size = lr / (1 - beta1**step)
    bc2_sqrt = math.sqrt(1 - beta2**step)
    for p, g, m0, v0 in zip(params, grads, exp_avg, exp_avg_sq, strict=True):
        g = g.float()
        m = torch.lerp(m0.float(), g, 1 - beta1)
        v = v0.float() * beta2 + (1 - beta2) * (g * g)
        denom = v.sqrt() / bc2_sqrt + eps
        p.copy_(p.float() * (1 - lr * weight_decay) - step_size * (m / denom))


def backup_and_adam_step_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avg: Sequence[Tensor],
    exp_avg_sq: Sequence[Tensor],
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    out: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """saved = backup(params, out); adam_step_(params, ...); returns saved. Checks come first."""
    check_tensors(params, "params")
    if out is not None:
        _check_out(out, params)
    check_adam(params, grads, exp_avg, exp_avg_sq, step)
    saved = backup(params, out)
    adam_step_(params, grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)
    return saved


def global_norm(tensors: Sequence[Tensor]) -> Tensor:
    """sqrt(sum of squares over all tensors), 0-d fp32 on the tensors' device (cpu for [])."""
    check_tensors(tensors, "tensors")
    device = tensors[0].device if len(tensors) else torch.device("cpu")
    total = torch.zeros((), dtype=torch.float64, device=device)
    for t in tensors:
        total += t.float().square().sum(dtype=torch.float64)
    return total.sqrt().float()


def fd_eps(v: Sequence[Tensor], r: float) -> Tensor:
    """r / ||v||_2 as 0-d fp32; r itself when the norm is 0 (or not finite), never NaN or inf."""
    norm = global_norm(v)
    ok = (norm > 0) & torch.isfinite(norm)
    return torch.where(ok, torch.full_like(norm, r) / norm, torch.full_like(norm, r))


def set_perturbed_(
    params: Sequence[Tensor], backups: Sequence[Tensor], v: Sequence[Tensor], eps: Tensor, sign: float
) -> None:
    """p <- backup + sign * eps * v (eps a 0-d fp32 tensor on the params' device)."""
    check_tensors(params, "params")
    check_like(backups, "backups", params, "params")
    check_like(v, "v", params, "params")
    check_eps(eps, params)
    s = eps.reshape(()) * sign
    for p, b, d in zip(params, backups, v, strict=True):
        p.copy_(b.float() + s * d.float())
