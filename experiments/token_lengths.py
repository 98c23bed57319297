"""How long the bundled tasks' sentences are in MiniLM tokens: the evidence for a max_length.

    python experiments/token_lengths.py [--lengths 32 64 128] [--out DIR]

Per task (CoLA, SST-2, MR from ../shared/data) and split: the number of examples, length percentiles
(special tokens included) and, for each candidate max_length, the share of examples it would cut.
Writes token_lengths.json and .md (experiments/results by default). Reads no eval score.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from harness import add_out_argument, command_line, write_results
from tasks import MODEL, SHARED_DATA, dataset_presets

from autolora.data import DataConfig, load_task
from autolora.models import load_tokenizer

LONGEST = 4096  # tokenise without cutting (no sentence here comes near)


def lengths(data: dict, tokenizer) -> dict[str, np.ndarray]:
    task = load_task(DataConfig(**{**data, "max_length": LONGEST}), tokenizer)
    return {
        split: np.array([len(x["input_ids"]) for x in getattr(task, split)]) for split in ("train", "eval")
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[32, 48, 64, 128])
    p.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    add_out_argument(p)
    args = p.parse_args(argv)
    if min(args.lengths) < 1:
        raise SystemExit(f"--lengths: each must be >= 1, got {args.lengths}")
    tokenizer = load_tokenizer(MODEL)
    report: dict = {"command": command_line(), "model": MODEL, "tasks": {}}
    head = "| task | split | examples | p50 | p95 | p99 | max | " + " | ".join(
        f"cut at {n}" for n in args.lengths
    )
    lines = ["# Sentence lengths in MiniLM tokens (special tokens included)", "",
             f"Command: `{report['command']}`", "", head + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(args.lengths)]  # fmt: skip
    for name, data in dataset_presets(args.data_dir).items():
        report["tasks"][name] = {}
        for split, n in lengths(data, tokenizer).items():
            row = {"examples": len(n), **{f"p{q}": float(np.percentile(n, q)) for q in (50, 95, 99)},
                   "max": int(n.max()),
                   "share_cut": {str(m): float((n > m).mean()) for m in args.lengths}}  # fmt: skip
            report["tasks"][name][split] = row
            cuts = " | ".join(f"{100 * row['share_cut'][str(m)]:.2f}%" for m in args.lengths)
            lines.append(f"| {name} | {split} | {row['examples']} | {row['p50']:.0f} | {row['p95']:.0f} | "
                         f"{row['p99']:.0f} | {row['max']} | {cuts} |")  # fmt: skip
    written = write_results(args.out, "token_lengths", report, "\n".join(lines) + "\n")
    print(f"wrote {written}.json and .md")


if __name__ == "__main__":
    main()
