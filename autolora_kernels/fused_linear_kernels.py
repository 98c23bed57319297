"""Triton kernels and plain launchers for the fused AutoLoRA projection (needs triton; no autograd here).

    forward:  t = x_a V^T                          (M x r, fp32, saved for backward)
              y = x W0^T + b + ((t * c) U^T)       c = s * alpha, alpha = softmax(beta) or 1
    backward: h = gy U                             (M x r, fp32)
              gx = gy W0 + (h * c) V               (the second term goes to x_a when dropout is separate)
              gU = gy^T (t * c),  gV = (h * c)^T x_a,  galpha = s * sum_m t * h

Both big products have the same shape, out = A @ B + (P * c) @ C with P = A @ D, so one kernel serves
both: forward (A, B, D, C) = (x, W0^T, V^T, U^T); backward (gy, W0, U, V). With no dropout, P is
accumulated in the same K loop as the main GEMM (the "prologue"), so x (or gy) is read once: the extra
dot costs R_PAD / BLOCK_N of the main MMA work (16 / 128 = 12.5% on paper, not yet measured) and no
extra memory traffic, where a separate t kernel would re-read x (134 MB at 16k x 4096 bf16). The
rank-r term is then one more K chunk of width R_PAD added to the accumulator. gU and gV are one pass
each over gy and x_a (split over M, partial sums reduced in a fixed order: no atomics).

Passes: forward 1 over x (2 with dropout: t reads x_a); backward 1 GEMM over gy, 1 pass over gy (gU),
1 pass over x_a (gV). No M x N tensors besides y and gy; saved activations: x_a (x) and t.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from autolora_kernels.checks import MAX_RANK
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


def interpreting() -> bool:
    """True when the kernels run in Triton's interpreter (on the CPU, in numpy).

    Asked of the kernel object, not the environment: @triton.jit read TRITON_INTERPRET (any of 1, true,
    yes, on) when this module was imported, and only that decides which path the launch takes."""
    return not isinstance(_fused_lora_gemm_kernel, triton.runtime.JITFunction)


# ----------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------


@triton.jit
def _mma(a, b, acc, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    """acc + a @ b in fp32. DOT_FP32 upcasts first: the interpreter's bf16 tl.dot is silently wrong."""
    if DOT_FP32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc, input_precision=PRECISION)


# M (tokens) only bounds masks and loops: specialising on its divisibility by 16 would compile every
# kernel twice (ragged and even token counts) for no faster code; M_BUCKET is an autotune key only.
NO_SPECIALIZE = ["M", "M_BUCKET"]


@triton.jit(do_not_specialize=NO_SPECIALIZE)
def _fused_lora_gemm_kernel(
    # pointers
    a_ptr,  # (M, K)   x or gy
    b_ptr,  # (K, N)   W0^T or W0, through strides
    d_ptr,  # (K, R)   V^T or U: P = A @ D when FUSE_P
    c_ptr,  # (R, N)   U^T or V
    coef_ptr,  # (R,)  fp32 s * alpha
    bias_ptr,  # (N,)
    out_ptr,  # (M, N)
    p_ptr,  # (M, R)   fp32 t or h: written when FUSE_P, read when ADD_LORA and not FUSE_P
    # sizes
    M,
    N,
    K,
    R,
    M_BUCKET,  # next power of two of M: an autotune key that does not retune for every M
    # strides
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_dk,
    stride_dr,
    stride_cr,
    stride_cn,
    stride_om,
    stride_on,
    stride_pm,
    stride_pr,
    # meta
    HAS_BASE: tl.constexpr,  # accumulate A @ B
    FUSE_P: tl.constexpr,  # accumulate P = A @ D in the same K loop (programs with pid_n == 0 store it)
    ADD_LORA: tl.constexpr,  # add (P * coef) @ C
    HAS_BIAS: tl.constexpr,
    R_PAD: tl.constexpr,
    DOT_FP32: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """out = [A @ B] + [(P * coef) @ C] + [bias], P = A @ D fused or read from p_ptr (flags pick terms)."""
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    # Grouped order: GROUP_M row blocks share each B column block while it is in L2.
    group_size = GROUP_M * num_pid_n
    first_m = (pid // group_size) * GROUP_M
    rows = min(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group_size) % rows
    pid_n = (pid % group_size) // rows

    offs_m = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_r = tl.arange(0, R_PAD)
    mask_m, mask_n, mask_r = offs_m < M, offs_n < N, offs_r < R
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    p = tl.zeros((BLOCK_M, R_PAD), dtype=tl.float32)

    if HAS_BASE or FUSE_P:
        for k0 in range(0, K, BLOCK_K):
            # int64 like offs_m: for a transposed x (stride_ak = M) offs_k * stride_ak passes 2^31 once
            # M x K does (ptxas for sm_90: same registers and shared memory as int32).
            offs_k = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
            mask_k = offs_k < K
            a = tl.load(
                a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak,
                mask=mask_m[:, None] & mask_k[None, :],
                other=0.0,
            )
            if HAS_BASE:
                b = tl.load(
                    b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn,
                    mask=mask_k[:, None] & mask_n[None, :],
                    other=0.0,
                )
                acc = _mma(a, b, acc, DOT_FP32, PRECISION)
            if FUSE_P:
                d = tl.load(
                    d_ptr + offs_k[:, None] * stride_dk + offs_r[None, :] * stride_dr,
                    mask=mask_k[:, None] & mask_r[None, :],
                    other=0.0,
                )
                p = _mma(a, d, p, DOT_FP32, PRECISION)

    p_ptrs = p_ptr + offs_m[:, None] * stride_pm + offs_r[None, :] * stride_pr
    if FUSE_P:
        if pid_n == 0:  # every column block computed the same P; one of them writes it
            tl.store(p_ptrs, p, mask=mask_m[:, None] & mask_r[None, :])
    if ADD_LORA:
        if not FUSE_P:
            p = tl.load(p_ptrs, mask=mask_m[:, None] & mask_r[None, :], other=0.0)
        coef = tl.load(coef_ptr + offs_r, mask=mask_r, other=0.0)
        c = tl.load(
            c_ptr + offs_r[:, None] * stride_cr + offs_n[None, :] * stride_cn,
            mask=mask_r[:, None] & mask_n[None, :],
            other=0.0,
        )
        # Rounded to the input dtype like the reference's (t * s * alpha) before the rank-r product.
        pc = (p * coef[None, :]).to(c.dtype)
        acc = _mma(pc, c, acc, DOT_FP32, PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    if HAS_BASE or ADD_LORA:  # else P-only mode: no output tile
        tl.store(
            out_ptr + offs_m[:, None] * stride_om + offs_n[None, :] * stride_on,
            acc.to(out_ptr.dtype.element_ty),
            mask=mask_m[:, None] & mask_n[None, :],
        )


@triton.jit(do_not_specialize=NO_SPECIALIZE)
def _rank_grad_kernel(
    # pointers
    a_ptr,  # (M, L)  gy (for gU) or x_a (for gV)
    p_ptr,  # (M, R)  fp32 t (for gU) or h (for gV)
    coef_ptr,  # (R,) fp32 s * alpha
    out_ptr,  # (SPLIT, L, R) fp32 partial sums, through strides
    # sizes
    M,
    L,
    R,
    M_BUCKET,
    # strides
    stride_am,
    stride_al,
    stride_pm,
    stride_pr,
    stride_os,
    stride_ol,
    stride_or,
    # meta
    R_PAD: tl.constexpr,
    DOT_FP32: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """out[s] = sum over the s-th share of row blocks of A^T (P * coef): one pass over A."""
    pid_l = tl.program_id(0)
    pid_s = tl.program_id(1)
    num_splits = tl.num_programs(1)
    offs_l = pid_l.to(tl.int64) * BLOCK_L + tl.arange(0, BLOCK_L)
    offs_r = tl.arange(0, R_PAD)
    mask_l, mask_r = offs_l < L, offs_r < R
    coef = tl.load(coef_ptr + offs_r, mask=mask_r, other=0.0)
    acc = tl.zeros((BLOCK_L, R_PAD), dtype=tl.float32)
    for m0 in range(pid_s * BLOCK_M, M, num_splits * BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M).to(tl.int64)
        mask_m = offs_m < M
        a = tl.load(
            a_ptr + offs_m[:, None] * stride_am + offs_l[None, :] * stride_al,
            mask=mask_m[:, None] & mask_l[None, :],
            other=0.0,
        )
        p = tl.load(
            p_ptr + offs_m[:, None] * stride_pm + offs_r[None, :] * stride_pr,
            mask=mask_m[:, None] & mask_r[None, :],
            other=0.0,
        )
        acc = _mma(tl.trans(a), (p * coef[None, :]).to(a.dtype), acc, DOT_FP32, PRECISION)
    tl.store(
        out_ptr + pid_s * stride_os + offs_l[:, None] * stride_ol + offs_r[None, :] * stride_or,
        acc,
        mask=mask_l[:, None] & mask_r[None, :],
    )


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
