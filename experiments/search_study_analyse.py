"""Compare rank-selection rules on the runs of experiments/search_study.py.

For every rule, the per-adapter ranks of each run, then the agreement between runs: mean pairwise
Spearman of the per-adapter ranks across seeds (data seed = init seed), and, where the study holds
them, the agreement of runs that share the data order but not the initialisation, and the reverse.

  python experiments/search_study_analyse.py RUN_DIR [--out experiments/results/search_study]

--against RESULTS.json (an earlier study's results) adds, for runs of the same name (task, data seed,
init seed), the agreement of this study's ranks with that study's: for example plain LoRA
(search_study.py --beta-warmup = --steps: W alone, alpha stays 1/k) against the bilevel search.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
from pathlib import Path

import torch
from analysis import fmt_rho, mean_pairwise, spearman
from harness import command_line, machine, resolve_out, write_results
from search_state import RULES, STUDY_RULES, load, ranks_from_state

from autolora.options import RANK_RULES
from autolora.tuner.rank_rules import rank_from_weights, rule_weights


def alpha_diagnostics(run: dict, window: int = 50) -> dict:
    """The search's diagnostics for the alpha rule, from the recorded alphas (every few steps)."""
    from autolora.search.diagnostics import adapter_diagnostics, summarise

    recs, per = run["records"], {}
    steps = [r["step"] for r in recs]
    for name in recs[0]["alpha"]:
        w = torch.tensor([r["alpha"][name] for r in recs], dtype=torch.float64)
        tau = 1.0 / w.shape[1]
        ranks = [max(1, int((row >= tau).sum())) for row in w]
        per[name] = adapter_diagnostics(w, steps, ranks, tau, window)
    s = summarise(per, window, steps[-1])
    return {k: s[k] for k in ("decisive_adapters", "adapters", "min_margin", "stable_steps")}


def snapshot_diagnostics(run: dict, window: int = 50, rule: str = "effective-rank") -> dict | None:
    """A spectral rule's diagnostics read from the run's snapshots (every 25 or 50 steps, so coarser
    than the search's own, which sees every step), and the total rank at each snapshot."""
    from autolora.search.diagnostics import adapter_diagnostics, summarise
    from autolora.tuner.rank_rules import decision_series

    snaps = run.get("snapshots") or {}
    steps = sorted(snaps)
    if not steps:
        return None
    per, totals, full = {}, {s: 0 for s in steps}, {}
    for name, st in run["final"].items():
        k = full[name] = st["beta"].numel()
        w = torch.stack(
            [rule_weights(rule, s["U"], s["V"], torch.softmax(s["beta"].double(), 0), s["scaling"])
             for s in (snaps[t][name] for t in steps)]
        )  # fmt: skip
        ranks = [rank_from_weights(rule, row[None], 1.0 / k) for row in w]
        for t, r in zip(steps, ranks, strict=True):
            totals[t] += r
        series, tau = decision_series(rule, w, 1.0 / k)
        per[name] = adapter_diagnostics(series, steps, ranks, tau, window)
    s = summarise(per, window, steps[-1], k=full)
    keys = ("decisive_adapters", "adapters", "min_margin", "stable_steps", "selected")
    return {key: s[key] for key in keys} | {"rule": rule, "total_rank_along": totals}


def agreement_along_search(runs: dict, task: str, rules: tuple[str, ...]) -> dict[str, dict[int, float]]:
    """Mean pairwise Spearman across seeds of each rule's ranks at each snapshot step (alpha rules
    also at every recorded step that is a multiple of 50)."""
    seeds = {n: r for n, r in runs.items() if re.fullmatch(rf"{task}_d(\d+)_i\1", n)}
    out: dict[str, dict[int, float]] = {}
    for rule in rules:
        common, with_state = None, seeds
        if rule not in ("alpha", "alpha-avg"):  # runs without snapshots (older study code) sit out
            with_state = {n: r for n, r in seeds.items() if r.get("snapshots")}
        for r in with_state.values():
            have = set(r.get("snapshots", {})) if rule not in ("alpha", "alpha-avg") else {
                rec["step"] for rec in r["records"] if rec["step"] % 50 == 0}  # fmt: skip
            common = have if common is None else common & have
        for step in sorted(common or ()):
            vecs = []
            for r in with_state.values():
                if rule in ("alpha", "alpha-avg"):
                    alpha = next(rec["alpha"] for rec in r["records"] if rec["step"] == step)
                    recs = [rec for rec in r["records"] if step - 50 < rec["step"] <= step]
                    w = {
                        n: torch.tensor([rec["alpha"][n] for rec in recs], dtype=torch.float64) for n in alpha
                    }
                    vecs.append([rank_from_weights(rule, w[n], 1.0 / len(alpha[n])) for n in alpha])
                else:
                    vecs.append(ranks_from_state(r, rule, step=step))
            if len(vecs) >= 2:
                out.setdefault(rule, {})[step] = mean_pairwise(vecs)
    return out


def separation(runs: dict, task: str) -> list[str]:
    """Pairs of runs that share the data seed, the init seed, or neither: agreement of their ranks at
    each 50-step point (alpha rule from the recorded alphas; the spectral rules from snapshots)."""
    pat = re.compile(rf"{task}_d(\d+)_i(\d+)$")
    seeds = {n: tuple(map(int, m.groups())) for n in runs if (m := pat.match(n))}
    lines = []
    for a, b in itertools.combinations(sorted(seeds), 2):
        (da, ia), (db, ib) = seeds[a], seeds[b]
        kind = "same data" if da == db else "same init" if ia == ib else "neither"
        cells = []
        for rule in ("alpha", "spectrum", "energy90", "effective-rank"):
            if rule == "alpha":
                steps = sorted(
                    {r["step"] for r in runs[a]["records"]} & {r["step"] for r in runs[b]["records"]}
                )
                steps = [s for s in steps if s % 50 == 0]
            else:
                steps = sorted(set(runs[a].get("snapshots", {})) & set(runs[b].get("snapshots", {})))
            vals = []
            for step in steps:
                if rule == "alpha":
                    ra, rb = (alpha_ranks_at(runs[x], step) for x in (a, b))
                else:
                    ra, rb = (ranks_from_state(runs[x], rule, step=step) for x in (a, b))
                vals.append(f"{step}: {fmt_rho(spearman(ra, rb))}")
            if vals:
                cells.append(f"{rule} " + ", ".join(vals))
        lines.append(f"| {a} ~ {b} | {kind} | {'; '.join(cells)} |")
    return lines


def alpha_ranks_at(run: dict, step: int, tail: int = 50) -> list[int]:
    recs = [r for r in run["records"] if step - tail < r["step"] <= step]
    names = list(recs[-1]["alpha"])
    w = {n: torch.tensor([r["alpha"][n] for r in recs], dtype=torch.float64) for n in names}
    return [rank_from_weights("alpha", w[n], 1.0 / w[n].shape[1]) for n in names]


def against(
    ranks: dict[str, dict[str, list[int]]], other: dict[str, dict[str, list[int]]]
) -> tuple[dict, list[str]]:
    """Spearman between each run's ranks and the other study's ranks of the run of the same name, per
    rule both hold; with the two totals."""
    out: dict[str, dict[str, dict]] = {}
    lines = [
        "| run | rule | Spearman with the other study | total here | total there |",
        "|---|---|---|---|---|",
    ]
    for rule in sorted(set(ranks) & set(other)):
        for name in sorted(set(ranks[rule]) & set(other[rule])):
            a, b = ranks[rule][name], other[rule][name]
            rho = spearman(a, b)
            out.setdefault(rule, {})[name] = {"spearman": rho, "total": sum(a), "total_other": sum(b)}
            lines.append(f"| {name} | {rule} | {fmt_rho(rho)} | {sum(a)} | {sum(b)} |")
    return out, lines


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--prefix", default="", help="only runs whose name starts with this")
    p.add_argument("--out", type=resolve_out, default=None, help="folder for NAME.json/.md")
    p.add_argument("--name", default="search_study", help="file name of the results")
    p.add_argument("--against", type=Path, default=None, help="an earlier study's results JSON")
    args = p.parse_args()
    other = None
    if args.against is not None:
        if not args.against.is_file():
            p.error(f"--against: no such file: {args.against}")
        other = json.loads(args.against.read_text()).get("ranks")
        if not isinstance(other, dict):
            p.error(f"--against ({args.against}): no 'ranks' map (not a search_study_analyse result)")
    files = sorted(Path(args.run_dir).glob(f"{args.prefix}*.pt"))
    runs = {f.stem: load(f) for f in files if f.stat().st_size > 0}  # empty: a run that never finished
    pat = re.compile(r"(?P<task>[a-z0-9]+)_(?P<tag>.*?)d(?P<d>\d+)_i(?P<i>\d+)$")
    table, ranks_out = [], {}
    for rule in RULES:
        ranks = {name: ranks_from_state(run, rule) for name, run in runs.items()}
        ranks_out[rule] = ranks
        groups: dict[tuple, dict] = {}
        for name in runs:
            m = pat.match(name)
            if m:
                groups.setdefault((m["task"], m["tag"]), {})[(int(m["d"]), int(m["i"]))] = ranks[name]
        for (task, tag), g in sorted(groups.items()):
            diag = [g[k] for k in sorted(g) if k[0] == k[1]]
            same_data = [g[k] for k in sorted(g) if k[0] == 0]  # data seed 0, any init
            same_init = [g[k] for k in sorted(g) if k[1] == 0]  # init seed 0, any data
            row = {
                "task": task,
                "variant": tag.rstrip("_") or "base",
                "rule": rule,
                "n_seeds": len(diag),
                "spearman_seeds": mean_pairwise(diag) if len(diag) >= 2 else None,
                "spearman_same_data": mean_pairwise(same_data) if len(same_data) >= 2 else None,
                "spearman_same_init": mean_pairwise(same_init) if len(same_init) >= 2 else None,
                "rank_totals": [sum(v) for v in diag],
                "rank_span": [min(min(v) for v in diag), max(max(v) for v in diag)] if diag else None,
            }
            table.append(row)
    fmt = lambda v: "" if v is None else ("nan" if math.isnan(v) else f"{v:+.2f}")  # noqa: E731
    lines = [
        "| task | variant | rule | seeds | Spearman (seeds) | same data | same init | totals | span |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(table, key=lambda r: (r["task"], r["variant"], r["rule"])):
        lines.append(
            f"| {r['task']} | {r['variant']} | {r['rule']} | {r['n_seeds']} | {fmt(r['spearman_seeds'])} | "
            f"{fmt(r['spearman_same_data'])} | {fmt(r['spearman_same_init'])} | {r['rank_totals']} | "
            f"{r['rank_span']} |"
        )
    diag = {name: alpha_diagnostics(run) for name, run in runs.items()}
    lines += ["", "| run | alpha rule: decisive adapters | smallest margin | ranks unchanged for | seconds |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, d in diag.items():
        lines.append(f"| {name} | {d['decisive_adapters']} / {d['adapters']} | {d['min_margin']:.3f} | "
                     f"{d['stable_steps']} steps | {runs[name]['seconds']:.0f} |")  # fmt: skip
    snap = {name: snapshot_diagnostics(run) for name, run in runs.items()}
    head = "| run | effective-rank (snapshots): decisive adapters | smallest margin | total rank at step |"
    lines += ["", head, "|---|---|---|---|"]
    for name, d in snap.items():
        if d is not None:
            along = ", ".join(f"{t}: {v}" for t, v in d["total_rank_along"].items())
            decisive = f"{d['decisive_adapters']} / {d['adapters']}"
            lines.append(f"| {name} | {decisive} | {d['min_margin']:.2f} | {along} |")
    tasks = sorted({n.split("_")[0] for n in runs})
    along = {t: agreement_along_search(runs, t, RANK_RULES + STUDY_RULES[1:]) for t in tasks}
    lines += ["", "| task | rule | Spearman across seeds at step ... |", "|---|---|---|"]
    for t, rules in along.items():
        for rule, by_step in rules.items():
            cells = ", ".join(f"{s}: {fmt(v)}" for s, v in by_step.items())
            lines.append(f"| {t} | {rule} | {cells} |")
    lines += ["", "| pair | shares | agreement of the pair's ranks at step ... |", "|---|---|---|"]
    for t in tasks:
        lines += separation(runs, t)
    compared = None
    if other is not None:
        compared, cmp_lines = against(ranks_out, other)
        lines += ["", f"Against `{args.against.name}` (runs of the same name):", "", *cmp_lines]
    print("\n".join(lines))
    if args.out:
        meta = {name: {"args": run["args"], "seconds": round(run["seconds"], 1),
                       "steps_per_epoch": run["steps_per_epoch"]} for name, run in runs.items()}  # fmt: skip
        data = {
            "rows": table,
            "ranks": ranks_out,
            "runs": meta,
            "alpha_diagnostics": diag,
            "effective_rank_snapshot_diagnostics": snap,
            "along_search": along,
        }
        if compared is not None:
            data["against"] = {"file": args.against.name, "agreement": compared}
        data |= {"machine": machine(), "command": command_line()}
        head = [
            "# The rank search's stability: rank rules compared across seeds",
            "",
            f"Command: `{data['command']}`. Machine: {data['machine'].get('cpu')}, torch threads 1 per run.",
            "Runs: experiments/search_study.py; each run's settings are in the JSON.",
            "",
        ]
        write_results(args.out, args.name, data, "\n".join(head + lines) + "\n")


if __name__ == "__main__":
    main()
