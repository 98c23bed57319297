"""Does the shares' settling criterion separate settled searches from unsettled ones?

Reads `autolora run` output folders (their alpha_history.json, ranks.json and config.json) and prints,
for each, the budget's moved units over the stability window at every `--every` steps, when the
criterion first holds, the final allocation and how far it lies from an even split (the ranks, in
whole units, that would have to move to make every adapter's rank total/n).

    python experiments/budget_settling.py runs/sst2_s0 runs/sst2_shuffled_s0 --out report.md
    python experiments/budget_settling.py --shuffle-labels ../shared/data/sst2/train.tsv runs/shuffled.tsv

The shuffled control is SST-2's training file with its label column permuted (random.Random(0)).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from autolora.search.diagnostics import allocation_diagnostics


def shuffle_labels(src: Path, dst: Path, seed: int = 0) -> None:
    """A label<TAB>sentence file with its labels permuted: the same sentences and label counts, no signal."""
    rows = [line.split("\t", 1) for line in src.read_text(encoding="utf-8").splitlines()]
    labels = [label for label, _ in rows]
    random.Random(seed).shuffle(labels)
    dst.write_text(
        "".join(f"{y}\t{text}\n" for y, (_, text) in zip(labels, rows, strict=True)), encoding="utf-8"
    )


def settling(run: Path, every: int) -> dict:
    history = json.loads((run / "alpha_history.json").read_text())["history"]
    config = json.loads((run / "config.json").read_text())
    report = json.loads((run / "ranks.json").read_text())
    names, total, window = list(history[0]["sizes"]), report["rank_total"], config["stability_window"]
    sizes = torch.tensor([[r["sizes"][n] for n in names] for r in history], dtype=torch.float64)
    steps, allocations = [r["step"] for r in history], [r["ranks"] for r in history]
    points, first = [], None
    for t in range(1, len(history) + 1):
        d = allocation_diagnostics(sizes[:t], steps[:t], allocations[:t], total, window)
        if d["settled"] and first is None:
            first = steps[t - 1]
        if steps[t - 1] % every == 0 or t == len(history):
            points.append((steps[t - 1], d["moved_units"], sum(history[t - 1]["rule_ranks"].values())))
    final = list(allocations[-1].values())
    even = total / len(names)
    return {
        "run": run.name,
        "train_file": "/".join(Path(config["data"]["train_file"]).parts[-2:]),  # the data, not the machine
        "seed": config["seed"],
        "steps": steps[-1],
        "window": window,
        "points": points,
        "first_settled": first,
        "settled": report["diagnostics"]["decisive"],
        "allocation": final,
        "from_even": round(sum(abs(r - even) for r in final) / 2, 1),
        "max_from_even": max(abs(r - even) for r in final),
    }


def markdown(rows: list[dict], command: str, machine: str) -> str:
    out = ["# The rank budget's shares: settled or not", "", f"Command: `{command}`", ""]
    out += [f"Runs made on: {machine}. Settled: fewer than 1 of the budget's ranks moved between adapters",
            f"over the last {rows[0]['window']} steps (autolora.search.diagnostics). 'from even': the ranks",
            "that would have to move to give every adapter total/n.", ""]  # fmt: skip
    out += ["| run | seed | steps | first settled at | settled at the end | allocation | from even (units) |"]
    out += ["|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['run']} | {r['seed']} | {r['steps']} | {r['first_settled'] or 'never'} | {r['settled']} | "
            f"{r['allocation']} | {r['from_even']} (largest {r['max_from_even']:g}) |"
        )
    out += ["", "Moved units over the window (and the rule's own total) along each search:", ""]
    for r in rows:
        trail = ", ".join(f"{s}: {m:.2f} ({t})" for s, m, t in r["points"])
        out.append(f"- {r['run']}: {trail}")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument(
        "--shuffle-labels", nargs=2, type=Path, metavar=("SRC", "DST"), help="write the control's data"
    )
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--out", type=Path)
    p.add_argument("--machine", default="not recorded", help="where the runs were made")
    args = p.parse_args()
    if args.shuffle_labels:
        shuffle_labels(*args.shuffle_labels)
        return
    rows = [settling(run, args.every) for run in args.runs]
    command = "python experiments/budget_settling.py " + " ".join(str(r) for r in args.runs)
    text = markdown(rows, command, args.machine)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
