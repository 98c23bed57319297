"""Launchers of the fused projection's Triton kernels: tiles, autotuning, plain functions on 2-D tensors.

fused_linear_forward and fused_linear_backward compute the forward and backward of the docstring of
fused_linear_kernels.py with no autograd (fused_linear.py wraps them in custom ops). Autotuned
wrappers are built on the first GPU launch from the tile tables of fused_linear_tuning.py; under
TRITON_INTERPRET the kernels run with fixed small blocks instead.
"""

from __future__ import annotations

import functools

import torch
import triton

from autolora_kernels.checks import MAX_RANK
from autolora_kernels.fused_linear_kernels import _fused_lora_gemm_kernel, _rank_grad_kernel, interpreting
from autolora_kernels.fused_linear_tuning import (
    GEMM_SHAPES,
    GRAD_SHAPES,
    dot_unit,
    select_gemm_shapes,
    select_grad_shapes,
)

MIN_RANK_PAD = 16  # tl.dot on the GPU needs inner dimensions >= 16 for 16-bit inputs
# Fixed small blocks under TRITON_INTERPRET=1, where autotune and do_bench cannot run (no driver)
# and each program costs ~2 ms: 16 x 32 x 32 still gives several blocks and ragged edges at M=37.
INTERPRET_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 4}
INTERPRET_GRAD_CONFIG = {"BLOCK_M": 16, "BLOCK_L": 32}
INTERPRET_SPLIT = 2  # two M-splits exercise the partial-sum reduction of gU / gV


# ----------------------------------------------------------------------------------------------------
# Tuning: configs from the tile tables of fused_linear_tuning.py, pruned per launch by its rules
# ----------------------------------------------------------------------------------------------------


@functools.cache
def _max_shared_bytes(device_index: int) -> int:
    """Shared memory one block may use (opt-in), as Triton checks it at launch: 232448 on an H100."""
    return triton.runtime.driver.active.utils.get_device_properties(device_index)["max_shared_mem"]


def _gemm_shape(c: triton.Config) -> tuple:
    return (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.num_stages, c.num_warps)


def _gemm_configs() -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_stages=s, num_warps=w)
        for bm, bn, bk, s, w in GEMM_SHAPES["mma"] + GEMM_SHAPES["fma"]
    ]


def _prune_gemm_configs(configs, named_args, **kwargs):
    args = {**named_args, **kwargs}
    a = args["a_ptr"]
    keep = select_gemm_shapes(
        dot_unit(a.dtype, args["PRECISION"]),
        args["M_BUCKET"],
        args["N"],
        args["R_PAD"],
        a.element_size(),
        args["HAS_BASE"],
        args["FUSE_P"],
        _max_shared_bytes(a.get_device()),
    )
    return [c for c in configs if _gemm_shape(c) in keep]


def _grad_shape(c: triton.Config) -> tuple:
    return (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_L"], c.num_stages, c.num_warps)


def _grad_configs() -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_L": bl}, num_stages=s, num_warps=w)
        for bm, bl, s, w in GRAD_SHAPES["mma"] + GRAD_SHAPES["fma"]
    ]


def _prune_grad_configs(configs, named_args, **kwargs):
    args = {**named_args, **kwargs}
    a = args["a_ptr"]
    unit = dot_unit(a.dtype, args["PRECISION"])
    keep = select_grad_shapes(unit, args["R_PAD"], a.element_size(), _max_shared_bytes(a.get_device()))
    return [c for c in configs if _grad_shape(c) in keep]


@functools.cache
def _tuned(kernel_name: str):
    """Autotuned wrappers, built on first GPU use (never at import, never under the interpreter).
    Keys: everything that changes the best tile besides the dtypes, which Triton adds itself; the
    strides of B tell a Linear weight (K-major) from a Conv1D one (N-major)."""
    if kernel_name == "gemm":
        return triton.autotune(
            configs=_gemm_configs(),
            key=["M_BUCKET", "N", "K", "R_PAD", "HAS_BASE", "FUSE_P", "ADD_LORA", "PRECISION"]
            + ["stride_bk", "stride_bn"],
            prune_configs_by={"early_config_prune": _prune_gemm_configs},
        )(_fused_lora_gemm_kernel)
    return triton.autotune(
        configs=_grad_configs(),
        key=["M_BUCKET", "L", "R_PAD", "PRECISION"],
        prune_configs_by={"early_config_prune": _prune_grad_configs},
    )(_rank_grad_kernel)


# ----------------------------------------------------------------------------------------------------
# Launchers: plain functions on 2-D tensors, usable without autograd
# ----------------------------------------------------------------------------------------------------


def rank_pad(r: int) -> int:
    """Rank padded to a power of two >= 16 inside the kernels (tensors keep their real rank)."""
    if not 1 <= r <= MAX_RANK:
        raise ValueError(f"rank: the Triton kernels support 1..{MAX_RANK}, got {r}")
    return max(MIN_RANK_PAD, triton.next_power_of_2(r))


def fp32_matmul_uses_tf32() -> bool:
    """Whether PyTorch's CUDA matmul rounds fp32 inputs to TF32, under either of its switches.

    torch >= 2.9 has `torch.backends.cuda.matmul.fp32_precision` ("tf32", "ieee", or "none" when never
    set); once it is set to "tf32", reading the legacy `allow_tf32` raises a RuntimeError about mixed
    APIs, so the new switch is read first and the legacy one only where the new one says nothing."""
    precision = getattr(torch.backends.cuda.matmul, "fp32_precision", "none")
    if precision != "none":
        return precision == "tf32"
    return bool(torch.backends.cuda.matmul.allow_tf32)


def _dot_switches(dtype: torch.dtype) -> tuple[bool, str]:
    """(DOT_FP32, PRECISION). DOT_FP32 only under the interpreter, whose bf16 tl.dot is wrong; compiled,
    bf16 goes to the tensor cores with fp32 accumulation. fp32 uses TF32 only where PyTorch's would."""
    dot_fp32 = interpreting() and dtype == torch.bfloat16
    tf32 = dtype != torch.float32 or fp32_matmul_uses_tf32()
    return dot_fp32, "tf32" if tf32 else "ieee"


def _launch_device(t: torch.Tensor) -> torch.cuda.device:
    """Triton launches on the current CUDA device, not on the tensors' one: a layer on cuda:1 while
    cuda:0 is current (device_map="auto" spreads a model so) would hand cuda:1 pointers to cuda:0."""
    return torch.cuda.device(t.device)


def _launch_gemm(a, out, p, coef, *, b=None, d=None, c=None, bias=None) -> None:
    """out = [A @ B] + [(P * coef) @ C] + [bias], with P = A @ D computed and stored when D is given,
    else read from p. Each of b (K, N), d (K, R), c (R, N) is a (tensor, stride0, stride1) view or
    None (term absent); out None means P only."""
    m, k = a.shape
    n = out.shape[1] if out is not None else 1
    r = coef.shape[0]
    if m == 0:
        return
    dot_fp32, precision = _dot_switches(a.dtype)
    dummy = (coef, 0, 0)  # never dereferenced: the constexpr flags compile the load or store away
    (bt, sbk, sbn), (dt, sdk, sdr), (ct, scr, scn) = (v if v is not None else dummy for v in (b, d, c))
    o, som, son = (out, out.stride(0), out.stride(1)) if out is not None else dummy
    args = (a, bt, dt, ct, coef, bias if bias is not None else coef, o, p, m, n, k, r)
    args += (triton.next_power_of_2(m),)
    args += (a.stride(0), a.stride(1), sbk, sbn, sdk, sdr, scr, scn, som, son, p.stride(0), p.stride(1))
    meta = dict(HAS_BASE=b is not None, FUSE_P=d is not None, ADD_LORA=c is not None)
    meta.update(HAS_BIAS=bias is not None, R_PAD=rank_pad(r), DOT_FP32=dot_fp32, PRECISION=precision)
    if interpreting():
        cfg = INTERPRET_CONFIG
        grid = (triton.cdiv(m, cfg["BLOCK_M"]) * triton.cdiv(n, cfg["BLOCK_N"]),)
        _fused_lora_gemm_kernel[grid](*args, **meta, **cfg)
    else:

        def grid(meta):
            return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)

        with _launch_device(a):
            _tuned("gemm")[grid](*args, **meta)


def _num_splits(m: int, device: torch.device) -> int:
    """Row splits for gU / gV: enough programs to fill the GPU (about 4 per SM at L = 768)."""
    if interpreting():
        return max(1, min(INTERPRET_SPLIT, triton.cdiv(m, INTERPRET_GRAD_CONFIG["BLOCK_M"])))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(triton.cdiv(m, 512), 4 * sms // 6))


def _rank_grad(a: torch.Tensor, p: torch.Tensor, coef: torch.Tensor, out_rl: bool) -> torch.Tensor:
    """sum_m A[m]^T (P[m] * coef) as (L, R), or (R, L) when out_rl, in A's dtype; fp32 partials."""
    m, l_dim = a.shape
    r = coef.shape[0]
    splits = _num_splits(m, a.device)
    part = torch.empty(
        (splits, r, l_dim) if out_rl else (splits, l_dim, r), device=a.device, dtype=torch.float32
    )
    sol, sor = (part.stride(2), part.stride(1)) if out_rl else (part.stride(1), part.stride(2))
    dot_fp32, precision = _dot_switches(a.dtype)
    args = (a, p, coef, part, m, l_dim, r, triton.next_power_of_2(max(m, 1)))
    args += (a.stride(0), a.stride(1), p.stride(0), p.stride(1), part.stride(0), sol, sor)
    meta = dict(R_PAD=rank_pad(r), DOT_FP32=dot_fp32, PRECISION=precision)
    if interpreting():
        cfg = INTERPRET_GRAD_CONFIG
        _rank_grad_kernel[(triton.cdiv(l_dim, cfg["BLOCK_L"]), splits)](*args, **meta, **cfg)
    else:

        def grid(meta):
            return (triton.cdiv(l_dim, meta["BLOCK_L"]), splits)

        with _launch_device(a):
            _tuned("grad")[grid](*args, **meta)
    # Fixed-order sum of `splits` partials: deterministic, unlike atomics.
    return part.sum(0).to(a.dtype)


def _weight_views(weight: torch.Tensor, conv1d: bool) -> tuple[int, int]:
    """(stride_n, stride_k) of W0 (N x K); a Conv1D weight is stored K x N and read transposed."""
    return (weight.stride(1), weight.stride(0)) if conv1d else (weight.stride(0), weight.stride(1))


def fused_linear_forward(
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

    x, x_adapter: (M, K), any strides; weight: (N, K) or (K, N) when conv1d; bias: (N,) or None;
    U: (N, r); V: (r, K); coef: (r,) fp32 = s * alpha. Returns y (M, N) in x's dtype and t (M, r).
    """
    bias = None if bias is None else bias.contiguous()  # the kernel reads it with stride 1
    m = x.shape[0]
    n, r = U.shape
    y = torch.empty((m, n), device=x.device, dtype=x.dtype)
    t = torch.empty((m, r), device=x.device, dtype=torch.float32)
    swn, swk = _weight_views(weight, conv1d)
    w0t = (weight, swk, swn)  # B = W0^T: (K, N)
    vt = (V, V.stride(1), V.stride(0))  # D = V^T: (K, r)
    ut = (U, U.stride(1), U.stride(0))  # C = U^T: (r, N)
    if x_adapter is None:  # t accumulated in the GEMM's own K loop: x is read once
        _launch_gemm(x, y, t, coef, b=w0t, d=vt, c=ut, bias=bias)
    else:  # t needs x_a, a different tensor: one thin pass over it first
        _launch_gemm(x_adapter, None, t, coef, d=vt)
        _launch_gemm(x, y, t, coef, b=w0t, c=ut, bias=bias)
    return y, t


def fused_linear_backward(
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
    """Gradients of `fused_linear_forward`: (gx, gx_a, gU, gV, gcoef).

    grad_y: (M, N); x_a: (M, K) the adapter input that was used (x itself unless adapter_separate);
    t: (M, r) fp32 from the forward. gx is None unless need_dx; gx_a is None unless need_dx_adapter.
    With adapter_separate (x_a is a dropout output, not x) gx holds only gy W0 and gx_a the adapter's
    part (h * coef) V; otherwise gx holds both. gcoef = sum_m t * h (fp32, h = gy U): galpha = s gcoef.
    """
    m = grad_y.shape[0]
    k = V.shape[1]
    r = U.shape[1]
    h = torch.empty((m, r), device=grad_y.device, dtype=torch.float32)
    swn, swk = _weight_views(weight, conv1d)
    w0 = (weight, swn, swk)  # B = W0: (N, K)
    u = (U, U.stride(0), U.stride(1))  # D = U: (N, r)
    v = (V, V.stride(0), V.stride(1))  # C = V: (r, K)
    gx = gx_a = None
    if need_dx:  # h accumulated in the dx GEMM's loop over N: gy is read once for both
        gx = torch.empty((m, k), device=grad_y.device, dtype=grad_y.dtype)
        _launch_gemm(grad_y, gx, h, coef, b=w0, d=u, c=None if adapter_separate else v)
    else:  # x frozen (or only the dropout branch wants a gradient): h alone, one thin pass over gy
        _launch_gemm(grad_y, None, h, coef, d=u)
    if need_dx_adapter:
        gx_a = torch.empty((m, k), device=grad_y.device, dtype=grad_y.dtype)
        _launch_gemm(grad_y, gx_a, h, coef, c=v)
    g_u = _rank_grad(grad_y, t, coef, out_rl=False)  # (N, r) = gy^T (t * coef)
    g_v = _rank_grad(x_a, h, coef, out_rl=True)  # (r, K) = (h * coef)^T x_a
    g_coef = (t * h).sum(0)  # (r,) from two M x r fp32 tensors: a few MB at most
    return gx, gx_a, g_u, g_v, g_coef
