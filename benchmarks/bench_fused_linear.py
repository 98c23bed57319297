"""Time FusedAutoLoraLinear's paths against the frozen GEMM alone and PEFT's LoRA, in one run.

Implementations, all measured in the same run on the same inputs (bf16 by default):
- base:      F.linear(x, W0, b) with W0, b frozen: the floor. Forward+backward computes dx only.
- fused:     FusedAutoLoraLinear in search mode (U, V, beta trainable), AUTOLORA_KERNEL=fused: Triton.
- composite: the same layer, AUTOLORA_KERNEL=composite: cuBLAS GEMM, low-rank update added in place.
- auto:      the same layer, AUTOLORA_KERNEL=auto: the dispatcher's choice per shape (timed on its
             first call, which is never timed here); `choice` records what it chose.
- peft:      PEFT's LoRA Linear with the same rank (lora_alpha 16, no dropout): GEMM + two thin GEMMs.
- ref:       the same layer with AUTOLORA_FORCE_REFERENCE=1 (reference.py inside the same custom op).
Every forward+backward computes dx (activations need it inside a network) and the trainable grads.

Times are medians of triton.testing.do_bench (L2 flushed between repetitions); peak memory is
torch.cuda.max_memory_allocated during one call, minus what was allocated before it (inputs,
weights, gy), so it is what the implementation itself adds (outputs, saved activations, grads).

Targets: fused fwd <= 1.05x base; fused fwd+bwd >= 1.4x faster than PEFT; fused peak memory <=
PEFT's; auto never slower than the composite (<= 1.02x: two medians of the same kernels differ by
that much from run to run).

    python benchmarks/bench_fused_linear.py [--tokens 4096 16384 65536] [--shapes 768x768 1024x3072
        4096x4096] [--ranks 8 16] [--dtype bfloat16] [--out benchmarks/results]
    python benchmarks/bench_fused_linear.py --dry-run   # one tiny case on the CPU, nothing written
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
IMPLS = ("base", "fused", "composite", "auto", "peft", "ref")
# The environment each implementation of the layer runs under (set for its calls only).
LAYER_ENV = {
    "fused": {"AUTOLORA_KERNEL": "fused"},
    "composite": {"AUTOLORA_KERNEL": "composite"},
    "auto": {"AUTOLORA_KERNEL": "auto"},
    "ref": {"AUTOLORA_FORCE_REFERENCE": "1"},
}
NOISE = 1.02  # two medians of the same kernels differ by up to this much from run to run
DRY_RUN_CASE = (64, 32, 48, 4)  # tokens, in, out, k: parses, builds and runs every path, on the CPU


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

    def with_env(fn, env):
        def call():
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                return fn()
            finally:
                for k, v in saved.items():
                    os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)

        return call

    def pair(module_fn, params):
        def forward():
            with torch.no_grad():  # the forward kernels alone; fwd_bwd times the training forward
                return module_fn(x)

        return forward, lambda: module_fn(x).backward(gy), [x, *params]

    fused_params = [fused.U, fused.V, fused.beta]
    peft_params = [p for p in lora.parameters() if p.requires_grad]
    impls = {"base": pair(lambda t: F.linear(t, base.weight, base.bias), [])}
    for name, env in LAYER_ENV.items():
        fwd, fwd_bwd, grads = pair(fused, fused_params)
        impls[name] = (with_env(fwd, env), with_env(fwd_bwd, env), grads)
    impls["peft"] = pair(lora, peft_params)
    return {name: impls[name] for name in IMPLS}


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


def cpu_time_ms(fn, grads) -> float:
    """One wall-clock call: the dry run proves the call runs and measures nothing worth keeping."""
    for g in grads:
        g.grad = None
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def dispatcher_choices(tokens: int, k_in: int, n_out: int, rank: int) -> dict[str, str]:
    """What AUTOLORA_KERNEL=auto chose for this case, per direction (forward, backward)."""
    from autolora_kernels import dispatch

    m_bucket = dispatch.token_bucket(tokens)
    return {
        c["direction"]: c["choice"]
        for c in dispatch.choices()
        if (c["tokens_bucket"], c["n"], c["k"], c["rank"]) == (m_bucket, n_out, k_in, rank)
    }


def ratios(ms: dict, mem: dict | None) -> dict:
    """Ratios of the same run: fused and composite against the GEMM alone, fused against the composite,
    auto against the composite, PEFT against fused; memory against PEFT."""
    r = {
        "fwd_vs_base": ms["fused"]["fwd"] / ms["base"]["fwd"],
        "fwd_bwd_vs_base": ms["fused"]["fwd_bwd"] / ms["base"]["fwd_bwd"],
        "composite_fwd_vs_base": ms["composite"]["fwd"] / ms["base"]["fwd"],
        "fused_vs_composite": {p: ms["fused"][p] / ms["composite"][p] for p in ("fwd", "fwd_bwd")},
        "auto_vs_composite": {p: ms["auto"][p] / ms["composite"][p] for p in ("fwd", "fwd_bwd")},
        "speedup_vs_peft": ms["peft"]["fwd_bwd"] / ms["fused"]["fwd_bwd"],
        "speedup_vs_peft_fwd": ms["peft"]["fwd"] / ms["fused"]["fwd"],
        "auto_speedup_vs_peft": ms["peft"]["fwd_bwd"] / ms["auto"]["fwd_bwd"],
    }
    targets = {
        "fwd<=1.05x base": r["fwd_vs_base"] <= 1.05,
        "fwd_bwd>=1.4x peft": r["speedup_vs_peft"] >= 1.4,
        "auto<=composite": max(r["auto_vs_composite"].values()) <= NOISE,
    }
    if mem is not None:
        r["mem_vs_peft"] = mem["fused"]["fwd_bwd"] / max(mem["peft"]["fwd_bwd"], 1e-9)
        targets["mem<=peft"] = r["mem_vs_peft"] <= 1.0
    return {**r, "targets": targets}


def run_case(tokens, k_in, n_out, rank, dtype, device="cuda", time_ms=cuda_time_ms, peak_mb=cuda_peak_mb):
    """One case: every implementation's fwd and fwd+bwd times (and peak memory unless peak_mb is
    None), the dispatcher's choice and the ratios."""
    impls = make_impls(tokens, k_in, n_out, rank, dtype, device)
    row = {"tokens": tokens, "in": k_in, "out": n_out, "rank": rank, "ms": {}, "peak_mb": None}
    mem = {} if peak_mb is not None else None
    for name, (fwd, fwd_bwd, grads) in impls.items():
        fwd_bwd()  # first call: autotuning, compilation and the dispatcher's timing, never timed
        for g in grads:
            g.grad = None
        row["ms"][name] = {"fwd": time_ms(fwd, grads), "fwd_bwd": time_ms(fwd_bwd, grads)}
        if mem is not None:
            mem[name] = {"fwd": peak_mb(fwd, grads), "fwd_bwd": peak_mb(fwd_bwd, grads)}
    row["peak_mb"] = mem
    row["choice"] = dispatcher_choices(tokens, k_in, n_out, rank)
    row.update(ratios(row["ms"], mem))
    del impls
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        "# FusedAutoLoraLinear (fused, composite, auto) vs frozen GEMM, PEFT LoRA and the reference path",
        "",
        f"- device: {meta['device_name']}; torch {meta['torch']}, triton {meta['triton']}",
        f"- dtype {meta['dtype']}, started {meta['started']}, cases {meta.get('cases_done', '?')}",
        f"- command: `{meta['command']}`",
        "- median ms (triton.testing.do_bench); f+b computes dx and the trainable grads; peak MB is the",
        "  extra memory of one f+b call; all ratios from the same run: fused / base, fused / composite,",
        "  auto / composite (f+b), PEFT / fused (f+b); auto: what the dispatcher chose (fwd / bwd)",
        "",
        "| tokens | in x out | k | base fwd | fused fwd | comp fwd | fwd/base | fused/comp fwd "
        "| base f+b | fused f+b | comp f+b | fused/comp f+b | auto/comp f+b | auto | PEFT fwd | PEFT f+b "
        "| PEFT/fused f+b | ref f+b | MB fused | MB comp | MB PEFT | targets missed |",
        "|---" * 22 + "|",
    ]
    for r in rows:
        ms, mb = r["ms"], r["peak_mb"] or {}
        missed = ", ".join(t for t, ok in r["targets"].items() if not ok) or "none"
        choice = "/".join(r["choice"].get(d, "-") for d in ("forward", "backward"))
        mbs = [f"{mb[n]['fwd_bwd']:.0f}" if n in mb else "-" for n in ("fused", "composite", "peft")]
        lines.append(
            f"| {r['tokens']} | {r['in']}x{r['out']} | {r['rank']} | {ms['base']['fwd']:.3f} "
            f"| {ms['fused']['fwd']:.3f} | {ms['composite']['fwd']:.3f} | {r['fwd_vs_base']:.3f} "
            f"| {r['fused_vs_composite']['fwd']:.3f} | {ms['base']['fwd_bwd']:.3f} "
            f"| {ms['fused']['fwd_bwd']:.3f} | {ms['composite']['fwd_bwd']:.3f} "
            f"| {r['fused_vs_composite']['fwd_bwd']:.3f} | {r['auto_vs_composite']['fwd_bwd']:.3f} "
            f"| {choice} "
            f"| {ms['peft']['fwd']:.3f} | {ms['peft']['fwd_bwd']:.3f} | {r['speedup_vs_peft']:.2f} "
            f"| {ms['ref']['fwd_bwd']:.3f} | {' | '.join(mbs)} | {missed} |"
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
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="parse the arguments, then run one tiny case on the CPU through every path; write nothing",
    )
    add_out_argument(ap)
    args = ap.parse_args(argv)
    if args.dry_run:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny case: threads would only wait for each other
        try:
            row = run_case(*DRY_RUN_CASE, torch.float32, device="cpu", time_ms=cpu_time_ms, peak_mb=None)
        finally:
            torch.set_num_threads(threads)
        print(json.dumps({"case": DRY_RUN_CASE, "ran": list(row["ms"]), "ratios": sorted(row["targets"])}))
        print(f"bench_fused_linear: dry run passed ({len(row['ms'])} implementations, CPU); nothing written")
        return
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
