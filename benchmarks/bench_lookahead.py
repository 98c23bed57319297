"""Time one full lookahead sequence over an adapter's tensor list: fused extension vs loop vs foreach.

Sequence (docs/METHOD.md section 4, steps 2, 4, 5, 8): backup, W' = W - xi g, eps = r / ||v||, W+ and W- from
the backup, restore. Lists (k = 8):
- roberta-base-qv: 12 layers x (q, v) x (U 768x8, V 8x768) = 48 tensors;
- llama-7b-qv: 32 layers x (q, v) x (U 4096x8, V 8x4096) = 128 tensors;
- llama-7b-all: 32 layers x 7 projections (q, k, v, o: 4096 -> 4096; gate, up: 4096 -> 11008;
  down: 11008 -> 4096) x (U, V) = 448 tensors. q/v alone is 128 tensors, hence this third list.

Implementations, all timed in the same run:
- ext:         autolora_kernels.lookahead with backend="ext" (csrc/, built on first use), as the search calls
               it: backup_and_sgd_step_ into a backup workspace kept across iterations;
- ext-6op:     the same extension, one op per step: a fresh backup, then sgd_step_ (the sequence
               without the fused op; shows what the fusion and the workspace buy);
- foreach:     autolora_kernels.lookahead with backend="foreach" (the fallback, with its input checks);
- foreach-raw: bare torch._foreach_* calls, no checks (the lower bound for foreach);
- loop:        autolora.lookahead_reference (single-tensor loops, with input checks);
- loop-raw:    a bare per-tensor loop of aten calls, no checks;
- loop-inplace: the loop a careful user writes per tensor: clone, add_, norm, copy_ + add_, copy_
               (in-place ops, no temporaries; aten's add_ also computes 16-bit math in fp32 and
               rounds once). "x loop" is against the faster of loop and loop-raw, "x loop-inplace"
               against this one.

Host memory: by default glibc's heap is pinned (mallopt: no trimming, no mmap below 32 MB), so a
fresh allocation (the loop's clone, foreach temporaries, ext-6op's backup) reuses mapped memory.
Otherwise whether it page-faults (about 2 us per 4 KB page here: +8 ms per 16 MB list) depends on
what the implementation timed before it left at the top of the heap: the loop measured 19 or 27
ms on llama-7b-qv fp32 depending on its neighbours. Pinned is the loop's best case; --malloc glibc
keeps glibc's defaults (results go to lookahead_<device>_glibc-malloc.*).

Each call starts with cold caches (64 MB read before it), as in the search, where a forward and a
backward pass separate two lookahead ops.

    python benchmarks/bench_lookahead.py [--dtype float32 bfloat16] [--device cpu] [--threads 1 2]
        [--malloc pinned|glibc] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import statistics
import sys
import time

import torch
from _harness import add_out_argument, command_line, load_average, machine, write_results

from autolora.doctor import device_name
from autolora_kernels import _ext
from autolora_kernels import lookahead as la
from autolora_kernels import lookahead_reference as ref

XI, R = 1e-4, 0.01
# List traversals of the fused sequence (reads + writes, no read-for-ownership: streamed stores):
# backup-and-step 4 (read W, g; write backup, W'), norm 1, perturb 3 + 3, restore 2.
EXT_TRAVERSALS = 13
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def adapter_shapes(config: str) -> list[tuple[int, int]]:
    """(U shape, V shape) pairs flattened, for rank k = 8."""
    k = 8
    if config == "roberta-base-qv":
        projections = [(768, 768)] * 2 * 12
    elif config == "llama-7b-qv":
        projections = [(4096, 4096)] * 2 * 32
    elif config == "llama-7b-all":
        layer = [(4096, 4096)] * 4 + [(4096, 11008)] * 2 + [(11008, 4096)]  # (in, out)
        projections = layer * 32
    else:
        raise ValueError(f"config: unknown {config!r}")
    return [s for fin, fout in projections for s in ((fout, k), (k, fin))]


def sequence_lib(params, grads, v, backend, workspace: list | None = None):
    """With `workspace` (a list holding one backup list or None), the fused backup-and-step into
    that reused backup, as the search does; without, a fresh backup then the step."""
    if workspace is None:
        saved = la.backup(params, backend=backend)
        la.sgd_step_(params, grads, XI, backend=backend)
    else:
        saved = workspace[0] = la.backup_and_sgd_step_(params, grads, XI, out=workspace[0], backend=backend)
    eps = la.fd_eps(v, R, backend=backend)
    la.set_perturbed_(params, saved, v, eps, 1.0, backend=backend)
    la.set_perturbed_(params, saved, v, eps, -1.0, backend=backend)
    la.restore_(params, saved, backend=backend)


def sequence_loop(params, grads, v):
    saved = ref.backup(params)
    ref.sgd_step_(params, grads, XI)
    eps = ref.fd_eps(v, R)
    ref.set_perturbed_(params, saved, v, eps, 1.0)
    ref.set_perturbed_(params, saved, v, eps, -1.0)
    ref.restore_(params, saved)


def sequence_loop_raw(params, grads, v):
    """Per-tensor aten calls, no checks; fp32 math for 16-bit dtypes like every other path."""
    saved = [p.clone() for p in params]
    for p, g in zip(params, grads, strict=True):
        p.copy_(p.float() - XI * g.float())
    norm = torch.zeros((), dtype=torch.float64)
    for t in v:
        norm += t.float().square().sum(dtype=torch.float64)
    norm = norm.sqrt().float()
    eps = torch.where(norm > 0, R / norm, torch.full_like(norm, R))
    for sign in (1.0, -1.0):
        s = eps * sign
        for p, b, d in zip(params, saved, v, strict=True):
            p.copy_(b.float() + s * d.float())
    for p, b in zip(params, saved, strict=True):
        p.copy_(b)


def sequence_loop_inplace(params, grads, v):
    """clone, add_, norm, copy_ + add_, copy_ per tensor; eps read on the host (free on CPU)."""
    saved = [p.clone() for p in params]
    for p, g in zip(params, grads, strict=True):
        p.add_(g, alpha=-XI)
    norms = [torch.linalg.vector_norm(t, dtype=torch.float32) for t in v]
    norm = float(torch.linalg.vector_norm(torch.stack(norms)))
    eps = R / norm if norm > 0 and math.isfinite(norm) else R
    for sign in (1.0, -1.0):
        for p, b, d in zip(params, saved, v, strict=True):
            p.copy_(b).add_(d, alpha=sign * eps)
    for p, b in zip(params, saved, strict=True):
        p.copy_(b)


def sequence_foreach_raw(params, grads, v):
    """Bare torch._foreach calls (fp32 lists only: 16-bit lists would need fp32 copies)."""
    saved = [torch.empty_like(p) for p in params]
    torch._foreach_copy_(saved, params)
    torch._foreach_add_(params, grads, alpha=-XI)
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(v, 2, dtype=torch.float32)))
    eps = torch.where(norm > 0, R / norm, torch.full_like(norm, R))
    for sign in (1.0, -1.0):
        torch._foreach_copy_(params, saved)
        torch._foreach_add_(params, torch._foreach_mul(v, eps * sign))
    torch._foreach_copy_(params, saved)


def pin_malloc() -> str:
    """Stop glibc from returning freed heap memory to the OS (M_TRIM_THRESHOLD) and from serving
    allocations below 32 MB with fresh mmaps (M_MMAP_THRESHOLD); returns what was done."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-1, 1 << 30) == 1 and libc.mallopt(-3, 32 << 20) == 1  # M_TRIM_, M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        ok = False
    return "pinned (mallopt: trim 1 GB, mmap 32 MB)" if ok else "glibc defaults (mallopt unavailable)"


def time_round_robin(
    fns: dict, evict=lambda: None, min_time: float = 2.0, warmup: int = 2, max_rounds: int = 200
) -> dict:
    """Median seconds per call of each function, calling them in turn each round, so that load from
    other processes on a shared machine hits every implementation alike. `evict` runs (untimed)
    before each call, so that no call finds the data its predecessor left in the cache."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < max_rounds and (time.perf_counter() - start < min_time or rounds < 5):
        for name, fn in fns.items():
            evict()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    return {name: statistics.median(ts) for name, ts in times.items()}


def make_list(shapes, dtype, device, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(device=device, dtype=dtype) for s in shapes]


def implementations(params, grads, v, device: str) -> dict:
    """name -> a call of one full sequence (synchronised on CUDA)."""
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    ws_ext, ws_foreach = [None], [None]
    impls = {
        "ext": lambda: sequence_lib(params, grads, v, "ext", ws_ext),
        "ext-6op": lambda: sequence_lib(params, grads, v, "ext"),
        "foreach": lambda: sequence_lib(params, grads, v, "foreach", ws_foreach),
        "loop": lambda: sequence_loop(params, grads, v),
        "loop-raw": lambda: sequence_loop_raw(params, grads, v),
        "loop-inplace": lambda: sequence_loop_inplace(params, grads, v),
    }
    if params[0].dtype == torch.float32:
        impls["foreach-raw"] = lambda: sequence_foreach_raw(params, grads, v)
    return {name: (lambda fn=fn: (fn(), sync())) for name, fn in impls.items()}


def cache_evictor(device: str):
    """Reads 64 MB (twice a 32 MB L3): in the search a forward and a backward pass run between two
    lookahead ops, so each op starts with its lists out of the cache. Reads, not writes: dirty
    lines would be written back during the next timed call."""
    if device != "cpu":
        return lambda: None
    buf = torch.ones(16 << 20)
    return lambda: float(buf.sum())


def run(configs, dtypes, device: str, threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    evict = cache_evictor(device)
    rows = []
    for config in configs:
        shapes = adapter_shapes(config)
        for dtype_name in dtypes:
            dtype = DTYPES[dtype_name]
            params, grads, v = (make_list(shapes, dtype, device, seed) for seed in range(3))
            list_bytes = sum(p.numel() * p.element_size() for p in params)
            timed = implementations(params, grads, v, device)
            ms = {name: 1e3 * t for name, t in time_round_robin(timed, evict).items()}
            row = {
                "threads": torch.get_num_threads(),
                "config": config,
                "dtype": dtype_name,
                "tensors": len(shapes),
                "elements": sum(a * b for a, b in shapes),
                "ms": {k: round(t, 4) for k, t in ms.items()},
                "speedup_vs_loop": round(min(ms["loop"], ms["loop-raw"]) / ms["ext"], 2),
                "speedup_vs_loop_inplace": round(ms["loop-inplace"] / ms["ext"], 2),
                "speedup_vs_foreach": round(
                    min(ms["foreach"], ms.get("foreach-raw", ms["foreach"])) / ms["ext"], 2
                ),
                "ext_gb_per_s": round(EXT_TRAVERSALS * list_bytes / (ms["ext"] * 1e6), 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def markdown(meta: dict, rows: list[dict]) -> str:
    names = ["ext", "ext-6op", "foreach", "foreach-raw", "loop", "loop-raw", "loop-inplace"]
    lines = [
        "# Lookahead sequence: fused extension vs foreach vs Python loop",
        "",
        f"- device: {meta['device_name']}, {meta['cores']} cores; load average (1, 5, 15 min) "
        f"{meta['load_average_at_start']} at start, {meta['load_average_at_end']} at end",
        f"- torch {meta['torch']}, lookahead backend {meta['backend']}; host malloc: {meta['host_malloc']}",
        f"- command: `{meta['command']}`",
        "- sequence: backup, sgd step, fd_eps (global norm), perturb +, perturb -, restore; median ms.",
        "  ext: backup_and_sgd_step_ into a reused backup workspace (as the search calls it); ext-6op:",
        "  a fresh backup, then sgd_step_ (one op per step); foreach: the library's foreach path,",
        "  called as ext is",
        "- implementations timed round-robin in one run, each call after reading 64 MB (caches cold, as",
        "  after the forward/backward pass that separates two lookahead ops in the search); speedups",
        "  are against the faster of each baseline's checked and raw variants, and (x loop-inplace)",
        "  against the careful in-place loop (clone, add_, norm, copy_ + add_, copy_ per tensor)",
        f"- ext GB/s: {EXT_TRAVERSALS} list traversals (the fused sequence's reads + writes) / ext time;",
        "  on lists larger than the cache this is memory bandwidth",
        "",
        "| threads | config | dtype | tensors | "
        + " | ".join(f"{n} ms" for n in names)
        + " | x loop | x loop-inplace | x foreach | ext GB/s |",
        "|---|---|---|---|" + "---|" * len(names) + "---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{r['ms'][n]:.3f}" if n in r["ms"] else "-" for n in names]
        lines.append(
            f"| {r['threads']} | {r['config']} | {r['dtype']} | {r['tensors']} | " + " | ".join(cells)
            + f" | {r['speedup_vs_loop']:.2f} | {r['speedup_vs_loop_inplace']:.2f}"
            + f" | {r['speedup_vs_foreach']:.2f} | {r['ext_gb_per_s']:.1f} |"
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["roberta-base-qv", "llama-7b-qv", "llama-7b-all"])
    ap.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"], choices=list(DTYPES))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads()])
    ap.add_argument("--malloc", default="pinned", choices=["pinned", "glibc"])
    add_out_argument(ap)
    args = ap.parse_args(argv)
    host_malloc = pin_malloc() if args.malloc == "pinned" else "glibc defaults"
    if not la.build():
        sys.exit(f"the extension did not build: {_ext.info()['error']}")
    meta = {
        **machine(),
        "device": args.device,
        "device_name": device_name(args.device),
        "load_average_at_start": load_average(),
        "backend": la.backend(args.device),
        "build": _ext.info()["how"],
        "host_malloc": host_malloc,
        "command": command_line(),
    }
    print(json.dumps(meta), flush=True)
    rows = [r for n in args.threads for r in run(args.configs, args.dtype, args.device, n)]
    meta["load_average_at_end"] = load_average()
    stem = f"lookahead_{args.device}{'' if args.malloc == 'pinned' else '_glibc-malloc'}"
    written = write_results(args.out, stem, {"meta": meta, "rows": rows}, markdown(meta, rows))
    print(f"wrote {written}.json and {written}.md")


if __name__ == "__main__":
    main()
