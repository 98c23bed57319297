"""Triton kernels of the fused AutoLoRA projection (needs triton); fused_linear_launch.py launches them.

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

import triton
import triton.language as tl


def interpreting() -> bool:
    """True when the kernels run in Triton's interpreter (on the CPU, in numpy).

    Asked of the kernel object, not the environment: @triton.jit read TRITON_INTERPRET (any of 1, true,
    yes, on) when this module was imported, and only that decides which path the launch takes."""
    return not isinstance(_fused_lora_gemm_kernel, triton.runtime.JITFunction)


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
