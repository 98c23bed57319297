"""Is a step through the new engine (`autolora run` on AutoLoraTrainer, a transformers.Trainer) within
5% of the old hand-written loop's (Pipeline with train/loop.run_phase), in the search and in
retraining?

Each run is `run_pipeline(config)` of one engine in its own subprocess, on the demo's setting
(configs/demo-sst2.yaml: MiniLM-L6, SST-2, batch 16, k 8) shortened by max_search_steps and
max_retrain_steps, with no progress bar, no checkpoint before the phase's end and the search's figures
drawn in the foreground (no drawing process beside the timed steps). The runs alternate old, new, old,
new ... so that both engines see the same load. Neither engine's code is changed: the worker wraps,
from outside, the points each one passes through and stops the process once retraining ends (the
evaluation and export that follow are not timed).

What a step is, per engine (perf_counter timestamps):
  old search   start: step_fn(done) entered (run_phase's loop); end: the tracker's observe() returned,
               which run_phase calls right after step_fn. Inside: the batches of D_tr (and D_val on a
               beta step) from BatchStream, BilevelSearch.step/inner_step with W's AdamW step.
  new search   start: Trainer.get_batch_samples entered (the top of the Trainer's step loop; the
               Trainer's own batch is drawn and not used); end: on_step_end, first in the callback
               list (before SearchRecorder's flush, as the old end is before run_phase's flush).
               Inside: the unused batch, training_step (D_tr/D_val batches from BatchStream,
               BilevelSearch.step/inner_step without W's step, SearchRecorder.push with the tracker's
               readings), the Trainer's FLOP count, grad-norm, optimizer.step (W), scheduler, zero_grad.
  old retrain  start/end: step_fn entered/returned: BatchStream batch, forward, backward, (no-op)
               all-reduce, optimizer step, zero_grad, schedule.
  new retrain  start: get_batch_samples entered (the DataLoader's batch); end: on_step_end (first
               callback): training_step (forward, backward), FLOP count, grad-norm, optimizer step,
               scheduler, zero_grad.
  core         search: BilevelSearch.step / inner_step alone (the old includes W's AdamW step, the new
               leaves it to the Trainer's optimizer.step); retrain: the step less its data.
  cycle        from one step's start to the next one's: everything the engine does per step (data,
               logging every log_every steps, the tracker's flush, the callbacks).
  phase/step   run_phase's (old) or Trainer.train's (new) whole wall time over its steps: setup,
               warm-up and the end-of-phase checkpoint included. The new engine draws the search's
               figures in retraining's on_train_begin (here in the foreground, inside the phase), the
               old one between its phases (outside both): the "phase entry to its first step" rows
               show each engine's setup, and the new engine's figures apart.
Each step is timed in wall seconds (perf_counter) and in the process's CPU seconds (process_time):
with one torch thread, CPU time counts the work the step did and not the time other processes held
the cores, so it is the steadier measure on a shared machine. The first --warmup steps of each phase
are dropped from every statistic but phase/step and the phase boundaries.

Usage (from the repository root; --old is a checkout of the old engine):
  python experiments/engine_step_time.py --old ../autolora-8fbc016 --reps 3 --search-steps 20 \\
      --retrain-steps 20 --threads 1 --name engine_step_time
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("search", "retrain")


# -- the parent: alternating runs and the report -----------------------------------------------------
def run_one(engine: str, root: Path, args, scratch: Path, index: int) -> dict:
    """One subprocess of `engine` with `root`'s autolora.

    Args:
        engine: "old" or "new" (which wrappers the worker installs).
        root: the checkout whose python/ and root go on PYTHONPATH.
        args: the parsed options (steps, threads).
        scratch: where the run's output folder and its timestamps go.
        index: the repetition, naming its files.

    Returns:
        The worker's report: per-step timestamps, phase walls and boundaries, the ranks retrained,
        and process_seconds.

    Raises:
        RuntimeError: the subprocess failed (its stderr's tail in the message).
    """
    out_json, run_dir = scratch / f"{index}_{engine}.json", scratch / f"run_{index}_{engine}"
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'python'}:{root}",
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    code = (
        "import sys, torch; torch.set_num_threads(int(sys.argv[1])); "
        "sys.path.insert(0, sys.argv[2]); import _engine_step_clock as e; "
        "e.worker(sys.argv[3], e.Path(sys.argv[4]), e.Path(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]))"
    )
    cmd = [sys.executable, "-c", code, str(args.threads), str(Path(__file__).parent), engine,
           str(out_json), str(run_dir), str(args.search_steps), str(args.retrain_steps)]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out_json.exists():
        raise RuntimeError(f"{engine} run {index} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    report = json.loads(out_json.read_text())
    report["process_seconds"] = time.perf_counter() - t
    return report


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(report: dict, warmup: int) -> dict[str, float | None]:
    """One run's statistics, the first `warmup` steps of each phase dropped.

    Args:
        report: one worker's report.
        warmup: steps dropped at the start of each phase.

    Returns:
        Statistic name -> milliseconds (None where a step kind did not occur); `<phase>_steps` counts.
    """
    out: dict[str, float | None] = {}
    for phase in PHASES:
        s = report["steps"][phase]
        n = len(s["start"])
        keep = range(warmup, n)
        step = [s["end"][i] - s["start"][i] for i in keep]
        kinds = ["bilevel", "inner"] if phase == "search" else ["retrain"]
        for kind in kinds:
            idx = [i for i in keep if s["kind"][i] == kind]
            tag = phase if phase == "retrain" else f"search_{kind}"
            out[f"{tag}_step"] = _median([s["end"][i] - s["start"][i] for i in idx])
            out[f"{tag}_core"] = _median([s["core"][i] for i in idx])
            out[f"{tag}_data"] = _median([s["data"][i] for i in idx])
            out[f"{tag}_step_cpu"] = _median([s["cpu_end"][i] - s["cpu_start"][i] for i in idx])
            out[f"{tag}_core_cpu"] = _median([s["core_cpu"][i] for i in idx])
        out[f"{phase}_step_mean"] = statistics.fmean(step)
        cycles = [s["start"][i + 1] - s["start"][i] for i in range(warmup, n - 1)]
        out[f"{phase}_cycle_mean"] = statistics.fmean(cycles)
        cpu = [s["cpu_start"][i + 1] - s["cpu_start"][i] for i in range(warmup, n - 1)]
        out[f"{phase}_cycle_cpu_mean"] = statistics.fmean(cpu)
        out[f"{phase}_phase_per_step"] = report["wall"][phase] / n
        out[f"{phase}_steps"] = n
        marks = report["marks"][phase]
        out[f"{phase}_before_first"] = s["start"][0] - marks["entry"]  # setup, (new) callbacks, figures
        out[f"{phase}_after_last"] = marks["exit"] - s["end"][-1]  # the last flush, the checkpoint
        if "train_begin_last" in marks:  # the run's own on_train_begin callbacks (retraining: figures)
            out[f"{phase}_train_begin_callbacks"] = marks["train_begin_last"] - marks["train_begin_first"]
    return {k: (v * 1000 if v is not None and not k.endswith("_steps") else v) for k, v in out.items()}


ROWS = [
    ("search_bilevel_step_cpu", "search: beta step, step, CPU time", "median"),
    ("search_bilevel_core_cpu", "search: beta step, BilevelSearch.step alone, CPU time", "median"),
    ("search_inner_step_cpu", "search: W-alone step, step, CPU time", "median"),
    ("search_inner_core_cpu", "search: W-alone step, BilevelSearch.inner_step alone, CPU time", "median"),
    ("search_cycle_cpu_mean", "search: cycle, CPU time", "mean"),
    ("retrain_step_cpu", "retrain: step, CPU time", "median"),
    ("retrain_cycle_cpu_mean", "retrain: cycle, CPU time", "mean"),
    ("search_bilevel_step", "search: beta step (bilevel), step", "median"),
    ("search_bilevel_core", "search: beta step, BilevelSearch.step alone", "median"),
    ("search_inner_step", "search: W-alone step, step", "median"),
    ("search_inner_core", "search: W-alone step, BilevelSearch.inner_step alone", "median"),
    ("search_inner_data", "search: W-alone step, data", "median"),
    ("search_step_mean", "search: step, mean over all kinds", "mean"),
    ("search_cycle_mean", "search: cycle (start to next start)", "mean"),
    ("search_phase_per_step", "search: whole phase / steps", "all"),
    ("retrain_step", "retrain: step", "median"),
    ("retrain_core", "retrain: step less data", "median"),
    ("retrain_data", "retrain: data", "median"),
    ("retrain_cycle_mean", "retrain: cycle (start to next start)", "mean"),
    ("retrain_phase_per_step", "retrain: whole phase / steps", "all"),
    ("search_before_first", "search: phase entry to its first step", "once"),
    ("search_after_last", "search: its last step to phase exit", "once"),
    ("retrain_before_first", "retrain: phase entry to its first step", "once"),
    ("retrain_train_begin_callbacks", "retrain: of which on_train_begin callbacks (figures)", "once"),
    ("retrain_after_last", "retrain: its last step to phase exit", "once"),
]


def compare(old: list[dict], new: list[dict]) -> dict:
    """Each statistic of ROWS across runs.

    Args:
        old, new: `summarize` of each engine's runs, in run order (old[i] ran just before new[i]).

    Returns:
        Statistic -> each engine's median over runs and [min, max], the ratio of the medians, and
        the new/old ratio within each adjacent pair.
    """
    table = {}
    for key, _, _ in ROWS:
        o = [r[key] for r in old if r.get(key) is not None]
        n = [r[key] for r in new if r.get(key) is not None]
        ratios = [b[key] / a[key] for a, b in zip(old, new, strict=True) if a.get(key) and b.get(key)]
        table[key] = {
            "old": statistics.median(o) if o else None,
            "old_range": [min(o), max(o)] if o else None,
            "new": statistics.median(n) if n else None,
            "new_range": [min(n), max(n)] if n else None,
            "ratio": statistics.median(n) / statistics.median(o) if o and n else None,
            "pair_ratios": ratios,
        }
    return table


def markdown(report: dict) -> str:
    """The report's table and setting as markdown (the conclusion is written after reading it)."""
    m, t = report["machine"], report["table"]
    lines = [
        "# Step time: new engine (AutoLoraTrainer) against the old loop (run_phase)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['cpu']}, nproc {report['nproc']}, torch {m['torch']}, "
        f"transformers {m['transformers']}, "
        f"{report['threads']} torch thread(s) per run; new engine {m['git_commit'][:10]}, old engine "
        f"{report['old_commit'][:10]}. Load average (1, 5, 15 min) before {report['load_before']}, after "
        f"{report['load_after']}: other work shared the 2 cores.",
        "",
        f"Setting: configs/demo-sst2.yaml with {report['search_steps']} search + {report['retrain_steps']} "
        f"retraining steps per run, {report['reps']} runs per engine alternating old/new; the first "
        f"{report['warmup']} steps of each phase dropped. Milliseconds; each engine's median over its runs "
        "of the per-run statistic (median or mean over the kept steps), [min, max] over runs; new/old: "
        "the ratio of the medians, [min, max] of the ratio within each adjacent old/new pair.",
        "",
        "| statistic | per run | old ms | new ms | new/old | pairs |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, how in ROWS:
        r = t[key]
        if r["old"] is None and r["new"] is None:
            continue
        pr = r["pair_ratios"]
        cells = [
            "-" if r[e] is None else f"{r[e]:.1f} [{r[e + '_range'][0]:.1f}, {r[e + '_range'][1]:.1f}]"
            for e in ("old", "new")
        ]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        pairs = f"[{min(pr):.3f}, {max(pr):.3f}]" if pr else "-"
        lines.append(f"| {label} | {how} | {cells[0]} | {cells[1]} | {ratio} | {pairs} |")
    lines += ["", "Run order and wall seconds of each process: " + ", ".join(
        f"{e} {s:.0f}" for e, s in report["order"]
    ) + ".", ""]  # fmt: skip
    lines += ["## Conclusion", "", report.get("conclusion", "(see the table)"), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Alternate the engines' runs, write <out>/<name>.json and .md.

    Args:
        argv: the command line's options (None: sys.argv).

    Raises:
        ValueError: an option out of range or an --old that holds no old engine.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from harness import add_out_argument, command_line, machine, write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", type=Path, required=True, help="a checkout of the old engine (commit 8fbc016)")
    p.add_argument("--reps", type=int, default=3, help="runs per engine, alternating old/new")
    p.add_argument("--search-steps", type=int, default=30)
    p.add_argument("--retrain-steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="steps dropped at the start of each phase")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every run")
    p.add_argument("--name", default="engine_step_time")
    add_out_argument(p)
    args = p.parse_args(argv)
    for opt in ("reps", "search_steps", "retrain_steps", "threads"):
        if getattr(args, opt) < 1:
            raise ValueError(f"--{opt.replace('_', '-')}: expected >= 1, got {getattr(args, opt)}")
    if args.warmup < 0 or args.warmup + 2 > min(args.search_steps, args.retrain_steps):
        raise ValueError(f"--warmup: expected 0 to steps - 2, got {args.warmup}")
    if not (args.old / "python" / "autolora" / "pipeline.py").exists():
        raise ValueError(f"--old: {args.old} holds no python/autolora/pipeline.py")
    load_before = list(os.getloadavg())
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    order = []
    with tempfile.TemporaryDirectory(prefix="engine_step_time_") as scratch:
        for rep in range(args.reps):
            for engine, root in (("old", args.old.resolve()), ("new", ROOT)):
                report = run_one(engine, root, args, Path(scratch), rep)
                runs[engine].append(report)
                order.append((engine, report["process_seconds"]))
                print(f"rep {rep} {engine}: {report['process_seconds']:.1f} s", flush=True)
    stats = {e: [summarize(r, args.warmup) for r in rs] for e, rs in runs.items()}
    old_commit = subprocess.run(
        ["git", "-C", str(args.old), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    report = {
        "command": command_line(),
        "machine": machine(),
        "nproc": len(os.sched_getaffinity(0)),
        "threads": args.threads,
        "old_commit": old_commit,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "search_steps": args.search_steps,
        "retrain_steps": args.retrain_steps,
        "reps": args.reps,
        "warmup": args.warmup,
        "order": order,
        "table": compare(stats["old"], stats["new"]),
        "per_run": stats,
        "raw": runs,
    }
    path = write_results(args.out, args.name, report, markdown(report))
    print(f"wrote {path}.md and .json")
    print(markdown(report))


if __name__ == "__main__":
    main()
