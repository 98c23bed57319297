"""How large is the update the search gave each rank?

Reads `autolora run` output folders named <task>_s<seed> (ranks.json, config.json and the search's
final checkpoint, checkpoints/search.pt) and, per adapter, the learned update
Delta = s U diag(alpha) V at the end of the search: its Frobenius norm, its largest singular value, its
effective rank (what the effective-rank rule rounds) and the rank the run selected. Per run, the
Spearman correlation across adapters between the selected rank and the update's norm: a rank rule
that read how much an adapter learned would give it positive; a rule that reads only the shape of
each spectrum (shares within one adapter) can give it any sign. Per task, the means over seeds. With
--total N, also the allocation of N ranks in proportion to the updates' norms
(autolora.tuner.ranks.proportional_ranks), per run, and how well it and the selection agree across
seeds (mean pairwise Spearman).

  python experiments/update_spectra.py RUN_DIR [RUN_DIR ...] --total 48 --out . --name update_spectra_sst2_mr
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

from analysis import fmt_rho, mean_pairwise, spearman
from harness import command_line, machine, resolve_out, write_results
from search_state import adapter_spectra

from autolora.tuner.ranks import proportional_ranks


def read_runs(run_dirs: list[Path]) -> dict[str, dict[int, dict[str, dict]]]:
    """{task: {seed: adapter_spectra}} of every <task>_s<seed> folder in run_dirs with a ranks.json."""
    runs: dict[str, dict[int, dict[str, dict]]] = {}
    for run in sorted(f.parent for d in run_dirs for f in d.glob("*/ranks.json")):
        m = re.fullmatch(r"(?P<task>[a-z0-9]+)_s(?P<seed>\d+)", run.name)
        if m:
            runs.setdefault(m["task"], {})[int(m["seed"])] = adapter_spectra(run)
    if not runs:
        where = [str(d) for d in run_dirs]
        raise SystemExit(f"run_dir: no <task>_s<seed> folder with a ranks.json in {where}")
    return runs


def by_norm(seeds: dict[int, dict[str, dict]], total: int, k: int = 8) -> dict[int, dict[str, int]]:
    """Per seed, `total` ranks in proportion to the updates' norms."""
    return {s: proportional_ranks({n: a["norm"] for n, a in r.items()}, total, k) for s, r in seeds.items()}


def report(runs: dict[str, dict[int, dict[str, dict]]], total: int | None = None) -> tuple[dict, str]:
    out, lines = {}, []
    for task, seeds in sorted(runs.items()):
        names = list(next(iter(seeds.values())))
        rho = {s: spearman([a["rank"] for a in r.values()], [a["norm"] for a in r.values()])
               for s, r in sorted(seeds.items())}  # fmt: skip
        mean = {n: {key: statistics.fmean(r[n][key] for r in seeds.values())
                    for key in ("rank", "norm", "top", "effective_rank")} for n in names}  # fmt: skip
        out[task] = {"runs": {str(s): r for s, r in seeds.items()}, "spearman_rank_norm": rho, "mean": mean}
        lines += [f"## {task}: seeds {sorted(seeds)}", "",
                  "Spearman(selected rank, norm of the update) across adapters, per seed: "
                  + ", ".join(f"{s}: {fmt_rho(v)}" for s, v in rho.items()), ""]  # fmt: skip
        head = "| adapter | selected rank | norm of Delta | largest singular value | effective rank |"
        if total is not None:
            alloc = by_norm(seeds, total)
            agree = {"selected": mean_pairwise([[a["rank"] for a in r.values()] for r in seeds.values()]),
                     "by_norm": mean_pairwise([list(r.values()) for r in alloc.values()])}  # fmt: skip
            out[task] |= {"by_norm": {"total": total, "ranks": {str(s): r for s, r in alloc.items()}},
                          "agreement_across_seeds": agree}  # fmt: skip
            said = f"selected {fmt_rho(agree['selected'])}, by norm {fmt_rho(agree['by_norm'])}"
            lines += [f"Agreement across seeds (mean pairwise Spearman): {said}", ""]
            head += f" {total} ranks by norm, per seed |"
        lines += [head, "|---" * head.count(" | ") + "|---|"]
        short = [re.sub(r"^.*?layer\.(\d+)\..*\.(\w+)$", r"layer \1 \2", n) for n in names]
        for n, label in zip(names, short, strict=True):
            m = mean[n]
            cells = [label, f"{m['rank']:.1f}", f"{m['norm']:.3f}", f"{m['top']:.3f}"]
            cells.append(f"{m['effective_rank']:.2f}")
            if total is not None:
                cells.append(" / ".join(str(alloc[s][n]) for s in sorted(alloc)))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return out, "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path, nargs="+", help="folders holding <task>_s<seed> pipeline runs")
    p.add_argument("--out", type=resolve_out, default=None, help="folder for NAME.json/.md")
    p.add_argument("--name", default="update_spectra", help="file name of the results")
    p.add_argument("--total", type=int, help="also N ranks in proportion to the updates' norms, per run")
    args = p.parse_args()
    data, table = report(read_runs(args.run_dir), args.total)
    print(table)
    if args.out:
        data = {"tasks": data, "machine": machine(), "command": command_line()}
        head = ["# The size of each searched update beside the rank it was given", "",
                f"Command: `{data['command']}`. Machine: {data['machine'].get('cpu')}.", "",
                "Means over seeds; Delta = s U diag(alpha) V at the end of the search.", ""]  # fmt: skip
        write_results(args.out, args.name, data, "\n".join(head) + table)


if __name__ == "__main__":
    main()
