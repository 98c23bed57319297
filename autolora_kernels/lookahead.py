"""The lookahead op of the bilevel search (docs/METHOD.md, steps 2, 4, 5, 8), over lists of tensors.

Shaped like the fused projection op (fused_linear.py): reference loops (lookahead_reference.py), the
fast path (the C++/CUDA extension, built by _ext.py; else torch._foreach), input checks that name
the argument (lookahead_reference.check_*), and fake (meta) implementations of the extension's
ops for torch.compile / opcheck, registered once the extension is loaded.

One search iteration uses them as::

    saved = backup_and_sgd_step_(W, g, xi, out=saved)  # step 2: saved <- W, W' = W - xi g, one pass
                                              #   (or backup_and_adam_step_: AdamW's direction, moments
                                              #   untouched; or backup(W, out=saved) then sgd_step_)
    ...  v = grad_W' L_val(W', beta)
    eps = fd_eps(v, r)                        # step 4: r / ||v||_2, a 0-d device tensor (no host sync)
    set_perturbed_(W, saved, v, eps, +1.0)    # step 5: W+ = W + eps v
    set_perturbed_(W, saved, v, eps, -1.0)    #         W- = W - eps v
    restore_(W, saved)                        # step 8: W exactly as before

Every list is a Python list of tensors: fp32, fp16 or bf16 (math in fp32, one rounding), contiguous,
all on one device. Lists that pair with ``params`` match it in length and, per position, in shape and
dtype; dtypes may differ across positions. Violations raise ValueError naming the argument, before
anything is written.

``out=`` is a caller-owned workspace for the backup, reused across iterations (the list that the
previous call returned): no allocation and no page faults on fresh memory each iteration. It must
not share memory with ``params``. Without it, new tensors are allocated.

Backends, per device type: the C++/CUDA extension (csrc/, built on first use), else torch._foreach
(with one warning when the extension could not be built), else the single-tensor loops in
lookahead_reference.py. Each op takes ``backend=`` ("ext", "foreach", "reference") to force one;
AUTOLORA_DISABLE_EXT=1 turns the extension off. All ops run under no_grad: they are optimiser steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from autolora_kernels import _ext
from autolora_kernels import lookahead_reference as ref

BACKENDS = ("ext", "foreach", "reference")
_FOREACH_DEVICES = ("cpu", "cuda")
_fakes_registered = False


def _fake_none(*args, **kwargs) -> None:
    """The in-place ops return nothing: their fake writes nothing either."""


def _fake_backup(params):
    return [torch.empty_like(p) for p in params]


def _fake_scalar(tensors, *args):
    device = tensors[0].device if len(tensors) else torch.device("cpu")
    return torch.empty((), dtype=torch.float32, device=device)


_FAKES = {
    "backup": _fake_backup,
    "backup_into_": _fake_none,
    "restore_": _fake_none,
    "sgd_step_": _fake_none,
    "backup_and_sgd_step_": _fake_none,
    "adam_step_": _fake_none,
    "backup_and_adam_step_": _fake_none,
    "global_norm": _fake_scalar,
    "fd_eps": _fake_scalar,
    "set_perturbed_": _fake_none,
}


def register_fakes() -> bool:
    """Register the fake implementations of the extension's ops (once); False without the extension."""
    global _fakes_registered
    if not _fakes_registered and _ext.load():
        for name, fn in _FAKES.items():
            torch.library.register_fake(f"autolora::{name}")(fn)
        _fakes_registered = True
    return _fakes_registered


def build(verbose: bool = False) -> bool:
    """Build (or load the cached build of) the extension now; True when its ops are available."""
    return _ext.load(verbose=verbose) and register_fakes()


def _choose(tensors: Sequence[Tensor], backend: str | None) -> str:
    device_type = tensors[0].device.type if len(tensors) else "cpu"
    if backend is None:
        if any(t.dtype == torch.float64 for t in tensors):  # the kernels do 16/32-bit only
            return "foreach" if device_type in _FOREACH_DEVICES else "reference"
        if _ext.has_device(device_type) and register_fakes():
            return "ext"
        return "foreach" if device_type in _FOREACH_DEVICES else "reference"
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS} or None, got {backend!r}")
    if backend == "ext" and not (_ext.has_device(device_type) and register_fakes()):
        raise ValueError(f"backend: 'ext' has no {device_type} kernels here ({_ext.info()['error']})")
    return backend


def backend(device_type: str = "cpu") -> str:
    """Which path the ops take for tensors on `device_type`: "cuda-ext", "cpu-ext", "foreach" or
    "reference". Builds the extension on the first call (that is the only way to know)."""
    if _ext.has_device(device_type):
        return f"{device_type}-ext"
    return "foreach" if device_type in _FOREACH_DEVICES else "reference"


def _f32(ts: Sequence[Tensor]) -> list[Tensor]:
    """Tensors in at least fp32; fp32 and fp64 tensors are returned as they are (no copy)."""
    return [t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in ts]


def _check_foreach(params: Sequence[Tensor], **others: Sequence[Tensor]) -> None:
    ref.check_tensors(params, "params")
    for name, other in others.items():
        ref.check_like(other, name, params, "params")


def _check_out_foreach(params: Sequence[Tensor], out: Sequence[Tensor] | None, **others) -> None:
    _check_foreach(params, **({} if out is None else {"out": out}), **others)
    if out is not None:
        ref.check_apart(out, "out", params)


def _new_out(params: Sequence[Tensor], out: Sequence[Tensor] | None) -> list[Tensor]:
    return [torch.empty_like(p) for p in params] if out is None else list(out)


@torch.no_grad()
def backup(
    params: Sequence[Tensor], *, out: Sequence[Tensor] | None = None, backend: str | None = None
) -> list[Tensor]:
    """Copies of `params` (same shapes, dtypes, device): new tensors, or written into `out`."""
    if not len(params):
        return ref.backup(params, out)
    how = _choose(params, backend)
    if how == "ext":
        if out is None:
            return list(torch.ops.autolora.backup(list(params)))
        torch.ops.autolora.backup_into_(list(out), list(params))
        return list(out)
    if how == "foreach":
        _check_out_foreach(params, out)
        out = _new_out(params, out)
        torch._foreach_copy_(out, list(params))
        return out
    return ref.backup(params, out)


@torch.no_grad()
def restore_(params: Sequence[Tensor], backups: Sequence[Tensor], *, backend: str | None = None) -> None:
    """params[i] <- backups[i], bit for bit."""
    if not len(params):
        return ref.restore_(params, backups)
    how = _choose(params, backend)
    if how == "ext":
        return torch.ops.autolora.restore_(list(params), list(backups))
    if how == "foreach":
        _check_foreach(params, backups=backups)
        return torch._foreach_copy_(list(params), list(backups))
    return ref.restore_(params, backups)


@torch.no_grad()
def sgd_step_(
    params: Sequence[Tensor], grads: Sequence[Tensor], xi: float, *, backend: str | None = None
) -> None:
    """The virtual SGD step: params[i] <- params[i] - xi * grads[i]."""
    if not len(params):
        return ref.sgd_step_(params, grads, xi)
    how = _choose(params, backend)
    if how == "ext":
        return torch.ops.autolora.sgd_step_(list(params), list(grads), float(xi))
    if how == "foreach":
        _check_foreach(params, grads=grads)
        if all(p.dtype == torch.float32 for p in params):
            return torch._foreach_add_(list(params), list(grads), alpha=-xi)
        out = _f32(params)
        torch._foreach_add_(out, _f32(grads), alpha=-xi)
        return torch._foreach_copy_(list(params), out)
    return ref.sgd_step_(params, grads, xi)


@torch.no_grad()
def backup_and_sgd_step_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    xi: float,
    *,
    out: Sequence[Tensor] | None = None,
    backend: str | None = None,
) -> list[Tensor]:
    """backup(params, out=out) then sgd_step_(params, grads, xi), returning the backup. The extension
    does both in one pass (params read once: one of the sequence's ~13 list traversals fewer)."""
    if not len(params):
        return ref.backup_and_sgd_step_(params, grads, xi, out)
    how = _choose(params, backend)
    if how == "ext":
        saved = _new_out(params, out)
        torch.ops.autolora.backup_and_sgd_step_(list(params), saved, list(grads), float(xi))
        return saved
    if how == "foreach":
        _check_out_foreach(params, out, grads=grads)
        saved = backup(params, out=out, backend=how)
        sgd_step_(params, grads, xi, backend=how)
        return saved
    return ref.backup_and_sgd_step_(params, grads, xi, out)


@torch.no_grad()
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
    *,
    backend: str | None = None,
) -> None:
    """The virtual AdamW step: params <- what torch.optim.AdamW's step number `step` (>= 1) would
    make of them with gradient `grads` and moments `exp_avg`, `exp_avg_sq` (read, never written).
    See lookahead_reference.adam_step_ for the formula."""
    if not len(params):
        return ref.adam_step_(params, grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)
    how = _choose(params, backend)
    if how == "ext":
        return torch.ops.autolora.adam_step_(
            list(params), list(grads), list(exp_avg), list(exp_avg_sq),
            int(step), float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
        )  # fmt: skip
    if how == "reference":
        return ref.adam_step_(params, grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)
    ref.check_tensors(params, "params")
    ref.check_adam(params, grads, exp_avg, exp_avg_sq, step)
    g = _f32(grads)
    m = torch._foreach_lerp(_f32(exp_avg), g, 1 - beta1)  # new tensors: the moments stay as they are
    v = torch._foreach_mul(_f32(exp_avg_sq), beta2)
    torch._foreach_addcmul_(v, g, g, value=1 - beta2)
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, (1 - beta2**step) ** 0.5)
    torch._foreach_add_(denom, eps)
    torch._foreach_div_(m, denom)
    new = torch._foreach_mul(_f32(params), 1 - lr * weight_decay)
    torch._foreach_add_(new, m, alpha=-lr / (1 - beta1**step))
    torch._foreach_copy_(list(params), new)


@torch.no_grad()
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
    *,
    out: Sequence[Tensor] | None = None,
    backend: str | None = None,
) -> list[Tensor]:
    """backup(params, out=out) then adam_step_(params, ...), returning the backup; one pass in the
    extension."""
    hyper = (step, lr, beta1, beta2, eps, weight_decay)
    if not len(params):
        return ref.backup_and_adam_step_(params, grads, exp_avg, exp_avg_sq, *hyper, out)
    how = _choose(params, backend)
    if how == "ext":
        saved = _new_out(params, out)
        torch.ops.autolora.backup_and_adam_step_(
            list(params), saved, list(grads), list(exp_avg), list(exp_avg_sq),
            int(step), float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
        )  # fmt: skip
        return saved
    if how == "foreach":
        _check_out_foreach(params, out)
        ref.check_adam(params, grads, exp_avg, exp_avg_sq, step)
        saved = backup(params, out=out, backend=how)
        adam_step_(params, grads, exp_avg, exp_avg_sq, *hyper, backend=how)
        return saved
    return ref.backup_and_adam_step_(params, grads, exp_avg, exp_avg_sq, *hyper, out)


@torch.no_grad()
def global_norm(tensors: Sequence[Tensor], *, backend: str | None = None) -> Tensor:
    """sqrt(sum over all tensors of sum(t^2)), 0-d fp32 on the tensors' device (cpu and 0 for [])."""
    if not len(tensors):
        return ref.global_norm(tensors)
    how = _choose(tensors, backend)
    if how == "ext":
        return torch.ops.autolora.global_norm(list(tensors))
    if how == "foreach":
        ref.check_tensors(tensors, "tensors")
        wide = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
        norms = torch._foreach_norm(list(tensors), 2, dtype=wide)
        return torch.linalg.vector_norm(torch.stack(norms)).float()
    return ref.global_norm(tensors)


@torch.no_grad()
def fd_eps(v: Sequence[Tensor], r: float, *, backend: str | None = None) -> Tensor:
    """Finite-difference step r / ||v||_2 as a 0-d fp32 device tensor. Zero (or non-finite) norm:
    returns r, so eps is always finite and eps * v = 0 when v = 0."""
    if not len(v):
        return ref.fd_eps(v, r)
    how = _choose(v, backend)
    if how == "ext":
        return torch.ops.autolora.fd_eps(list(v), float(r))
    if how == "foreach":
        norm = global_norm(v, backend="foreach")
        rr = torch.full_like(norm, r)
        return torch.where((norm > 0) & torch.isfinite(norm), rr / norm, rr)
    return ref.fd_eps(v, r)


@torch.no_grad()
def set_perturbed_(
    params: Sequence[Tensor],
    backups: Sequence[Tensor],
    v: Sequence[Tensor],
    eps: Tensor,
    sign: float,
    *,
    backend: str | None = None,
) -> None:
    """params[i] <- backups[i] + sign * eps * v[i]; eps is a 0-d fp32 tensor, never read on the host."""
    if not len(params):
        return ref.set_perturbed_(params, backups, v, eps, sign)
    how = _choose(params, backend)
    if how == "ext":
        return torch.ops.autolora.set_perturbed_(list(params), list(backups), list(v), eps, float(sign))
    if how == "reference":
        return ref.set_perturbed_(params, backups, v, eps, sign)
    _check_foreach(params, backups=backups, v=v)
    ref.check_eps(eps, params)
    s = eps.reshape(()) * sign
    new = torch._foreach_mul(_f32(v), s)
    torch._foreach_add_(new, _f32(backups))
    torch._foreach_copy_(list(params), new)
