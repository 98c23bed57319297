"""The markdown report of bench_search_profile.py (benchmarks only, not the package)."""

from __future__ import annotations


def markdown(r: dict) -> str:
    m = r["machine"]
    lora_ms = r["median_seconds"]["lora-step"] * 1e3
    mod = m["git_modified"]
    edits = f" plus uncommitted edits to {', '.join(mod)}" if mod else ""
    lines = [
        "# Search iteration profile",
        "",
        f"Machine: {m['device_name']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} "
        f"thread(s)); load average {m['load_average']} (other processes make times noisy). "
        f"Package at {m['git_commit'][:10]}{edits}.",
        "",
        f"Command: `{r['command']}`. MiniLM-L6, SST-2, batch 16 (D_tr batch {r['batch_shape']}, D_val batch "
        f"{r['val_shape']}), k = 8 on q/v; medians of {r['iters']} iterations after {r['warmup']} warm-up.",
        "",
        "| variant | ms / iteration | x LoRA step |",
        "|---|---|---|",
    ]  # fmt: skip
    for k, v in r["median_seconds"].items():
        digits = (0, 2) if v > 0.01 else (3, 5)  # the progress records take microseconds
        lines.append(f"| {k} | {v * 1e3:.{digits[0]}f} | {v * 1e3 / lora_ms:.{digits[1]}f} |")
    verdict = "met" if r["target_met"] else "MISSED"
    lines += ["", f"Target search <= 3x LoRA step: **{verdict}** ({r['x_lora_step']['search']:.2f}x).", ""]
    tables = (
        ("search iteration (second-order, forward difference)", r["search_breakdown"]),
        ("LoRA step", r["lora_breakdown"]),
    )
    for title, phases in tables:
        total = phases["_total"]
        lines += [f"Breakdown of one {title} (instrumented total {total * 1e3:.0f} ms):", "",
                  "| phase | ms | share | x LoRA step |", "|---|---|---|---|"]  # fmt: skip
        for k, v in sorted(phases.items(), key=lambda kv: -kv[1]):
            if k != "_total":
                lines.append(f"| {k} | {v * 1e3:.1f} | {v / total:.0%} | {v * 1e3 / lora_ms:.2f} |")
        lines.append("")
    a = r["agreement_fd_vs_hvp"]
    lines += [
        "The finite-difference hypergradients against the HVP prototype (an exact Hessian-vector "
        f"product) on one state (eval mode, eager attention); the implicit term is {a['implicit_share']:.1e} "
        "of the direct one in norm:",
        "",
        "| scheme | whole hypergradient: cosine | relative difference | implicit term: cosine | relative "
        "difference |",
        "|---|---|---|---|---|",
    ]
    for scheme in ("forward", "central"):
        s = a[scheme]
        lines.append(
            f"| {scheme} | {s['cosine']:.6f} | {s['rel_diff']:.1e} | {s['implicit_cosine']:.4f} | "
            f"{s['implicit_rel_diff']:.1e} |"
        )
    lines += ["", f"Collating one batch of 16: {r['collate_16_seconds'] * 1e3:.1f} ms."]
    return "\n".join(lines) + "\n"
