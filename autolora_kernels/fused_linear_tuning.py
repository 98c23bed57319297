"""Tile tables and the rules that choose among them, for the fused projection's Triton kernels.

Plain Python (no triton import), so the choices are testable anywhere; fused_linear_launch.py turns
them into triton.Config objects and prunes with them. Shared-memory and register figures below come
from compiling the kernels for sm_90 with tests/sm90_compile.py (triton 3.9, its bundled ptxas).
"""

from __future__ import annotations

import torch

H100_SHARED_BYTES = 232448  # 227 KB: what one block may use on an H100 / H200 (opt-in maximum)

# (BLOCK_M, BLOCK_N, BLOCK_K, num_stages, num_warps). "mma": tensor-core tiles from Triton's matmul
# tutorial plus smaller ones for thin problems. "fma": fp32 without TF32, where tl.dot runs on the FMA
# units with its operands in registers and the mma tiles spill (ptxas for sm_90, rank pad 64: 15 KB of
# stack per thread at 128 x 256 x 64, ~500 B at 64 x 64 x 32); these fit in 78..255 registers, no stack.
GEMM_SHAPES = {
    "mma": [
        (128, 256, 64, 3, 8),
        (256, 128, 64, 3, 8),
        (128, 128, 64, 4, 4),
        (128, 128, 64, 4, 8),  # no spills at rank pad 64, where 4 warps spill 136 B per thread
        (128, 128, 32, 4, 4),
        (128, 64, 64, 4, 4),
        (64, 128, 64, 4, 4),
        (64, 64, 64, 4, 4),
        (64, 32, 32, 5, 2),
    ],
    "fma": [
        (64, 64, 32, 2, 8),
        (64, 64, 16, 2, 8),
        (32, 64, 32, 2, 8),
        (64, 32, 32, 2, 8),
        (32, 32, 32, 2, 4),
    ],
}
# (BLOCK_M, BLOCK_L, num_stages, num_warps) for the gU / gV reductions, same two families.
GRAD_SHAPES = {
    "mma": [(64, 128, 3, 4), (128, 128, 3, 8), (64, 64, 4, 4), (128, 64, 4, 4), (32, 64, 4, 2)],
    "fma": [(16, 64, 3, 4), (32, 64, 2, 8), (16, 128, 3, 8), (32, 32, 2, 8)],
}


def dot_unit(dtype: torch.dtype, precision: str) -> str:
    """The dot unit: "fma" for fp32 without TF32 (PRECISION "ieee"), else "mma" (tensor cores)."""
    return "fma" if dtype == torch.float32 and precision == "ieee" else "mma"


def gemm_smem_bytes(shape: tuple, r_pad: int, elem_bytes: int, has_base: bool, fuse_p: bool) -> int:
    """Shared memory of the K loop's pipeline: num_stages copies of the A tile and of the B and D
    tiles the launch reads. Equal to what Triton's sm_90 (wgmma) compile allocates at 128 x 256 x 64
    and 128 x 128 x 64 for bf16 and rank pads 16 and 64; the FMA path holds one stage fewer."""
    bm, bn, bk, stages, _ = shape
    tile = bm * bk + (bk * bn if has_base else 0) + (bk * r_pad if fuse_p else 0)
    return stages * tile * elem_bytes


def select_gemm_shapes(
    unit: str, m_bucket: int, n: int, r_pad: int, elem_bytes: int, has_base: bool, fuse_p: bool, smem: int
) -> list[tuple]:
    """The shapes worth timing: the dot unit's family, tiles not much larger than the problem, whose
    pipeline fits in `smem` bytes (a tile that does not would fail at launch: time lost compiling it).
    P-only launches (N = 1) keep the narrowest column block; wider ones would do no extra work."""
    shapes = GEMM_SHAPES[unit]
    fits = [
        s
        for s in shapes
        if s[0] <= max(64, m_bucket)
        and s[1] <= max(64, n)
        and gemm_smem_bytes(s, r_pad, elem_bytes, has_base, fuse_p) <= smem
    ]
    if n == 1 and fits:
        narrow = min(s[1] for s in fits)
        fits = [s for s in fits if s[1] == narrow]
    return fits or [min(shapes, key=lambda s: gemm_smem_bytes(s, r_pad, elem_bytes, has_base, fuse_p))]


def grad_smem_bytes(shape: tuple, r_pad: int, elem_bytes: int) -> int:
    """Upper bound on the reduction loop's shared memory: num_stages copies of the A tile and of the
    fp32 P tile (exact for fp32 on sm_90, e.g. 294912 B at 128 x 128, 3 stages, rank pad 64)."""
    bm, bl, stages, _ = shape
    return stages * bm * (bl * elem_bytes + r_pad * 4)


def select_grad_shapes(unit: str, r_pad: int, elem_bytes: int, smem: int) -> list[tuple]:
    """The dot unit's family, less the shapes whose pipeline would not fit in `smem` bytes."""
    shapes = GRAD_SHAPES[unit]
    fits = [s for s in shapes if grad_smem_bytes(s, r_pad, elem_bytes) <= smem]
    return fits or [min(shapes, key=lambda s: grad_smem_bytes(s, r_pad, elem_bytes))]
