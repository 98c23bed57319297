"""The demo's config (configs/demo-sst2.yaml) on seeds 0-2 through two engines: the ranks and the
SST-2 accuracy each gives, side by side (did moving `autolora run` onto AutoLoraTrainer change them?).

    python experiments/engine_seeds.py --engine old=/path/to/old/checkout --engine new=. \
        --out experiments/results/engine_seeds.json

Each engine runs from its own checkout (PYTHONPATH=<checkout>/python), the runs one after another,
each in a fresh output folder. Not timed: other work may share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(checkout: Path, seed: int, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{checkout / 'python'}:{checkout}", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "autolora", "run", "--config", str(ROOT / "configs/demo-sst2.yaml"),
           "--seed", str(seed), "--output-dir", str(out), "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "ranks": metrics["ranks"],
        "accuracy": metrics["eval"]["accuracy"],
        "search_steps": json.loads((out / "ranks.json").read_text()).get("search_steps")
        or len(json.loads((out / "alpha_history.json").read_text())["history"]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", action="append", required=True, help="name=checkout")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    engines = dict(e.split("=", 1) for e in args.engine)
    results: dict = {"command": " ".join(sys.argv), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name, checkout in engines.items():
                key = f"{name}/seed{seed}"
                results["runs"][key] = run(Path(checkout).resolve(), seed, Path(tmp) / key)
                print(key, json.dumps(results["runs"][key]), flush=True)
                Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
