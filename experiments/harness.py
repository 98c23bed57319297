"""What every study records and where it writes: benchmarks/_harness.py (the machine, the command line,
results as JSON + markdown written atomically), with --out taken under experiments/results/.

The harness is the benchmarks' own, loaded from its file so that both folders record the same fields.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

_spec = importlib.util.spec_from_file_location("benchmarks_harness", HERE.parent / "benchmarks/_harness.py")
_harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_harness)

command_line = _harness.command_line
git_state = _harness.git_state
load_average = _harness.load_average
machine = _harness.machine
write_results = _harness.write_results


def resolve_out(text: str | Path) -> Path:
    """An --out folder: absolute as given, relative against experiments/results/."""
    return _harness.resolve_out(text, RESULTS)


def add_out_argument(parser: argparse.ArgumentParser) -> None:
    """--out DIR, resolved by `resolve_out`; the default is experiments/results/ itself."""
    _harness.add_out_argument(parser, RESULTS)
