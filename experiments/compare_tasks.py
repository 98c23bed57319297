"""One table of bench_compare's methods over several tasks, from reports made task by task.

    python experiments/compare_tasks.py A.json B.json:autolora,adalora ... --out . --name NAME

Each (dataset, method) is taken from the first report given that has it (a report joined with
`bench_compare.py --join`, or one run), so a later report can fill in what an earlier one lacks;
`PATH:m1,m2` takes only those methods from PATH. Per
task: mean ± std and the scores per seed, trainable parameters, wall time (x AdaLoRA of the same task),
and the eval curve's gains over the second half and the last quarter (with the convergence verdict of
_compare_report.CONVERGED_WITHIN) where the runs have one (--eval-points). Then AutoLoRA
minus each method, paired by seed with a 95% t interval, per task and averaged over the tasks (per
seed, the tasks' differences averaged, CoLA's Matthews beside the accuracies as GLUE averages; then
over the seeds every task has). Every cell names its report; settings that differ between the reports
are listed, not hidden.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from _compare_report import (
    UNRECORDED,
    differences,
    summarize,
    unpaired_seeds,
    wall_ratio,
    wall_text,
)
from analysis import ci95
from harness import add_out_argument, command_line, write_results

BASE = "autolora"
IGNORED = {"seeds", "methods", "tag", "out", "join", "datasets", "render", "eval_points", "data_dir"}


def parse_source(text: str) -> tuple[Path, set[str] | None]:
    """'PATH' or 'PATH:m1,m2' -> (path, the methods to take, None for all)."""
    path, _, methods = text.partition(":")
    return Path(path), set(methods.split(",")) if methods else None


def gather(reports: dict[str, dict], only: dict[str, set[str] | None]) -> dict:
    """dataset -> method -> the summary of the first report that has it, with its source and steps."""
    table: dict[str, dict] = {}
    for path, report in reports.items():
        for ds, methods in report["results"].items():
            for method, summary in methods.items():
                cell = table.setdefault(ds, {})
                if method not in cell and (only[path] is None or method in only[path]):
                    # summarised again from its runs: the readouts of today's summarize on any report
                    again = summarize(summary) if "peak_rss_mb" in summary else {}
                    cell[method] = {**summary, **again, "source": path, "steps": report["steps"][ds]}
    for ds, methods in table.items():
        steps = {m["steps"] for m in methods.values()}
        if len(steps) > 1:
            raise SystemExit(f"{ds}: the reports ran different budgets ({sorted(steps)} steps)")
    return table


def settings_that_differ(reports: dict[str, dict]) -> dict[str, dict[str, object]]:
    """key -> {report: value} for every setting the reports do not share (their own names and runs aside)."""
    configs = {p: UNRECORDED | {k: v for k, v in r["config"].items() if k not in IGNORED}
               for p, r in reports.items()}  # fmt: skip
    keys = sorted({k for c in configs.values() for k in c})
    return {
        k: {p: c.get(k) for p, c in configs.items()}
        for k in keys
        if len({json.dumps(c.get(k)) for c in configs.values()}) > 1
    }


def across_tasks(paired: dict[str, dict]) -> dict:
    """BASE minus X averaged over the tasks per seed, over the seeds every task has for X."""
    out = {}
    others = dict.fromkeys(x for per_task in paired.values() for x in per_task)
    for x in others:
        if not all(x in per_task for per_task in paired.values()):
            continue
        per_task = {ds: dict(zip(p[x]["seeds"], p[x]["diffs"], strict=True)) for ds, p in paired.items()}
        seeds = sorted(set.intersection(*(set(d) for d in per_task.values())))
        if not seeds:
            continue
        diffs = [statistics.fmean(d[s] for d in per_task.values()) for s in seeds]
        mean, lo, hi = ci95(diffs)
        out[x] = {"mean": mean, "ci95": [lo, hi], "seeds": seeds, "diffs": diffs, "tasks": list(per_task)}
    return out


def build(reports: dict[str, dict], only: dict[str, set[str] | None]) -> dict:
    table = gather(reports, only)
    paired = {ds: differences(methods, BASE) for ds, methods in table.items()}
    late = {ds: differences(methods, BASE, key="late_means") for ds, methods in table.items()}
    return {
        "command": command_line(),
        "sources": {
            p: {
                "command": r["command"],
                "package": r["package"],
                "machine": r["machine"]["device_name"],
                "methods": sorted(only[p]) if only[p] else "all",
            }
            for p, r in reports.items()
        },  # fmt: skip
        "settings_that_differ": settings_that_differ(reports),
        "table": table,
        "paired": paired,
        "across_tasks": across_tasks(paired),
        "paired_late_mean": late,  # secondary (converged_comparison_plan.md, addendum)
        "across_tasks_late_mean": across_tasks({ds: p for ds, p in late.items() if p}),
        "unpaired_random_seeds": {
            ds: broken for ds, methods in table.items() if (broken := unpaired_seeds(methods))
        },
    }


def _pts(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:+.2f}"


def _interval(d: dict) -> str:
    return f"{_pts(d['mean'])} ({_pts(d['ci95'][0])} to {_pts(d['ci95'][1])}; seeds {d['seeds']})"


def _paired_table(table: dict, methods: list[str], paired: dict, across: dict) -> list[str]:
    lines = ["| minus | " + " | ".join(table) + " | mean over the tasks |"]
    lines.append("|---|" + "---|" * (len(table) + 1))
    for x in methods:
        if x == BASE:
            continue
        cells = [_interval(d) if (d := paired.get(ds, {}).get(x)) else "-" for ds in table]
        cells.append(f"**{_interval(a)}**" if (a := across.get(x)) else "-")
        lines.append(f"| {x} | " + " | ".join(cells) + " |")
    return lines


def markdown(out: dict) -> str:
    table, names = out["table"], {p: f"[{i}]" for i, p in enumerate(out["sources"], 1)}
    methods = list(dict.fromkeys(m for per in table.values() for m in per))
    lines = ["# Methods over tasks (bench_compare reports joined)", "", f"Command: `{out['command']}`", ""]
    lines += ["Metric x100: Matthews (CoLA), accuracy (SST-2, MR); mean ± std (per seed). Wall: training "
              "seconds, mean over seeds (x AdaLoRA of the same task). Gain: final minus the eval-curve "
              "point nearest half the budget, where the runs have a curve; last quarter: from the point "
              "nearest 75% (the plan's convergence rule); trend: the late trend's projected gain over the "
              "second half (secondary; 'rising' above the rule's threshold).", ""]  # fmt: skip
    head = "| method | " + " | ".join(
        f"{ds} ({next(iter(m.values()))['steps']} steps)" for ds, m in table.items()
    )
    lines += [head + " | trainable params |", "|---|" + "---|" * (len(table) + 1)]
    for method in methods:
        cells, params = [], set()
        for per in table.values():
            s = per.get(method)
            if s is None:
                cells.append("-")
                continue
            x = wall_ratio(s, per.get("adalora"))
            wall = wall_text(s, digits=0, unit=" s") + ("" if x is None else f" ({x:.2f})")
            gain = ""
            if "gain_over_second_half" in s:
                gain = f"; gain {100 * s['gain_over_second_half']:+.1f}"
            if "gain_over_last_quarter" in s:  # reports from before the rule have none
                verdict = {True: "", False: " NOT converged"}.get(s.get("converged"), "")
                gain += f", last quarter {100 * s['gain_over_last_quarter']:+.1f}{verdict}"
            if "trend_over_second_half" in s:
                flat = {True: "", False: " rising"}.get(s.get("flat_by_trend"), "")
                gain += f", trend {100 * s['trend_over_second_half']:+.1f}{flat}"
            seeds = " / ".join(f"{100 * v:.1f}" for v in s["scores"])
            cells.append(f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f} ({seeds}); {wall}{gain} "
                         f"{names[s['source']]}")  # fmt: skip
            params.update(r["trainable_parameters"] for r in s["runs"])
        span = f"{min(params):,}" + (f"-{max(params):,}" if len(params) > 1 else "")
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {span} |")
    lines += ["", f"## {BASE} minus each method, paired by seed (points, 95% t interval)", ""]
    lines += _paired_table(table, methods, out["paired"], out["across_tasks"])
    if any(out.get("paired_late_mean", {}).values()):
        title = (f"## {BASE} minus each method on the late mean (secondary: the mean of the eval points "
                 "after half the budget; the mean over tasks where the method has curves on every task "
                 "that has any)")  # fmt: skip
        lines += ["", title, ""]
        lines += _paired_table(table, methods, out["paired_late_mean"], out["across_tasks_late_mean"])
    for ds, broken in out["unpaired_random_seeds"].items():
        lines += [
            "",
            f"{ds}: autolora-random's search did not reach autolora's ranks on seeds {broken}: not a pair.",
        ]
    lines += ["", "## Sources", ""]
    for p, s in out["sources"].items():
        pkg = s["package"].get("git_commit", s["package"].get("commit", ""))[:10]
        lines.append(
            f"- {names[p]} `{p}`, methods {s['methods']} (package {pkg}, {s['machine']}): `{s['command']}`"
        )
    if out["settings_that_differ"]:
        lines += ["", "Settings that differ between the reports:", ""]
        for key, per in out["settings_that_differ"].items():
            lines.append(f"- {key}: " + ", ".join(f"{names[p]} {v!r}" for p, v in per.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "reports", nargs="+", help="bench_compare JSON reports (PATH or PATH:m1,m2), first wins per cell"
    )
    add_out_argument(p)
    p.add_argument("--name", required=True, help="output stem: OUT/NAME.json and .md")
    args = p.parse_args(argv)
    sources = [parse_source(text) for text in args.reports]
    missing = [str(path) for path, _ in sources if not path.is_file()]
    if missing:
        raise SystemExit(f"reports: no such file: {', '.join(missing)}")
    if len({path for path, _ in sources}) < len(sources):
        raise SystemExit("reports: a file given twice (name the methods to take once: PATH:m1,m2)")
    out = build({str(p): json.loads(p.read_text()) for p, _ in sources}, {str(p): m for p, m in sources})
    print(f"wrote {write_results(args.out, args.name, out, markdown(out))}.json and .md")


if __name__ == "__main__":
    main()
