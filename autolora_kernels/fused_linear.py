"""The fused AutoLoRA projection as PyTorch custom ops (torch.library), with fake impls and autograd.

    y = x W0^T + b + s * ((x_a V^T) * alpha) U^T,   alpha = softmax(beta) (1 in fixed mode)

Layers, as in flash-attention's Python side:
  autolora::fused_linear / autolora::fused_linear_backward   registered ops on 2-D tensors; the
      implementation takes one of three paths:
        fused      the Triton kernels (fused_linear_launch.py);
        composite  cuBLAS for the frozen GEMM, the low-rank update added in place (composite_linear.py);
        reference  reference.py: CPU tensors, AUTOLORA_FORCE_REFERENCE=1, other dtypes.
      On CUDA, AUTOLORA_KERNEL=auto (the default) takes the faster of fused and composite per shape,
      timed on first use (dispatch.py); =fused or =composite forces one. Ranks over 64 or a missing
      triton take the composite on CUDA, the reference elsewhere, and say so once. Fake impls let
      torch.compile trace the ops.
  autolora_linear   the functional wrapper: validates, flattens leading dims, calls the op.

This file imports no triton (the kernels live beside it) so the package imports without it.
AUTOLORA_TRITON_ON_CPU=1 runs the Triton path on CPU tensors; it needs TRITON_INTERPRET=1 (tests).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

import autolora_kernels.composite_linear as composite_linear
import autolora_kernels.dispatch as dispatch
from autolora_kernels.checks import MAX_RANK, autocast_enabled, check_autolora_inputs
from autolora_kernels.dispatch import COMPOSITE, FUSED, kernel_mode
from autolora_kernels.env import env_flag
from autolora_kernels.reference import (
    autolora_linear_backward_reference,
    autolora_linear_reference,
    selection_weights,
    softmax_backward,
)

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _kernels():
    """The Triton module, or None (with one warning) when triton cannot be imported."""
    try:
        from autolora_kernels import fused_linear_launch
    except ImportError as err:  # triton not installed, or broken
        _warn_once(
            "triton",
            f"autolora: triton unavailable ({err}); using the slower reference path "
            '(pip install "autolora[triton]")',
        )
        return None
    return fused_linear_launch


def _fallback(device_type: str) -> str:
    """The path where the Triton kernels cannot run: the composite (cuBLAS) on CUDA, else the reference."""
    return COMPOSITE if device_type == "cuda" else "reference"


def _path(x: Tensor, rank: int) -> str:
    """The path of this call: "fused" (Triton), "composite", "auto" (dispatch.py times both on first
    use of the shape) or "reference". AUTOLORA_FORCE_REFERENCE=1 wins over AUTOLORA_KERNEL."""
    if env_flag("AUTOLORA_FORCE_REFERENCE"):
        return "reference"
    mode = kernel_mode()  # checked before anything runs: a misspelt value is an error, not auto
    on_cpu = x.device.type == "cpu"
    if x.device.type not in ("cpu", "cuda") or (
        on_cpu and mode != COMPOSITE and not env_flag("AUTOLORA_TRITON_ON_CPU")
    ):
        return "reference"
    if x.dtype not in KERNEL_DTYPES:
        _warn_once(
            f"dtype {x.dtype}",
            f"autolora: no kernel for dtype {x.dtype} (kernels: {KERNEL_DTYPES}); using the reference path",
        )
        return "reference"
    if mode == COMPOSITE:
        return COMPOSITE
    if on_cpu and not env_flag("TRITON_INTERPRET"):
        raise RuntimeError(
            "AUTOLORA_TRITON_ON_CPU=1 needs TRITON_INTERPRET=1 (set before triton is imported)"
        )
    if rank > MAX_RANK:
        fallback = _fallback(x.device.type)
        _warn_once(
            f"rank>{MAX_RANK}",
            f"autolora: no Triton kernel for rank {rank} (kernels: rank <= {MAX_RANK}); "
            f"using the {fallback} path",
        )
        return fallback
    if _kernels() is None:
        return _fallback(x.device.type)
    return "auto" if mode == "auto" else FUSED


def _run(direction: str, path: str, key: Callable[[], tuple], args: tuple):
    """Call the `direction` ("forward" or "backward") of the fused or composite implementation on
    args; path "auto" asks dispatch.py, which times both the first time it meets key()."""
    impls = {
        FUSED: lambda: getattr(_kernels(), f"fused_linear_{direction}")(*args),
        COMPOSITE: lambda: getattr(composite_linear, f"composite_linear_{direction}")(*args),
    }
    if path == "auto":
        path = dispatch.choose(key(), impls, args[0].device)
    return impls[path]()


def _bucket(direction: str, a: Tensor, U: Tensor, V: Tensor, **flags: bool) -> tuple:
    """dispatch.bucket of a call on a (M, K), U (N, r), V (r, K)."""
    (m, k), (n, r) = a.shape, U.shape
    return dispatch.bucket(direction, a.device, m, n, k, r, a.dtype, **flags)


def layer_backend(device_type: str = "cuda") -> str:
    """Which path autolora_linear takes for fp32/fp16/bf16 tensors of rank <= 64, for reports such
    as `autolora doctor`.

    Args:
        device_type: "cuda", "cpu", ...

    Returns:
        "triton", "composite (<the reason>)", an "auto: ..." line on CUDA, or
        "reference (<the reason>)".
    """
    if env_flag("AUTOLORA_FORCE_REFERENCE"):
        return "reference (AUTOLORA_FORCE_REFERENCE=1)"
    try:
        mode = kernel_mode()
    except ValueError as exc:  # a report, not a call: say what every call would raise
        return f"none: every call raises ({exc})"
    if mode == COMPOSITE:
        return f"composite ({dispatch.KERNEL_ENV}=composite)"
    if device_type != "cuda" and not env_flag("AUTOLORA_TRITON_ON_CPU"):
        return f"reference ({device_type} tensors)"
    try:
        import triton  # noqa: F401
    except ImportError:
        return f"{_fallback(device_type)} (triton not installed)"
    if mode == FUSED:
        return f"triton ({dispatch.KERNEL_ENV}=fused)"
    if device_type != "cuda":
        return "triton (interpreter: nothing to time)"
    return f"auto: triton or composite, the faster per shape, timed on first use ({dispatch.KERNEL_ENV}=auto)"


def _coef(beta: Tensor | None, rank: int, scaling: float, like: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha, s * alpha), both fp32 (r,)."""
    alpha = selection_weights(beta, rank, like).float()
    return alpha, alpha * scaling


# ----------------------------------------------------------------------------------------------------
# Forward op
# ----------------------------------------------------------------------------------------------------


@torch.library.custom_op("autolora::fused_linear", mutates_args=())
def fused_linear_op(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    U: Tensor,
    V: Tensor,
    beta: Tensor | None,
    scaling: float,
    conv1d: bool,
    x_adapter: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """x, x_adapter: (M, K) -> (y (M, N) in x's dtype, t = x_a V^T (M, r) fp32, saved for backward)."""
    path = _path(x, U.shape[1])
    if path == "reference":
        y = autolora_linear_reference(x, weight, bias, U, V, beta, scaling, conv1d, x_adapter)
        return y, F.linear(x if x_adapter is None else x_adapter, V).float()
    _, coef = _coef(beta, U.shape[1], scaling, x)

    def key() -> tuple:
        flags = dict(conv1d=conv1d, bias=bias is not None, dropout=x_adapter is not None)
        return _bucket("forward", x, U, V, **flags)

    return _run("forward", path, key, (x, weight, bias, U, V, coef, conv1d, x_adapter))


@fused_linear_op.register_fake
def _(x, weight, bias, U, V, beta, scaling, conv1d, x_adapter):
    m, (n, r) = x.shape[0], U.shape
    return x.new_empty((m, n)), x.new_empty((m, r), dtype=torch.float32)


# ----------------------------------------------------------------------------------------------------
# Backward op: gradients that are not wanted come back as empty (0,) tensors (ops return no None)
# ----------------------------------------------------------------------------------------------------


@torch.library.custom_op("autolora::fused_linear_backward", mutates_args=())
def fused_linear_backward_op(
    grad_y: Tensor,
    x_a: Tensor,
    weight: Tensor,
    U: Tensor,
    V: Tensor,
    beta: Tensor | None,
    t: Tensor,
    scaling: float,
    conv1d: bool,
    need_dx: bool,
    need_dx_adapter: bool,
    adapter_separate: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(gx (M, K), gx_adapter (M, K), gU (N, r), gV (r, K), gbeta (r,)), each (0,) when not wanted.

    adapter_separate: x_a was a separate dropout output, so gx = gy W0 only and the adapter's part
    goes to gx_adapter; otherwise gx holds both. gbeta is (0,) in fixed mode (beta None).
    """
    rank = U.shape[1]

    def empty() -> Tensor:  # a fresh one each time: outputs of a custom op may not alias each other
        return grad_y.new_empty((0,))

    path = _path(grad_y, rank)
    if path == "reference":
        gx_base, gx_ad, g_u, g_v, g_beta = autolora_linear_backward_reference(
            grad_y, x_a, weight, U, V, beta, scaling, conv1d, t
        )
        gx = (gx_base if adapter_separate else gx_base + gx_ad) if need_dx else empty()
        gx_ad = gx_ad if need_dx_adapter else empty()
        return gx, gx_ad, g_u, g_v, g_beta if g_beta is not None else empty()
    alpha, coef = _coef(beta, rank, scaling, grad_y)

    def key() -> tuple:
        flags = dict(conv1d=conv1d, dx=need_dx, dx_adapter=need_dx_adapter, separate=adapter_separate)
        return _bucket("backward", x_a, U, V, **flags)

    args = (grad_y, x_a, weight, U, V, coef, t, conv1d, need_dx, need_dx_adapter, adapter_separate)
    gx, gx_ad, g_u, g_v, g_coef = _run("backward", path, key, args)
    g_beta = empty()
    if beta is not None:  # g_alpha = s * sum_m t h, through the softmax on r numbers
        g_beta = softmax_backward(alpha, scaling * g_coef).to(beta.dtype)
    return gx if gx is not None else empty(), gx_ad if gx_ad is not None else empty(), g_u, g_v, g_beta


@fused_linear_backward_op.register_fake
def _(grad_y, x_a, weight, U, V, beta, t, scaling, conv1d, need_dx, need_dx_adapter, adapter_separate):
    gx = x_a.new_empty(x_a.shape) if need_dx else grad_y.new_empty((0,))
    gx_ad = x_a.new_empty(x_a.shape) if need_dx_adapter else grad_y.new_empty((0,))
    g_beta = beta.new_empty(beta.shape) if beta is not None else grad_y.new_empty((0,))
    return gx, gx_ad, U.new_empty(U.shape), V.new_empty(V.shape), g_beta


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, U, V, beta, scaling, conv1d, x_adapter = inputs
    _, t = output
    ctx.mark_non_differentiable(t)
    # Saved activations: x_a (x itself without dropout) and t; the backward never needs x otherwise.
    ctx.save_for_backward(x if x_adapter is None else x_adapter, weight, U, V, beta, t)
    ctx.scaling, ctx.conv1d, ctx.separate = scaling, conv1d, x_adapter is not None


def _backward(ctx, grad_y: Tensor, grad_t: Tensor | None):
    x_a, weight, U, V, beta, t = ctx.saved_tensors
    need = ctx.needs_input_grad  # (x, weight, bias, U, V, beta, scaling, conv1d, x_adapter)
    need_dx_adapter = ctx.separate and need[8]
    if torch.is_grad_enabled():
        # create_graph=True (e.g. the exact hypergradient of docs/METHOD.md section 5): the gradients must be
        # differentiable, so use the explicit formulas in torch ops (t recomputed to stay in the graph).
        gx, gx_ad, g_u, g_v, g_beta = autolora_linear_backward_reference(
            grad_y, x_a, weight, U, V, beta, ctx.scaling, ctx.conv1d
        )
        gx = gx if ctx.separate else gx + gx_ad
    else:
        gx, gx_ad, g_u, g_v, g_beta = fused_linear_backward_op(
            grad_y,
            x_a,
            weight,
            U,
            V,
            beta,
            t,
            ctx.scaling,
            ctx.conv1d,
            need[0],
            need_dx_adapter,
            ctx.separate,
        )
    return (
        gx if need[0] else None,
        None,  # weight: frozen
        None,  # bias: frozen
        g_u if need[3] else None,
        g_v if need[4] else None,
        g_beta if beta is not None and need[5] else None,
        None,
        None,
        gx_ad if need_dx_adapter else None,
    )


fused_linear_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------------------------------
# Functional wrapper: the public entry point
# ----------------------------------------------------------------------------------------------------


def autolora_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    U: Tensor,
    V: Tensor,
    beta: Tensor | None,
    scaling: float,
    conv1d: bool = False,
    x_adapter: Tensor | None = None,
) -> Tensor:
    """y = x W0^T + b + s * ((x_a V^T) * softmax(beta)) U^T, fused (Triton on CUDA).

    Triton kernels run on CUDA tensors (fp32, fp16, bf16; r <= 64), the PyTorch reference elsewhere,
    saying so once when a CUDA call falls back. Registered as the custom op autolora::fused_linear,
    so torch.compile traces it; under autocast the tensors are cast to its dtype, beta stays fp32.

    Args:
        x: (..., K), the input.
        weight: W0, (N, K), or (K, N) when conv1d (read through strides, never copied); frozen.
        bias: (N,) or None; frozen.
        U: (N, r).
        V: (r, K).
        beta: (r,), the selection logits; None in fixed mode (alpha = 1).
        scaling: s, the update's scale (lora_alpha / r).
        conv1d: weight is laid out as transformers' Conv1D holds it, (K, N).
        x_adapter: (..., K), the adapter's input (x after dropout); None: x.

    Returns:
        y: (..., N). Gradients flow to x, U, V, beta and x_adapter.

    Raises:
        ValueError: a shape, device or layout that does not fit, naming the argument.
        TypeError: x is not a tensor, or its dtype differs from the weight's.
    """
    if autocast_enabled(x.device.type):
        # Mixed precision: the fp32 masters are cast per call, as autocast casts nn.Linear's weight;
        # beta stays fp32 (softmax of logits a few 1e-4 apart needs it). The op itself runs with
        # autocast off, since it has no autocast rule of its own.
        dtype = torch.get_autocast_dtype(x.device.type)
        cast = [None if t is None else t.to(dtype) for t in (x, weight, bias, U, V, x_adapter)]
        with torch.autocast(x.device.type, enabled=False):
            return autolora_linear(*cast[:5], beta, scaling, conv1d, cast[5])
    check_autolora_inputs(x, weight, bias, U, V, beta, conv1d, x_adapter)
    lead, k = x.shape[:-1], x.shape[-1]
    # reshape is a view whenever the leading dims can be merged (always for contiguous or sliced x).
    x2 = x.reshape(-1, k)
    xa2 = None if x_adapter is None else x_adapter.reshape(-1, k)
    y, _ = fused_linear_op(x2, weight, bias, U, V, beta, float(scaling), bool(conv1d), xa2)
    return y.reshape(*lead, U.shape[0])
