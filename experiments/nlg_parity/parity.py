"""Do autolora's NLG metrics equal the official E2E NLG Challenge scorer's, metric by metric?

Runs ../shared/reference/e2e-metrics/measure_scores.py (its Python BLEU/NIST, `-p`) and
autolora.eval.nlg_metrics.nlg_scores on the same outputs and references, and prints both at the
scorer's precision (4 decimals). Cases: the scorer's own example inputs; E2E dev references scored
against the other references of their MR; E2E dev references under systematic edits; a few outputs
of one word, or empty (where BLEU and NIST differ: README.md). Needs the `nlg` and `test` extras and
Java.

    python experiments/nlg_parity/parity.py [--shared ../shared] [--out results.json]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")
OURS = {"BLEU": "bleu", "NIST": "nist", "METEOR": "meteor", "ROUGE_L": "rouge_l", "CIDEr": "cider"}
ROOT = Path(__file__).resolve().parents[2]

# The scorer calls COCO.loadRes(resData=...) of the pycocotools fork it was written with; PyPI's
# pycocotools takes the same list as its first argument. Nothing else is changed.
DRIVER = """
import runpy, sys
from pycocotools.coco import COCO
load = COCO.loadRes
COCO.loadRes = lambda self, resFile=None, resData=None: load(self, resFile if resData is None else resData)
sys.argv = ["measure_scores.py", *sys.argv[1:]]
runpy.run_path("measure_scores.py", run_name="__main__")
"""


def prepare_official(shared: Path, work: Path) -> Path:
    """A copy of the official scorer with the Java parts it lacks (METEOR 1.5's jar and paraphrase
    table, the Stanford PTB tokenizer) taken from the pycocoevalcap package, which ships the same."""
    scorer = work / "e2e-metrics"
    shutil.copytree(shared / "reference" / "e2e-metrics", scorer)
    for path in scorer.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)  # shared/ is read-only; the copy gets temp files
    package = Path(importlib.util.find_spec("pycocoevalcap").submodule_search_locations[0])
    for part in ("meteor/meteor-1.5.jar", "meteor/data", "tokenizer/stanford-corenlp-3.4.1.jar"):
        (shutil.copytree if (package / part).is_dir() else shutil.copy)(
            package / part, scorer / "pycocoevalcap" / part
        )
    return scorer


def run_official(scorer: Path, hyps: list[str], refs: list[list[str]], work: Path) -> dict[str, float]:
    """The scorer's printed scores: references in its multi-reference text format (one a line, a
    blank line between inputs), outputs one a line."""
    ref_file, sys_file = work / "refs.txt", work / "sys.txt"
    ref_file.write_text("\n\n".join("\n".join(r) for r in refs) + "\n", encoding="utf-8")
    sys_file.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, "-p", str(ref_file), str(sys_file)],
        cwd=scorer, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the official scorer failed:\n{done.stderr[-3000:]}")
    return {m: float(re.search(rf"^{m}: ([0-9.]+)$", done.stdout, re.M).group(1)) for m in METRICS}


def ours(hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    from autolora.eval.nlg_metrics import nlg_scores

    scores = nlg_scores(hyps, refs)
    return {m: scores[OURS[m]] for m in METRICS}


# ----------------------------------------------------------------------------------------- cases


def read_e2e(path: Path) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            groups.setdefault(row["mr"], []).append(row["ref"])
    return list(groups.items())


def _edits() -> list[tuple[str, Callable[[str], str]]]:
    """Systematic edits of a reference, each a kind of output a system makes."""

    def words(f: Callable[[list[str]], list[str]]) -> Callable[[str], str]:
        return lambda s: " ".join(f(s.split()))

    return [
        ("unchanged", lambda s: s),
        ("last word dropped", words(lambda w: w[:-1])),
        ("first half only", words(lambda w: w[: max(4, len(w) // 2)])),
        ("two words swapped", words(lambda w: [w[1], w[0], *w[2:]] if len(w) > 1 else w)),
        ("lowercased", str.lower),
        ("punctuation removed", lambda s: re.sub(r"[^\w\s£]", "", s)),
        ("a phrase repeated", words(lambda w: w + w[:5])),
        ("words reversed", words(lambda w: w[::-1])),
        ("numbers and £ rewritten", lambda s: s.replace("£", "GBP ").replace("-", " to ")),
    ]


def cases(shared: Path) -> dict[str, tuple[list[str], list[list[str]]]]:
    """name -> (outputs, references of each output)."""
    out = {}
    examples = shared / "reference" / "e2e-metrics" / "example-inputs"
    refs = [
        b.split("\n") for b in (examples / "devel-conc.txt").read_text(encoding="utf-8").strip().split("\n\n")
    ]
    out["example-inputs"] = (
        (examples / "baseline-output.txt").read_text(encoding="utf-8").strip().split("\n"),
        refs,
    )
    dev = read_e2e(shared / "data" / "e2e" / "devset.csv")
    multi = [(mr, r) for mr, r in dev if len(r) > 1]
    out["dev: each MR's first reference against the others"] = (
        [r[0] for _, r in multi],
        [r[1:] for _, r in multi],
    )
    edits = _edits()
    picked = dev[:360]
    out["dev: references edited (9 kinds, 40 MRs each)"] = (
        [edits[i % len(edits)][1](r[0]) for i, (_, r) in enumerate(picked)],
        [r[1:] or r for _, r in picked],
    )
    # Outputs shorter than 4 words, and empty ones, among ordinary ones: where the two differ.
    base = dev[:200]
    out["dev: 10 of 200 outputs one word long"] = (
        [r[0].split()[0] if i < 10 else r[0] for i, (_, r) in enumerate(base)],
        [r[1:] or r for _, r in base],
    )
    out["dev: 5 of 200 outputs empty"] = (
        [r[0] if i >= 5 else "" for i, (_, r) in enumerate(base)],
        [r[1:] or r for _, r in base],
    )
    return out


def compare(shared: Path, chosen: dict[str, tuple[list[str], list[list[str]]]]) -> list[dict]:
    """For every case of `chosen` (as cases() gives them): the official and our scores, and whether
    they agree to 4 decimals."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="nlg-parity-") as tmp:
        scorer = prepare_official(shared, Path(tmp))
        for name, (hyps, refs) in chosen.items():
            official, mine = run_official(scorer, hyps, refs, Path(tmp)), ours(hyps, refs)
            same = {m: f"{official[m]:.4f}" == f"{mine[m]:.4f}" for m in METRICS}
            rows.append(
                {"case": name, "inputs": len(hyps), "official": official, "ours": mine, "equal": same}
            )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| case | inputs | metric | official | ours | equal to 4 decimals |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for m in METRICS:
            lines.append(
                f"| {r['case']} | {r['inputs']} | {m} | {r['official'][m]:.4f} | {r['ours'][m]:.4f} | "
                f"{'yes' if r['equal'][m] else 'NO'} |"
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = compare(args.shared, cases(args.shared))
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
