"""Compile the fused-projection kernels for sm_90 (H100 / H200) on a machine without a GPU.

Triton's compiler and the ptxas it bundles need no driver. The launches that fused_linear_forward and
fused_linear_backward make are recorded (nothing runs), specialised as Triton's JIT would specialise
them (dtypes, 16-divisibility, stride == 1) and compiled with every tile the autotuner may time. This
shows what the interpreter cannot: tl.dot shapes the GPU refuses (inner dimension < 16 for 16-bit
inputs), shared memory over the 227 KB an H100 block may use, register spills (ptxas's stack bytes),
ops or control flow the compiler rejects.

    python tests/sm90_compile.py                 # sweep: fp32 (FMA and TF32), fp16, bf16; rank 8 and 64
    python tests/sm90_compile.py --dtype bfloat16 --rank 64 --conv1d

Run it without TRITON_INTERPRET (the kernels must be compiled objects); tests/test_kernels.py
(test_kernels_compile_for_sm90_without_a_gpu) runs the --quick subset in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton 3.9 warns when unset; 1 is its default

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from autolora_kernels import fused_linear_kernels as kernels  # noqa: E402
from autolora_kernels import fused_linear_launch as K  # noqa: E402
from autolora_kernels.fused_linear_tuning import H100_SHARED_BYTES, gemm_smem_bytes  # noqa: E402

SM90_SMS = 132
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@contextmanager
def recording(launches: list):
    """Launchers record (kernel, args, meta) instead of autotuning and launching; no GPU is asked."""

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **meta: launches.append((self.name, args, meta))

    saved = K._tuned, K._num_splits, K._max_shared_bytes, K._launch_device
    K._tuned = Recorder
    K._num_splits = lambda m, device: max(1, min(triton.cdiv(m, 512), 4 * SM90_SMS // 6))
    K._max_shared_bytes = lambda index: H100_SHARED_BYTES
    K._launch_device = lambda t: nullcontext()  # CPU tensors stand in for CUDA ones
    try:
        yield launches
    finally:
        K._tuned, K._num_splits, K._max_shared_bytes, K._launch_device = saved


def record_launches(m, k, n, r, dtype, conv1d=False, dropout=False, need_dx=True) -> list:
    """The launches of one forward and one backward (CPU tensors stand in; their pointers are aligned)."""
    x = torch.empty(m, k, dtype=dtype)
    w = torch.empty((k, n) if conv1d else (n, k), dtype=dtype)
    U, V, coef = torch.empty(n, r, dtype=dtype), torch.empty(r, k, dtype=dtype), torch.empty(r)
    with recording([]) as launches:
        bias = torch.empty(n, dtype=dtype)
        _, t = K.fused_linear_forward(x, w, bias, U, V, coef, conv1d, x if dropout else None)
        gy = torch.empty(m, n, dtype=dtype)
        K.fused_linear_backward(gy, x, w, U, V, coef, t, conv1d, need_dx, dropout, dropout)
    return launches


def kernel_of(name: str):
    return kernels._fused_lora_gemm_kernel if name == "gemm" else kernels._rank_grad_kernel


def candidate_configs(name: str, args: tuple, meta: dict) -> list[triton.Config]:
    """The configs the autotuner would time for this launch on an H100 (after the package's pruning)."""
    fn = kernel_of(name)
    configs, prune = (K._gemm_configs(), K._prune_gemm_configs) if name == "gemm" else (
        K._grad_configs(), K._prune_grad_configs)  # fmt: skip
    with recording([]):
        return prune(configs, dict(zip(fn.arg_names, args, strict=False)), **meta)


def _specialise(fn, values: dict):
    """(signature, constexprs, attrs) as the JIT builds them from argument values."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.nvidia.compiler import CUDABackend

    signature, constexprs, attrs = {}, {}, {}
    for i, (name, param) in enumerate(zip(fn.arg_names, fn.params, strict=True)):
        if param.is_constexpr:
            signature[name], constexprs[name] = "constexpr", values[name]
            continue
        specialize, align = not param.do_not_specialize, not param.do_not_specialize_on_alignment
        kind, spec = native_specialize_impl(CUDABackend, values[name], False, specialize, align)
        signature[name] = kind
        if kind == "constexpr":
            constexprs[name] = spec
        elif isinstance(spec, str):  # None where the kernel asks for no specialisation
            attrs[(i,)] = CUDABackend.parse_attr(spec)
    return signature, constexprs, attrs


def _resources(cubin: bytes) -> dict:
    """Registers and stack (spill) bytes per thread, from the cuobjdump that triton bundles."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not tool.exists():
        return {}
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        cmd = [str(tool), "--dump-resource-usage", f.name]
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+)", out)
    return {"regs": int(found[1]), "stack": int(found[2])} if found else {}


def compile_sm90(name: str, args: tuple, meta: dict, config: triton.Config, arch: int = 90) -> dict:
    """Compile one launch with one config; returns shared bytes, registers, stack and the dot unit."""
    fn = kernel_of(name)
    values = {**dict(zip(fn.arg_names, args, strict=False)), **meta, **config.kwargs}
    signature, constexprs, attrs = _specialise(fn, values)
    start = time.perf_counter()
    compiled = triton.compile(
        ASTSource(fn, signature, constexprs, attrs),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": config.num_warps, "num_stages": config.num_stages},
    )
    ttgir = compiled.asm["ttgir"]
    dot = "wgmma" if "warp_group_dot" in ttgir else ("mma" if "#ttg.nvidia_mma" in ttgir else "fma")
    return {
        "kernel": name,
        "tile": {**config.kwargs, "num_stages": config.num_stages, "num_warps": config.num_warps},
        "shared": compiled.metadata.shared,
        "dot": dot,
        "seconds": round(time.perf_counter() - start, 2),
        **_resources(compiled.asm["cubin"]),
    }


def quick_check() -> dict:
    """The few compiles tests/test_kernels_sm90.py asserts on (each 1-3 s)."""
    gemm_bf16 = record_launches(100, 96, 80, 3, torch.bfloat16)[0]
    grad_bf16 = record_launches(100, 96, 80, 3, torch.bfloat16)[-1]
    gemm_fp32 = record_launches(100, 96, 80, 64, torch.float32)[0]  # no TF32: FMA tiles
    big = (128, 256, 64, 3, 8)
    tile = {"BLOCK_M": big[0], "BLOCK_N": big[1], "BLOCK_K": big[2], "GROUP_M": 8}
    out = {
        "gemm_bf16": compile_sm90(*gemm_bf16, triton.Config(tile, num_stages=big[3], num_warps=big[4])),
        "gemm_bf16_smem_estimate": gemm_smem_bytes(big, gemm_bf16[2]["R_PAD"], 2, True, True),
        "grad_bf16": compile_sm90(*grad_bf16, candidate_configs(*grad_bf16)[0]),
        "gemm_fp32_candidates": [c.kwargs["BLOCK_M"] for c in candidate_configs(*gemm_fp32)],
        "gemm_fp32_fma": compile_sm90(*gemm_fp32, candidate_configs(*gemm_fp32)[-1]),
    }
    name, args, meta = gemm_bf16
    try:  # a rank pad of 8, which the interpreter accepts: the compiler for the GPU must refuse it
        compile_sm90(name, args, {**meta, "R_PAD": 8}, candidate_configs(name, args, meta)[-1])
        out["rank_pad_8"] = "compiled"
    except Exception as err:  # a CompilationError whose root cause is the dot-size assertion
        while err.__cause__ is not None:
            err = err.__cause__
        out["rank_pad_8"] = f"refused: {type(err).__name__}: {str(err)[:200]}"
    return out


def sweep(dtypes, ranks, conv1d_options, m=4096, k=4096, n=4096) -> list[dict]:
    rows = []
    for dtype_name in dtypes:
        tf32 = dtype_name == "float32-tf32"
        torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
        dtype = DTYPES[dtype_name.removesuffix("-tf32")]
        for r in ranks:
            for conv1d in conv1d_options:
                seen = set()
                for name, args, meta in record_launches(m, k, n, r, dtype, conv1d=conv1d):
                    for config in candidate_configs(name, args, meta):
                        try:
                            row = compile_sm90(name, args, meta, config)
                        except Exception as err:
                            row = {"kernel": name, "tile": config.kwargs, "error": str(err)[-300:]}
                        key = json.dumps([row.get("kernel"), row.get("tile"), row.get("shared")])
                        if key in seen:
                            continue
                        seen.add(key)
                        flags = {f: meta[f] for f in ("HAS_BASE", "FUSE_P", "ADD_LORA", "R_PAD") if f in meta}
                        row.update(dtype=dtype_name, rank=r, conv1d=conv1d, flags=flags)
                        row["fits"] = row.get("shared", 0) <= H100_SHARED_BYTES
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", nargs="+", default=["float32", "float32-tf32", "float16", "bfloat16"])
    ap.add_argument("--rank", nargs="+", type=int, default=[8, 64])
    ap.add_argument("--conv1d", action="store_true", help="the Conv1D weight layout (default: Linear)")
    ap.add_argument("--quick", action="store_true", help="print quick_check() as JSON and exit")
    args = ap.parse_args(argv)
    if kernels.interpreting():
        sys.exit("sm90_compile: unset TRITON_INTERPRET; the interpreter's kernels cannot be compiled")
    if args.quick:
        print(json.dumps(quick_check()))
        return 0
    rows = sweep(args.dtype, args.rank, [args.conv1d])
    bad = [r for r in rows if "error" in r or not r["fits"] or r.get("stack", 0) > 0]
    print(f"{len(rows)} compiles; {len(bad)} failed, over shared memory or spilling", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
