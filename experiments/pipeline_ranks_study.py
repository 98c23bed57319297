"""Where did pipeline searches stop, and do their ranks agree across seeds and with a study?

Reads `autolora run` output folders named <task>_s<seed> (ranks.json, metrics.json): per run the step
the search ended at (with --stop-when-stable: where every adapter had been decisive for a window),
the total rank, the search's seconds and its verdict; per task the mean pairwise Spearman of the
per-adapter ranks across seeds; and, with --against, per seed the Spearman with the ranks a run of
experiments/search_study.py read (its analysed JSON: ['ranks'][RULE]['<task>_d<seed>_i<seed>'], in
the pipeline's adapter order). With runs of two or more tasks, per pair of tasks the mean Spearman
over every pair of runs of the two (any seeds): if the ranks agree across tasks as well as across
seeds, the search reads the model, not the task.

  python experiments/pipeline_ranks_study.py RUNS [RUNS ...] \
      --against experiments/results/search_study_1epoch.json --out . --name stop_w_alone_sst2
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import statistics
from pathlib import Path

from analysis import fmt_rho, mean_pairwise, spearman
from harness import command_line, machine, resolve_out, write_results

SETTINGS = ("hypergradient", "rank_rule", "search_epochs", "stop_when_stable", "stability_window", "lr_w",
            "lr_beta", "batch_size", "k", "beta_every", "pooling", "trainable")  # fmt: skip


def cell(rho: float | None) -> str:
    return "n/a" if rho is None else fmt_rho(rho)


def read_runs(run_dirs: list[Path]) -> dict[str, dict[int, dict]]:
    """{task: {seed: run}} of every <task>_s<seed> folder with a ranks.json, in any of run_dirs (a
    task and seed in two of them is refused: which would count?)."""
    runs: dict[str, dict[int, dict]] = {}
    for f in sorted(f for d in run_dirs for f in d.glob("*/ranks.json")):
        m = re.fullmatch(r"(?P<task>[a-z0-9]+)_s(?P<seed>\d+)", f.parent.name)
        if not m:
            continue
        if int(m["seed"]) in runs.get(m["task"], {}):
            raise SystemExit(f"run_dir: {f.parent.name} is in more than one of {[str(d) for d in run_dirs]}")
        ranks = json.loads(f.read_text())
        metrics = json.loads((f.parent / "metrics.json").read_text())
        runs.setdefault(m["task"], {})[int(m["seed"])] = {
            "ranks": list(ranks["ranks"].values()),
            "adapters": list(ranks["ranks"]),
            "search_steps": ranks["diagnostics"]["search_steps"],
            "decisive": ranks["diagnostics"]["decisive"],
            "search_seconds": metrics["seconds"]["search"],
            "config": json.loads((f.parent / "config.json").read_text()),
        }
    return runs


def across_tasks(runs: dict[str, dict[int, dict]], own: dict[str, float | None]) -> tuple[dict, list[str]]:
    """Per pair of tasks, the mean Spearman over every pair of their runs, beside each task's own
    agreement across seeds (own: task -> it); no rows with fewer than two tasks."""
    out, lines = {}, ["| tasks | runs paired | Spearman across the tasks | each across its seeds |",
                      "|---|---|---|---|"]  # fmt: skip
    for a, b in itertools.combinations(sorted(runs), 2):
        if len({tuple(r["adapters"]) for r in (*runs[a].values(), *runs[b].values())}) > 1:
            raise SystemExit(f"run_dir: {a} and {b} runs adapt other modules: their ranks do not pair")
        rhos = [spearman(x["ranks"], y["ranks"]) for x in runs[a].values() for y in runs[b].values()]
        rhos = [r for r in rhos if not math.isnan(r)]  # a constant ranking has none
        rho = statistics.fmean(rhos) if rhos else None
        out[f"{a}~{b}"] = {"spearman": rho, "pairs": len(rhos)}
        lines.append(f"| {a} ~ {b} | {len(rhos)} | {cell(rho)} | {cell(own[a])} / {cell(own[b])} |")
    return out, (lines if out else [])


def study(run_dirs: list[Path], against: dict | None, rule: str) -> tuple[dict, str]:
    out: dict = {"tasks": {}}
    head = (
        "| task | seed | search ended at step | decisive | total rank | search s | Spearman with the study |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    summary = ["| task | seeds | Spearman across seeds | the study's, same seeds |", "|---|---|---|---|"]
    runs = read_runs(run_dirs)
    for task, seeds in runs.items():
        ref = {s: against["ranks"][rule].get(f"{task}_d{s}_i{s}") for s in seeds} if against else {}
        rows = {}
        for s, r in sorted(seeds.items()):
            rho = spearman(r["ranks"], ref[s]) if ref.get(s) else None
            kept = {k: v for k, v in r.items() if k not in ("config", "adapters")}
            rows[s] = kept | {"spearman_with_study": rho}
            lines.append(f"| {task} | {s} | {r['search_steps']} | {r['decisive']} | {sum(r['ranks'])} | "
                         f"{r['search_seconds']:.0f} | {cell(rho)} |")  # fmt: skip
        across = mean_pairwise([r["ranks"] for r in seeds.values()]) if len(seeds) > 1 else None
        known = [v for v in ref.values() if v]
        theirs = mean_pairwise(known) if len(known) > 1 else None
        steps = statistics.fmean(r["search_steps"] for r in seeds.values())
        out["tasks"][task] = {"runs": rows, "spearman_seeds": across, "study_spearman_seeds": theirs,
                              "mean_search_steps": steps}  # fmt: skip
        summary.append(f"| {task} | {len(seeds)} | {cell(across)} | {cell(theirs)} |")
        cfg = next(iter(seeds.values()))["config"]
        out["tasks"][task]["settings"] = {k: cfg.get(k) for k in SETTINGS}
    own = {task: t["spearman_seeds"] for task, t in out["tasks"].items()}
    out["across_tasks"], cross = across_tasks(runs, own)
    return out, "\n".join(lines + ["", *summary] + (["", *cross] if cross else [])) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path, nargs="+", help="folders of <task>_s<seed> pipeline runs")
    p.add_argument("--against", type=Path, default=None, help="an analysed search_study JSON")
    p.add_argument("--rule", default="effective-rank", help="which of its rules to compare with")
    p.add_argument("--out", type=resolve_out, default=None, help="folder for NAME.json/.md")
    p.add_argument("--name", default="pipeline_ranks_study")
    args = p.parse_args()
    against = json.loads(args.against.read_text()) if args.against else None
    data, table = study(args.run_dir, against, args.rule)
    print(table)
    if args.out:
        data |= {
            "machine": machine(),
            "command": command_line(),
            "against": str(args.against),
            "rule": args.rule,
        }
        settings = "".join(f"Settings, {t}: {v['settings']}.\n" for t, v in data["tasks"].items())
        cmd = f"Command: `{data['command']}`. Machine: {data['machine'].get('cpu')}."
        head = ["# Where pipeline searches ended, and how their ranks agree", "", cmd, "", settings, ""]
        write_results(args.out, args.name, data, "\n".join(head) + table)


if __name__ == "__main__":
    main()
