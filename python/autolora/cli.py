"""Command line: `autolora run` (the whole pipeline) and `autolora doctor` (which backends are active).

Every option of autolora.config.PipelineConfig and autolora.config.DataConfig is a flag
(`--lr-w 1e-4`, `--train-file x.tsv`); `--config FILE` (YAML or JSON) sets them in bulk, flags win.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from autolora.config import DataConfig, PipelineConfig, load_config

_TYPES = {"int": int, "float": float, "str": str}


def _add_fields(parser: argparse.ArgumentParser, cls, prefix: str = "") -> None:
    for f in dataclasses.fields(cls):
        if f.name == "data":
            continue
        flag = "--" + f.name.replace("_", "-")
        dest = prefix + f.name
        kind = str(f.type).replace(" | None", "")
        if kind == "bool":
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None)
        elif kind.startswith("list["):
            parser.add_argument(flag, dest=dest, nargs="+", default=None, metavar="NAME")
        else:
            parser.add_argument(flag, dest=dest, type=_TYPES.get(kind, str), default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autolora", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="search ranks, retrain, evaluate, export")
    run.add_argument("--config", default=None, help="YAML or JSON file of options")
    _add_fields(run, PipelineConfig)
    _add_fields(run, DataConfig, prefix="data.")
    doctor = sub.add_parser("doctor", help="report the active backends")
    doctor.add_argument(
        "--build",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile the C++ extension if needed, to report the lookahead backend",
    )
    return parser


def format_summary(summary: dict) -> str:
    ranks = summary["ranks"]
    width = max(len(n) for n in ranks)
    lines = ["", "AutoLoRA ranks (alpha >= 1/k):"]
    lines += [f"  {name:<{width}}  {r}" for name, r in ranks.items()]
    metric = summary["metric"]
    value = summary["eval"].get(metric)
    lines.append(
        f"total rank {summary['rank_total']}, trainable parameters {summary['trainable_parameters']:,}"
    )
    lines.append(f"{summary['task']} eval {metric}: {value:.4f}" if value is not None else "")
    others = {k: round(v, 4) for k, v in summary["eval"].items() if k != metric and isinstance(v, float)}
    if others:
        lines.append(f"other metrics: {others}")
    lines.append(f"time: {summary['seconds']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from autolora.doctor import describe, format_description

        print(format_description(describe(build=args.build)))
        return 0
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config") and v is not None}
    import transformers

    transformers.logging.set_verbosity_error()  # its per-load report repeats what the summary says
    try:
        config = load_config(args.config, overrides)
        from autolora.pipeline import Pipeline

        pipeline = Pipeline(config)
        summary = pipeline.run()
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"autolora: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"artifacts in {config.output_dir}: ranks.json, metrics.json, adapter/, rank_heatmap.png")
    return 0
