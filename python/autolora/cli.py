"""Command line: `autolora run` (the whole pipeline) and `autolora doctor` (which backends are active).

Every option of autolora.config.PipelineConfig, DataConfig and DecodingConfig is a flag (`--lr-w 1e-4`,
`--train-file x.tsv`, `--num-beams 10`); `--config FILE` (YAML or JSON) sets them in bulk, flags win.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from autolora.config import NESTED, REMOVED, PipelineConfig, load_config
from autolora.extras import MissingExtra, missing

_TYPES = {"int": int, "float": float, "str": str}
# The argument groups of `autolora run --help`, in order; each option's group is in its metadata.
GROUPS = {
    "model": "the pretrained model, the device and the seed",
    "data": "where the data is and how to read it",
    "adapters": "which modules get adapters, and their form",
    "search": "the bilevel rank search and how ranks are read",
    "retraining": "retraining adapters of the selected ranks",
    "distributed": "large batches, precision, several processes (torchrun / accelerate launch)",
    "evaluation": "evaluation of the retrained model",
    "output": "artifacts, checkpoints, progress",
}


# What `autolora run --help` opens with: which defaults are the paper's, and why the others are not.
RUN_DESCRIPTION = """\
Search ranks, retrain, evaluate, export. Flags win over --config.

The paper's defaults: k 8, the q and v projections, a seeded 1:1 split of the training data into
D_tr (W) and D_val (beta), the second-order hypergradient, lr(W) 1e-4. Not the paper's, and why:
  --rank-rule effective-rank (paper: alpha >= 1/k)  its ranks keep their order across seeds; alpha's did not
  --rank-budget 4 (paper: none)  the rule's own total follows the search's length; you choose the total
  --lr-beta 0.01 (paper: 0.001)  the rate the studies behind the rank rule ran with (docs/results.md)
  --beta-every 4 (paper: 1)      beta on every 4th step: the same ranks at about half the search's cost
  --fd-scheme forward (paper: central)  one pass fewer a step; 2e-6 of the hypergradient measured
Each is a flag: --rank-rule alpha --rank-budget none --lr-beta 0.001 --beta-every 1 --fd-scheme central
runs the paper's method as published."""


def format_default(value: object) -> str:
    """How --help shows a default: none, on/off for switches, %g for floats (1e-4 as 0.0001)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def option_help(f: dataclasses.Field) -> str:
    """The help line of a config option: its doc, then the default with its unit."""
    unit = f.metadata.get("unit") if f.default is not None else ""
    default = format_default(f.default) + (f" {unit}" if unit else "")
    return f"{f.metadata['help']} (default: {default})".replace("%", "%%")  # argparse formats help


# `--rank-budget none`: an explicit None, told apart from a flag not given (argparse's default None).
_NONE = "\0none"


def _or_none(convert):
    def parse(text: str):
        return _NONE if text.lower() == "none" else convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in its errors: "invalid float value"
    return parse


def _add_fields(parser: argparse.ArgumentParser, cls, groups: dict, prefix: str = "") -> None:
    for f in dataclasses.fields(cls):
        if f.name in NESTED:  # added with its own prefix by build_parser
            continue
        if not f.metadata.get("help") or f.metadata.get("group") not in groups:
            raise ValueError(
                f"{cls.__name__}.{f.name}: declare it with autolora.config.opt(default, help, group) "
                f"(group one of {sorted(groups)}), so that --help documents it"
            )
        kwargs: dict = {"dest": prefix + f.name, "default": None, "help": option_help(f)}
        kind, unit = str(f.type).replace(" | None", ""), f.metadata.get("unit")
        if kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind.startswith("list["):
            kwargs.update(nargs="+", metavar="NAME")
        else:
            # Choices are shown, not enforced here: PipelineConfig.validate() checks them for flags and
            # config files alike, with one message.
            choices = f.metadata.get("choices")
            metavar = "{" + ",".join(choices) + "}" if choices else (unit or f.name).upper()
            convert = _TYPES.get(kind, str)
            if str(f.type).endswith("| None"):  # `--rank-budget none` sets an optional option to None
                convert = _or_none(convert)
            kwargs.update(type=convert, metavar=metavar)  # --dist-timeout SECONDS
        groups[f.metadata["group"]].add_argument("--" + f.name.replace("_", "-"), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autolora", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="search ranks, retrain, evaluate, export",
        description=RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", default=None, help="YAML or JSON file of options (default: none)")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything a run checks, print the resolved config (JSON on stdout, usable as "
        "--config) and the data sizes and trainable parameters (stderr); train nothing, write nothing "
        "(default: off)",
    )
    groups = {name: run.add_argument_group(name, about) for name, about in GROUPS.items()}
    for name in REMOVED:  # accepted here so that load_config names what replaces them
        run.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=argparse.SUPPRESS)
    _add_fields(run, PipelineConfig, groups)
    for name, cls in NESTED.items():
        _add_fields(run, cls, groups, prefix=f"{name}.")
    doctor = sub.add_parser("doctor", help="report the active backends")
    doctor.add_argument(
        "--build",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile the C++ extension if needed, to report the lookahead backend",
    )
    return parser


def selection_lines(selection: dict | None) -> list[str]:
    """Whether the search settled (autolora.search.diagnostics), in one line, and its warning if any."""
    if not selection:
        return []
    alloc = selection.get("allocation")
    if alloc is not None:
        head = (
            f"allocation: {'settled' if alloc['settled'] else 'NOT settled'}: {alloc['moved_units']:.2f} of "
            f"{alloc['total']} ranks changed adapters over the last {selection['window']} of "
            f"{selection['search_steps']} search steps (settled: under 1); the ranks unchanged for "
            f"{alloc['stable_steps']} steps"
        )
    else:
        margin = selection["min_margin"]
        head = (
            f"selection: {selection['decisive_adapters']} of {selection['adapters']} adapters decisive; "
            f"ranks unchanged for the last {selection['stable_steps']} of {selection['search_steps']} "
            f"steps; smallest margin {'inf' if margin is None else f'{margin:.2f}'} (>= 1 is decisive)"
        )
    tail = [f"WARNING: {selection['warning']}"] if selection.get("warning") else []
    return [head, *tail] + ([f"note: {selection['note']}"] if selection.get("note") else [])


def format_summary(summary: dict) -> str:
    ranks = summary["ranks"]
    width = max(len(n) for n in ranks)
    lines = ["", f"AutoLoRA ranks ({summary.get('ranks_from', 'search')}):"]
    lines += [f"  {name:<{width}}  {r}" for name, r in ranks.items()]
    lines += selection_lines(summary.get("selection"))
    metric = summary["metric"]
    value = summary["eval"].get(metric)
    selected = summary.get("ranks_selected")
    share = "update norms" if summary.get("update_norms") else "the search"
    carried = ""
    if selected:
        carried = f" (the budget, shared by {share}; the rule alone: {sum(selected.values())})"
    params = summary["trainable_parameters"]
    lines.append(f"total rank {summary['rank_total']}{carried}, trainable parameters {params:,}")
    lines.append(f"{summary['task']} eval {metric}: {value:.4f}" if value is not None else "")
    others = {k: round(v, 4) for k, v in summary["eval"].items() if k != metric and isinstance(v, float)}
    if others:
        lines.append(f"other metrics: {others}")
    lines.append(f"time: {summary['seconds']}")
    return "\n".join(lines)


# What a user can cause: bad options, files or data (InputError is a ValueError), a missing file or
# folder, an unwritable output_dir. One line, exit status 2; --debug shows the traceback instead.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, OSError)
INTERRUPTED = "autolora: interrupted; continue with the same command and --resume"


def main(argv: list[str] | None = None) -> int:
    """`autolora` on the command line.

    Args:
        argv: the arguments after the program's name; None: sys.argv's.

    Returns:
        The exit status: 0 done, 2 a user's error (one line on stderr, `autolora: error: ...`), 130
        interrupted (Ctrl-C). argparse's own errors exit 2 by raising SystemExit.
    """
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from autolora.doctor import describe, format_description

        print(format_description(describe(build=args.build)))
        return 0
    if absent := missing("cli"):
        print(f"autolora: error: {MissingExtra('cli', 'autolora run', absent)}", file=sys.stderr)
        return 2
    skip = ("command", "config", "dry_run")
    given = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    overrides = {k: None if v is _NONE else v for k, v in given.items()}
    debug = bool(args.debug)
    try:
        config = load_config(args.config, overrides)  # checks every option before anything is built
        debug = config.debug  # a config file's `debug: true` shows the traceback too
        return _run(config, args.dry_run)
    except KeyboardInterrupt:
        if debug:
            raise
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"autolora: error: {message}", file=sys.stderr)
        return 2


def _run(config: PipelineConfig, dry: bool) -> int:
    """`autolora run` with a validated config: a dry run, or the pipeline and its summary."""
    import transformers

    transformers.logging.set_verbosity_error()  # its per-load report repeats what the summary says
    if dry:
        from autolora.dry_run import dry_run, format_config, format_dry_run

        report = dry_run(config)
        print(format_config(report))  # stdout: `--dry-run > run.json` gives a --config file
        print(format_dry_run(report), file=sys.stderr)
        return 0
    from autolora.pipeline import run_pipeline

    summary = run_pipeline(config)
    if "task" not in summary:  # not the main process: it prints nothing
        return 0
    print(format_summary(summary))
    print(
        f"artifacts in {config.output_dir}: ranks.json, metrics.json, adapter/, "
        "rank_heatmap.png, rank_trajectories.png"
    )
    return 0
