"""What bench_compare.py writes: per-method summaries over seeds, the cost section, the markdown
report and its notes (experiments only, not the package)."""

from __future__ import annotations

import math
import statistics

from analysis import ci95, late_gain, late_mean, late_trend, mean_pairwise

# Converged (fixed before the results it judges, experiments/plans/converged_comparison_plan.md): the
# mean over seeds of the gain over the last quarter (final minus the curve point nearest 75% of the
# budget) is at most this, per metric (Matthews correlation is the noisier one); other metrics: no verdict.
CONVERGED_WITHIN = {"accuracy": 0.01, "matthews_correlation": 0.02}


def summarize(result: dict) -> dict:
    runs = result["runs"]
    scores = [r["score"] for r in runs]
    # wall time: the runs made in one process; a resumed run's covers only its last process
    uncut = [r for r in runs if not r.get("resumed")]
    times = [r["train_seconds"] for r in uncut]
    out = {
        "metric": runs[0]["metric"],
        "mean": statistics.fmean(scores),
        "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "scores": scores,
        "seeds": [r["seed"] for r in runs],
        "trainable_parameters": runs[0]["trainable_parameters"],
        "train_seconds_mean": statistics.fmean(times) if times else None,
        "train_seconds": [r["train_seconds"] for r in runs],
        "wall_seeds": [r["seed"] for r in uncut],
        "eval_seconds_mean": statistics.fmean(r["eval_seconds"] for r in runs),
        "peak_rss_mb": result["peak_rss_mb"],
        "base_rss_mb": result["base_rss_mb"],
        "gpu_peak_mb": max((r["gpu_peak_mb"] or 0) for r in runs) or None,
    }
    if "ranks" in runs[0]:
        out["ranks"] = [list(r["ranks"].values()) for r in runs]
        out["rank_total"] = [r["rank_total"] for r in runs]
        if len(runs) > 1:  # how well the seeds' per-adapter ranks agree (Spearman)
            out["rank_spearman_seeds"] = mean_pairwise(out["ranks"])
        if uncut:
            out["phase_seconds_mean"] = {
                k: statistics.fmean(r["phase_seconds"][k] for r in uncut) for k in uncut[0]["phase_seconds"]
            }
    if "adalora" in runs[0]:
        out["adalora_final"] = [r["adalora"] for r in runs]
    curved = [r for r in runs if len(r.get("eval_curve") or []) >= 2]  # --eval-points (joins may mix)
    if curved:
        out["gain_over_second_half"] = late_gain(curved, out["metric"])
        out["gain_over_last_quarter"] = quarter = late_gain(curved, out["metric"], since=0.75)
        out["curve_seeds"] = [r["seed"] for r in curved]
        trend = late_trend(curved, out["metric"])  # the plan's addendum: secondary readouts
        if trend is not None:
            out["trend_over_second_half"] = trend
        out["late_means"] = [late_mean(r, out["metric"]) for r in runs]  # None: a run without a curve
        if out["metric"] in CONVERGED_WITHIN:
            out["converged"] = quarter <= CONVERGED_WITHIN[out["metric"]]
            if trend is not None:
                out["flat_by_trend"] = trend <= CONVERGED_WITHIN[out["metric"]]
    return out


def unpaired_seeds(methods: dict) -> list[int]:
    """Seeds on which autolora-random's search did not end at autolora's ranks (then the two are not a
    pair: same search, another allocation); [] when they all match or either method is missing."""
    if "autolora" not in methods or "autolora-random" not in methods:
        return []
    mine = dict(zip(methods["autolora"]["seeds"], methods["autolora"]["ranks"], strict=True))
    return [r["seed"] for r in methods["autolora-random"]["runs"]
            if r["seed"] in mine and list(r["searched_ranks"].values()) != mine[r["seed"]]]  # fmt: skip


def differences(methods: dict, base: str = "autolora", key: str = "scores") -> dict:
    """`base` minus each other method, paired by seed: mean, 95% t interval, seeds, per-seed diffs; of
    the final scores, or of another per-seed list (key "late_means": the late mean, None where a run has
    no curve)."""
    if key not in methods.get(base, {}):
        return {}

    def per_seed(s: dict) -> dict:
        return {k: v for k, v in zip(s["seeds"], s.get(key) or [None] * len(s["seeds"]), strict=True)
                if v is not None}  # fmt: skip

    mine = per_seed(methods[base])
    out = {}
    for name, s in methods.items():
        theirs = per_seed(s)
        seeds = sorted(set(mine) & set(theirs))
        if name == base or not seeds:
            continue
        diffs = [mine[k] - theirs[k] for k in seeds]
        mean, lo, hi = ci95(diffs)
        out[name] = {"mean": mean, "ci95": [lo, hi], "seeds": seeds, "diffs": diffs}
    return out


# settings that reports older than the setting ran with and do not name
UNRECORDED = {"beta_every": 1, "pooling": "model", "schedule": "constant"}


def join(reports: dict[str, dict]) -> dict:
    """One report from reports of the same settings on other seeds or other methods (each run as its
    own process): per (dataset, method) the runs of every report that has it, summarised
    again. reports: path -> JSON. Peak memory is the largest of the parts; process_seconds their sum."""
    # eval_points: scoring along the way changes no training; work_dir, checkpoint_every: a resumed run
    # trains as the uncut one (both: tests/test_bench_compare_methods.py; the runs say "resumed")
    ignore = {"seeds", "methods", "tag", "out", "join", "eval_points", "work_dir", "checkpoint_every"}
    (first_path, first), *rest = reports.items()
    config = lambda r: UNRECORDED | {k: v for k, v in r["config"].items() if k not in ignore}  # noqa: E731
    base = config(first)
    for path, r in rest:
        other = config(r)
        for key in sorted(set(base) | set(other)):
            if base.get(key) != other.get(key):
                raise SystemExit(f"--join: {path} has {key}={other.get(key)!r}, "
                                 f"{first_path} {base.get(key)!r}: not the same settings")  # fmt: skip
        if r["steps"] != first["steps"] or r["results"].keys() != first["results"].keys():
            raise SystemExit(f"--join: {path} ran other datasets or steps than {first_path}")
    # a report joined earlier brings the reports it was joined from, so runs can be added to it later
    joined = {p: "joined_from" in r for p, r in reports.items()}
    origin = {
        k: c
        for p, r in reports.items()
        for k, c in (r["joined_from"] if joined[p] else {p: r["command"]}).items()
    }
    out = {**first, "results": {}, "joined_from": origin}
    methods = list(dict.fromkeys(m for r in reports.values() for ds in r["results"].values() for m in ds))
    for ds in first["results"]:
        out["results"][ds] = {}
        for method in methods:
            parts = [part for r in reports.values() if (part := r["results"][ds].get(method)) is not None]
            if not parts:
                continue
            runs = sorted((run for part in parts for run in part["runs"]), key=lambda run: run["seed"])
            seeds = [run["seed"] for run in runs]
            if len(set(seeds)) != len(seeds):
                raise SystemExit(f"--join: {method} on {ds}: seed given twice ({seeds})")
            res = {"runs": runs, "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
                   "base_rss_mb": max(p["base_rss_mb"] for p in parts)}  # fmt: skip
            seconds = sum(p["process_seconds"] for p in parts)
            out["results"][ds][method] = {**summarize(res), "runs": runs, "process_seconds": seconds}
    out["config"] = {
        **first["config"],
        "seeds": sorted({s for r in reports.values() for s in r["config"]["seeds"]}),
        "methods": methods,
        "eval_points": max(r["config"].get("eval_points", 0) for r in reports.values()),  # parts may differ
    }
    for key in ("loadavg_before", "loadavg_after"):  # one reading per process, a joined report's as listed
        out[key] = [load for p, r in reports.items() for load in (r[key] if joined[p] else [r[key]])]
    out["total_seconds"] = sum(r["total_seconds"] for r in reports.values())
    return out


COST_TARGET = 1.3  # AutoLoRA's wall time at most this x AdaLoRA's: the cost the search may add


def wall_text(s: dict, digits: int = 1, unit: str = "") -> str:
    """A method's mean wall time, naming its seeds when resumed runs are left out of it."""
    if s["train_seconds_mean"] is None:
        return "n/a (every run resumed)"
    seeds = s.get("wall_seeds", s["seeds"])
    mean = f"{s['train_seconds_mean']:.{digits}f}{unit}"
    return mean + (f" (seeds {seeds})" if seeds != s["seeds"] else "")


def wall_ratio(s: dict, base: dict | None) -> float | None:
    """s's mean wall time over base's, None where either has none (every run resumed, or no base)."""
    a, b = s.get("train_seconds_mean"), (base or {}).get("train_seconds_mean")
    return a / b if a is not None and b else None


def cost_section(results: dict, grid: dict | None, grid_dataset: str, grid_steps: int, steps: int) -> dict:
    """Wall-time ratios to AdaLoRA on the grid's dataset (all numbers from this one run)."""
    methods = results.get(grid_dataset, {})
    ada = methods.get("adalora", {}).get("train_seconds_mean")
    if ada is None:
        return {}
    cost = {"dataset": grid_dataset, "adalora_seconds": ada, "target_autolora_max_x_adalora": COST_TARGET}
    for name, s in methods.items():
        if (x := wall_ratio(s, methods["adalora"])) is not None:
            cost[f"{name}_vs_adalora"] = x
    if grid:
        cost["lora_grid_seconds"] = grid["train_seconds"]
        cost["lora_grid_vs_adalora"] = grid["train_seconds"] / ada
        cost["lora_grid_with_val_vs_adalora"] = grid["train_and_val_seconds"] / ada
        if "lora-r4" in methods and grid_steps != steps:  # the grid ran at a smaller budget
            if (lora := methods["lora-r4"]["train_seconds_mean"]) is not None:
                cost["lora_grid_estimate_16x_lora_r4_vs_adalora"] = 16 * lora / ada
    if "autolora_vs_adalora" in cost:
        cost["target_met"] = cost["autolora_vs_adalora"] <= COST_TARGET
    return cost


def fmt_metric(s: dict) -> str:
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


def _package(record: dict) -> dict:
    """{commit, modified} of a report, whichever harness version wrote it (--render reads old ones)."""
    return {
        "commit": record.get("git_commit", record.get("git_head", "")),
        "modified": record.get("git_modified", record.get("modified", [])),
    }


def method_row(name: str, s: dict, methods: dict, curves: bool) -> str:
    """One method's row of a dataset's table (methods: the dataset's, for the LoRA r=4 wall ratio;
    curves: whether the table has the gain columns)."""
    ranks = ""
    if "rank_total" in s:
        ranks = "total " + "/".join(str(t) for t in s["rank_total"]) + " (of 96)"
    if "adalora_final" in s:
        ranks = "total " + "/".join(str(sum(a["ranks"].values())) for a in s["adalora_final"])
    per_seed = " ".join(f"{100 * v:.1f}" for v in s["scores"])
    x = wall_ratio(s, methods.get("lora-r4"))
    ratio = "" if x is None else f"{x:.2f}"
    gain = ""
    if curves and "gain_over_second_half" in s:
        verdict = {True: ", converged", False: ", NOT converged"}.get(s.get("converged"), "")
        flat = {True: ", flat", False: ", rising"}.get(s.get("flat_by_trend"), "")
        trend = f"{100 * s['trend_over_second_half']:+.1f}{flat}" if "trend_over_second_half" in s else ""
        gain = (f" {100 * s['gain_over_second_half']:+.1f} (seeds {s['curve_seeds']}) | "
                f"{100 * s['gain_over_last_quarter']:+.1f}{verdict} | {trend} |")  # fmt: skip
    elif curves:
        gain = " | | |"
    return (
        f"| {name} | {fmt_metric(s)} | {per_seed} | {s['trainable_parameters']:,} | {wall_text(s)} | "
        f"{ratio} | {s['peak_rss_mb']:.0f} (base {s['base_rss_mb']:.0f}) | {ranks} |" + gain
    )


def markdown(report: dict) -> str:
    m, cfg, package = report["machine"], report["config"], _package(report["package"])
    lines = [
        f"# Comparison on real data ({cfg['mode']} mode)",
        "",
        f"Machine: {m['device_name']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} "
        f"thread(s)), transformers {m['transformers']}, peft {m['peft']}. Load average before/after: "
        f"{report['loadavg_before']} / {report['loadavg_after']} (the machine is shared: times are noisy).",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Package: {package['commit'][:10]}"
        + (f" plus uncommitted edits to {', '.join(package['modified'])}" if package["modified"] else "")
        + ".",
        "",
        f"Budget: {report['budget_definition']}",
        "",
        f"Fixed hyperparameters (none chosen on the eval split): {report['hyperparameters']}",
        "",
        "Metric: Matthews correlation x100 (CoLA), accuracy x100 (SST-2, MR); mean ± std over seeds "
        f"{cfg['seeds']}. Wall = data + model + all training (AutoLoRA: prepare + search + retrain), "
        "without the final evaluation; peak RSS = ru_maxrss of the method's fresh process (base: after "
        "imports)."
        + (
            f" Gain over 2nd half: final minus the eval-curve point nearest half the budget (--eval-points "
            f"{cfg['eval_points']}; x100, mean over the seeds named), flat within noise when the method has "
            "converged; over the last quarter: the same from the point nearest 75%, 'converged' when at "
            f"most {', '.join(f'{100 * v:g} ({k})' for k, v in CONVERGED_WITHIN.items())}; nothing is "
            "chosen by the curve. Secondary (converged_comparison_plan.md, addendum): trend over 2nd "
            "half, the least-squares slope of the curve points after half the budget times half the "
            "budget (mean over seeds; 'flat' within the same thresholds), and 'late mean', the mean of "
            "those points. 'autolora minus': paired by seed, 95% t interval."
            if cfg.get("eval_points")
            else " 'autolora minus': paired by seed, 95% t interval."
        ),
        "",
    ]
    for ds, methods in report["results"].items():
        lines += [f"## {ds} (steps per method: {report['steps'][ds]})", ""]
        curves = any("gain_over_second_half" in s for s in methods.values())
        gain_head = " gain over 2nd half | over last quarter | trend over 2nd half |" if curves else ""
        lines += ["| method | metric | per seed | trainable params | wall s | x LoRA | peak RSS MB | ranks |"
                  + gain_head, "|" + "---|" * 8 + ("---|---|---|" if curves else "")]  # fmt: skip
        lines += [method_row(name, s, methods, curves) for name, s in methods.items()]
        for key, what in (("scores", "autolora minus"), ("late_means", "autolora minus, late mean")):
            diffs = differences(methods, key=key)
            if not diffs:
                continue
            lines += ["", f"| {what} | mean (points) | 95% interval | per seed |", "|---|---|---|---|"]
            for name, d in diffs.items():
                lo, hi = d["ci95"]
                per = " ".join(f"{100 * v:+.1f}" for v in d["diffs"])
                interval = "n/a (one seed)" if math.isnan(lo) else f"{100 * lo:+.2f} to {100 * hi:+.2f}"
                lines.append(f"| {name} | {100 * d['mean']:+.2f} | {interval} | "
                             f"{per} (seeds {d['seeds']}) |")  # fmt: skip
        for name, s in methods.items():
            if "phase_seconds_mean" in s:
                ph = ", ".join(f"{k} {v:.1f}" for k, v in s["phase_seconds_mean"].items())
                seeds = s.get("wall_seeds", s["seeds"])
                lines.append(f"\n{name} wall by phase (s, mean over seeds {seeds}): {ph}")
        for name, s in methods.items():
            if "ranks" in s:
                lines.append(f"\n{name} ranks per adapter (layer 0..5 x q, v), per seed:")
                lines += [f"- seed {seed}: {r}" for seed, r in zip(s["seeds"], s["ranks"], strict=True)]
                if s.get("rank_spearman_seeds") is not None:
                    rho = s["rank_spearman_seeds"]
                    lines.append(f"- agreement across seeds (mean pairwise Spearman): {rho:+.2f}")
        lines.append("")
    cost = report.get("cost") or {}
    if cost:
        lines += [f"## Cost (wall time relative to AdaLoRA, {cost['dataset']}, same budget)", ""]
        lines += ["| method | x AdaLoRA |", "|---|---|"]
        lines += [f"| {k[:-11]} | {v:.2f} |" for k, v in cost.items() if k.endswith("_vs_adalora")]
        if "autolora_vs_adalora" in cost:
            verdict = "met" if cost["target_met"] else "MISSED"
            x, target = cost["autolora_vs_adalora"], cost.get("target_autolora_max_x_adalora", 1.5)
            lines += ["", f"Target AutoLoRA <= {target:g}x AdaLoRA: **{verdict}** ({x:.2f}x)."]
        if report.get("grid"):
            g = report["grid"]
            lines += [
                "",
                f"LoRA grid: {len(g['configs'])} configurations (r_q, r_v) in {{1,2,4,8}}^2, each "
                f"{report['grid_steps']} steps on D_tr ({g['d_tr']} examples), scored on "
                f"{g['val_scored']} of D_val's {g['d_val']} examples; seed {g['seed']}. "
                f"Chosen: r_q={g['chosen']['r_q']}, r_v={g['chosen']['r_v']} "
                f"(val {100 * g['chosen']['val_score']:.1f}). Grid training "
                f"{g['train_seconds']:.0f} s, with validation scoring {g['train_and_val_seconds']:.0f} s.",
            ]
    lines += ["", *report.get("notes", [])]
    return "\n".join(lines) + "\n"


def notes(report: dict) -> list[str]:
    cfg = report["config"]
    out = []
    if cfg["mode"] == "reduced":
        out.append(
            f"Reduced mode: {cfg['max_train_samples']} training / {cfg['max_eval_samples']} eval examples, "
            f"max_length {cfg['max_length']}. At this budget the search runs only "
            f"{round(min(report['steps'].values()) * cfg['search_fraction'])} iterations with lr(beta) "
            f"{cfg['lr_beta']:g}, so alpha moves little from uniform and the selected ranks are close to "
            "noise; read the quality columns as a smoke test of the harness, not as the paper's comparison "
            "(run --mode full on a GPU for that)."
        )
    for ds, methods in report["results"].items():
        plain = [v for k, m in methods.items() if k != "adalora" for r in m["runs"]
                 if (v := r.get("final_train_loss")) is not None]  # fmt: skip
        if plain and min(plain) > 0.66:
            out.append(
                f"{ds}: every method's training loss is still >= {min(plain):.2f} (ln 2 = 0.69) after "
                f"{report['steps'][ds]} steps: the models have barely started to learn, and differences "
                "between methods are mostly seed noise."
            )
        scores = [v for m in methods.values() for v in m["scores"]]
        if (
            scores
            and all(v == 0 for v in scores)
            and next(iter(methods.values()))["metric"].startswith("matt")
        ):
            out.append(f"{ds}: Matthews correlation 0 in every run: every model still predicts one class.")
    for ds, methods in report["results"].items():
        if broken := unpaired_seeds(methods):
            out.append(f"{ds}: autolora-random's search did not reach autolora's ranks on seeds {broken}: "
                       "those seeds are not a pair (the same search, another allocation).")  # fmt: skip
    for flag, what in (("resumed", "Resumed from a checkpoint (--work-dir)"),
                       ("reused", "Reused as finished by an earlier process (--work-dir)")):  # fmt: skip
        runs = [f"{ds} {name} seed {r['seed']}" for ds, methods in report["results"].items()
                for name, m in methods.items() for r in m["runs"] if r.get(flag)]  # fmt: skip
        if runs:
            out.append(
                f"{what}: {', '.join(runs)}. The training is the uncut run's (tests/test_bench_compare_"
                "methods.py), but a resumed run's wall time counts only its last process: the wall times and "
                "ratios above leave resumed runs out (the seeds they cover are named), and a reused run's "
                "peak memory is not its own."
            )
    ada = [m["adalora"] for m in report["results"].values() if "adalora" in m]
    if ada:
        eff = ada[0]["adalora_final"][0]["effective_adapter_params"]
        out.append(
            f"AdaLoRA's trainable count is what PEFT allocates (init_r 6 per matrix, plus the trained head "
            "modules); "
            f"after the final mask its adapters hold {eff:,} parameters (48 kept triplets), against "
            "36,864 for LoRA r=4. Its logged training loss includes PEFT's orthogonal regulariser "
            "(0.5 x ||P^T P - I||), so it is not comparable with the others' losses."
        )
    if len(report.get("joined_from", {})) > 1:
        out.append(
            f"Joined from {len(report['joined_from'])} reports run as separate processes (joined_from): "
            "their wall times were measured at different times, not side by side, so the cost ratios "
            "carry the machine's drift between them."
        )
    cost = report.get("cost") or {}
    if "lora_grid_estimate_16x_lora_r4_vs_adalora" in cost:
        out.append(
            f"The grid was run at {report['grid_steps']} steps per configuration (of the budget's "
            f"{report['steps'][cost['dataset']]}) to fit "
            "this machine; 'lora_grid_estimate_16x_lora_r4' is 16 x the measured LoRA r=4 wall time at the "
            "full budget, the grid's cost at equal budget (an estimate from measured runs, not a run)."
        )
    auto = report["results"].get(cost.get("dataset"), {}).get("autolora")
    if cost.get("autolora_vs_adalora") and auto and "phase_seconds_mean" in auto:
        run = auto["runs"][0]
        ph = auto["phase_seconds_mean"]
        per_search = (ph["search"] - ph.get("plots_in_search", 0.0)) / run["search_steps"]
        per_retrain = ph["retrain"] / run["retrain_steps"]
        out.append(
            f"AutoLoRA's wall time at this budget: {cfg['search_fraction']:.0%} of the steps are search "
            f"iterations; measured in this run, one costs {per_search:.2f} s against {per_retrain:.2f} s for "
            f"a retraining step ({per_search / per_retrain:.1f}x; bench_search_profile has the breakdown). "
            + (
                "Fixed costs (prepare, the two plots drawn at the end of the search) are listed under "
                "'wall by phase'."
                if "plots_in_search" in ph
                else "Fixed costs (prepare; the two plots, drawn by a child process beside retraining when "
                "a core is free, else at the end of the search, and plots_wait, what they left on the "
                "critical path) are listed under 'wall by phase'."
            )
        )
    return out
