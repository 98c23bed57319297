"""Time FusedAutoLoraLinear (Triton) against the frozen GEMM alone, PEFT's LoRA and the reference path.

Implementations, all measured in the same run on the same inputs (bf16 by default):
- base:  F.linear(x, W0, b) with W0, b frozen: the floor. Forward+backward computes dx only.
- fused: FusedAutoLoraLinear in search mode (U, V, beta trainable): Triton kernels.
- peft:  PEFT's LoRA Linear with the same rank (lora_alpha 16, no dropout): GEMM + two thin GEMMs.
- ref:   FusedAutoLoraLinear with AUTOLORA_FORCE_REFERENCE=1 (reference.py inside the same custom op).
Every forward+backward computes dx (activations need it inside a network) and the trainable grads.

Times are medians of triton.testing.do_bench (L2 flushed between repetitions); peak memory is
torch.cuda.max_memory_allocated during one call, minus what was allocated before it (inputs,
weights, gy), so it is what the implementation itself adds (outputs, saved activations, grads).

Targets: fused fwd <= 1.05x base; fused fwd+bwd <= 1.10x base fwd+bwd; fused >= 1.3x faster
than PEFT at 16384 tokens, 4096 x 4096, k = 8; fused peak memory <= PEFT's.

    python benchmarks/bench_fused_linear.py [--tokens 4096 16384 65536] [--shapes 768x768 1024x3072
        4096x4096] [--ranks 8 16] [--dtype bfloat16] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from _harness import add_out_argument, command_line, machine, write_results
from torch import nn

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
IMPLS = ("base", "fused", "peft", "ref")
TARGET_CASE = (16384, 4096, 4096, 8)  # tokens, in, out, k: where fused must beat PEFT by 1.3x


def make_impls(tokens: int, k_in: int, n_out: int, rank: int, dtype: torch.dtype, device: str):
    """{name: (forward fn, forward+backward fn, tensors whose .grad to clear)} on shared inputs."""
    from peft import LoraConfig, get_peft_model

    from autolora import FusedAutoLoraLinear

    torch.manual_seed(0)
    base = nn.Linear(k_in, n_out, device=device, dtype=dtype).requires_grad_(False)
    x = torch.randn(tokens, k_in, device=device, dtype=dtype, requires_grad=True)
    gy = torch.randn(tokens, n_out, device=device, dtype=dtype)

    fused = FusedAutoLoraLinear(base, rank=rank, lora_alpha=16)
    with torch.no_grad():  # U = 0 at init; any values time the same, but keep the math non-trivial
        fused.U.normal_(0, 0.02)
        fused.beta.normal_(0, 1)
    holder = nn.Sequential()
    holder.add_module("proj", base)
    lora = get_peft_model(holder, LoraConfig(r=rank, lora_alpha=16, target_modules=["proj"]))
    lora = lora.base_model.model.proj.to(device=device, dtype=dtype)  # the LoRA Linear itself
    with torch.no_grad():
        lora.lora_B["default"].weight.normal_(0, 0.02)

    def with_ref(fn):
        def call():
            os.environ["AUTOLORA_FORCE_REFERENCE"] = "1"
            try:
                return fn()
            finally:
                del os.environ["AUTOLORA_FORCE_REFERENCE"]

        return call

    def pair(module_fn, params):
        def forward():
            with torch.no_grad():  # the forward kernels alone; fwd_bwd times the training forward
                return module_fn(x)

        return forward, lambda: module_fn(x).backward(gy), [x, *params]

    fused_params = [fused.U, fused.V, fused.beta]
    peft_params = [p for p in lora.parameters() if p.requires_grad]
    impls = {
        "base": pair(lambda t: F.linear(t, base.weight, base.bias), []),
        "fused": pair(fused, fused_params),
        "peft": pair(lora, peft_params),
    }
    fwd, fwd_bwd, grads = pair(fused, fused_params)
    impls["ref"] = (with_ref(fwd), with_ref(fwd_bwd), grads)
    return impls


def cuda_time_ms(fn, grads) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")


def cuda_peak_mb(fn, grads) -> float:
    """Extra memory one call needs at its peak, MB (inputs and weights excluded)."""
    for g in grads:
        g.grad = None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    for g in grads:
        g.grad = None
    return peak / 2**20


def run_case(tokens, k_in, n_out, rank, dtype, device="cuda", time_ms=cuda_time_ms, peak_mb=cuda_peak_mb):
    impls = make_impls(tokens, k_in, n_out, rank, dtype, device)
    row = {"tokens": tokens, "in": k_in, "out": n_out, "rank": rank, "ms": {}, "peak_mb": {}}
    for name, (fwd, fwd_bwd, grads) in impls.items():
        fwd_bwd()  # first call: autotuning and compilation, never timed
        for g in grads:
            g.grad = None
        row["ms"][name] = {"fwd": time_ms(fwd, grads), "fwd_bwd": time_ms(fwd_bwd, grads)}
        row["peak_mb"][name] = {"fwd": peak_mb(fwd, grads), "fwd_bwd": peak_mb(fwd_bwd, grads)}
    ms, mem = row["ms"], row["peak_mb"]
    row["fwd_vs_base"] = ms["fused"]["fwd"] / ms["base"]["fwd"]
    row["fwd_bwd_vs_base"] = ms["fused"]["fwd_bwd"] / ms["base"]["fwd_bwd"]
    row["speedup_vs_peft"] = ms["peft"]["fwd_bwd"] / ms["fused"]["fwd_bwd"]
    row["speedup_vs_peft_fwd"] = ms["peft"]["fwd"] / ms["fused"]["fwd"]
    row["mem_vs_peft"] = mem["fused"]["fwd_bwd"] / max(mem["peft"]["fwd_bwd"], 1e-9)
    row["targets"] = {
        "fwd<=1.05x base": row["fwd_vs_base"] <= 1.05,
        "fwd_bwd<=1.10x base": row["fwd_bwd_vs_base"] <= 1.10,
        "mem<=peft": row["mem_vs_peft"] <= 1.0,
    }
    if (tokens, k_in, n_out, rank) == TARGET_CASE:
        row["targets"][">=1.3x peft"] = row["speedup_vs_peft"] >= 1.3
    del impls
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        "# FusedAutoLoraLinear vs frozen GEMM, PEFT LoRA and the reference path",
        "",
        f"- device: {meta['device_name']}; torch {meta['torch']}, triton {meta['triton']}",
        f"- dtype {meta['dtype']}, started {meta['started']}, cases {meta.get('cases_done', '?')}",
        f"- command: `{meta['command']}`",
        "- median ms (triton.testing.do_bench); fwd+bwd computes dx and the trainable grads; peak MB is the",
        "  extra memory of one fwd+bwd call; ratios are fused / base and PEFT / fused, from the same run",
        "",
        "| tokens | in x out | k | base fwd | fused fwd | fwd/base | base f+b | fused f+b | f+b/base "
        "| PEFT fwd | PEFT f+b | PEFT/fused f+b | ref f+b | MB fused | MB PEFT | targets missed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms, mb = r["ms"], r["peak_mb"]
        missed = ", ".join(t for t, ok in r["targets"].items() if not ok) or "none"
        lines.append(
            f"| {r['tokens']} | {r['in']}x{r['out']} | {r['rank']} | {ms['base']['fwd']:.3f} "
            f"| {ms['fused']['fwd']:.3f} | {r['fwd_vs_base']:.3f} | {ms['base']['fwd_bwd']:.3f} "
            f"| {ms['fused']['fwd_bwd']:.3f} | {r['fwd_bwd_vs_base']:.3f} | {ms['peft']['fwd']:.3f} "
            f"| {ms['peft']['fwd_bwd']:.3f} | {r['speedup_vs_peft']:.2f} | {ms['ref']['fwd_bwd']:.3f} "
            f"| {mb['fused']['fwd_bwd']:.0f} | {mb['peft']['fwd_bwd']:.0f} | {missed} |"
        )
    return "\n".join(lines) + "\n"


def parse_shape(text: str) -> tuple[int, int]:
    k_in, n_out = text.lower().split("x")
    return int(k_in), int(n_out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", nargs="+", type=int, default=[4096, 16384, 65536])
    ap.add_argument("--shapes", nargs="+", type=parse_shape, default=[(768, 768), (1024, 3072), (4096, 4096)])
    ap.add_argument("--ranks", nargs="+", type=int, default=[8, 16])
    ap.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    add_out_argument(ap)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit(
            "bench_fused_linear: needs a CUDA GPU (torch.cuda.is_available() is False); nothing measured"
        )
    meta = {
        **machine(),
        "device_name": torch.cuda.get_device_name(),
        "dtype": args.dtype,
        "command": command_line(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(json.dumps(meta), flush=True)
    slug = "".join(c if c.isalnum() else "-" for c in meta["device_name"]).strip("-").lower()
    stem = f"fused_linear_{slug}_{args.dtype}"
    cases = [(t, k, n, r) for t in args.tokens for k, n in args.shapes for r in args.ranks]
    rows = []
    for tokens, k_in, n_out, rank in cases:
        rows.append(run_case(tokens, k_in, n_out, rank, DTYPES[args.dtype]))
        print(json.dumps(rows[-1]), flush=True)
        # Written after every case: a run stopped at a time limit keeps what it measured.
        meta["cases_done"] = f"{len(rows)} of {len(cases)}"
        written = write_results(args.out, stem, {"meta": meta, "rows": rows}, markdown(meta, rows))
    print(f"wrote {written}.json and {written}.md")


if __name__ == "__main__":
    main()
