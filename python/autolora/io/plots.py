"""Figures of a search: the rank heatmap (layers x {q, v}, the paper's Figure 3) and alpha trajectories.

`python -m autolora.io.plots RUN_DIR` draws both from a run directory's ranks.json and alpha_history.json.
The pipeline runs exactly that in a child process while retraining runs, when a core is free for it:
in a thread of the training process, drawing holds the GIL between the training loop's ops and slows
training by more than the drawing itself takes (measured on MiniLM: 4 steps +0.6-1.0 s against 0.6 s
of drawing). Without a free core it draws at once, in the process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from autolora.extras import MissingExtra, missing
from autolora.io.atomic import atomic_write

_PROJ = {
    "query": "q",
    "q_proj": "q",
    "q_lin": "q",
    "q": "q",
    "value": "v",
    "v_proj": "v",
    "v_lin": "v",
    "v": "v",
    "key": "k",
    "k_proj": "k",
    "k": "k",
}


def layer_and_projection(name: str) -> tuple[int, str]:
    """("...layer.3.attention.self.query") -> (3, "q"); unknown names keep their last component."""
    numbers = re.findall(r"\.(\d+)\.", f".{name}.")
    last = name.rsplit(".", 1)[-1]
    return (int(numbers[0]) if numbers else 0), _PROJ.get(last, last)


def _figure(**kw):
    """A matplotlib Figure on the Agg canvas, without pyplot: no global backend switch in the user's
    process, and no global state shared with other threads."""
    if missing("plots"):
        raise MissingExtra("plots", "the rank figures")
    from matplotlib.figure import Figure

    return Figure(**kw)


def rank_heatmap(ranks: dict[str, int], path: str | Path, title: str = "AutoLoRA ranks") -> Path:
    cells = {layer_and_projection(n): r for n, r in ranks.items()}
    layers = sorted({lp[0] for lp in cells})
    projs = sorted({lp[1] for lp in cells}, key=lambda p: "qkv".find(p) if p in "qkv" else 9)
    grid = [[cells.get((layer, p), 0) for layer in layers] for p in projs]
    fig = _figure(figsize=(max(4, 0.6 * len(layers) + 2), 1.0 * len(projs) + 1.2))
    ax = fig.subplots()
    im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                color="w" if value < max(map(max, grid)) * 0.6 else "k",
            )
    ax.set_xticks(range(len(layers)), [str(la) for la in layers])
    ax.set_yticks(range(len(projs)), projs)
    ax.set_xlabel("layer")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="rank")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return Path(path)


def alpha_trajectories(history: list[dict], path: str | Path) -> Path:
    """One panel per adapter: alpha_j against the search step, with the 1/k threshold dashed."""
    names = list(history[0]["alpha"]) if history else []
    cols = min(4, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig = _figure(figsize=(3.2 * cols, 2.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    steps = [h["step"] for h in history]
    for ax, name in zip(axes.flat, names, strict=False):
        series = list(zip(*[h["alpha"][name] for h in history], strict=True))
        for s in series:
            ax.plot(steps, s, lw=0.8)
        ax.axhline(1 / len(series), color="k", ls="--", lw=0.6)
        layer, proj = layer_and_projection(name)
        ax.set_title(f"layer {layer} {proj}", fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.supxlabel("search step")
    fig.supylabel("alpha")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return Path(path)


def rank_trajectories(history: list[dict], path: str | Path, verdict: str = "") -> Path:
    """Each adapter's rank (by the run's rank rule) and the total rank against the search step."""
    names = list(history[0].get("ranks", {})) if history else []
    steps = [h["step"] for h in history]
    fig = _figure(figsize=(8, 3.2))
    ax_each, ax_total = fig.subplots(1, 2)
    for name in names:
        layer, proj = layer_and_projection(name)
        ax_each.plot(steps, [h["ranks"][name] for h in history], lw=0.8, label=f"{layer} {proj}")
    ax_total.plot(steps, [h["rank_sum"] for h in history], color="k", lw=1.0, label="applied")
    if history and "rule_ranks" in history[0]:  # a budget: the rule's own total, for comparison
        own = [sum(h["rule_ranks"].values()) for h in history]
        ax_total.plot(steps, own, color="k", lw=1.0, ls="--", label="the rule's own")
        ax_total.legend(fontsize=7)
    ax_each.set(xlabel="search step", ylabel="rank", title="per adapter")
    ax_total.set(xlabel="search step", ylabel="total rank", title="total")
    if len(names) <= 24:
        ax_each.legend(fontsize=5, ncol=2)
    if verdict:
        fig.suptitle(verdict, fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return Path(path)


FIGURES = ("rank_heatmap.png", "alpha_trajectories.png", "rank_trajectories.png")


def draw_run(run_dir: str | Path) -> list[Path]:
    """Both figures of a search, from the ranks.json and alpha_history.json in run_dir (written there)."""
    run_dir = Path(run_dir)
    report = json.loads((run_dir / "ranks.json").read_text())
    history = json.loads((run_dir / "alpha_history.json").read_text())["history"]
    diag = report.get("diagnostics") or {}
    undecided = diag.get("adapters", 0) - diag.get("decisive_adapters", 0)
    verdict = "" if not diag else "decisive selection" if diag["decisive"] else (
        f"NOT decisive: {undecided} of {diag['adapters']} adapters undecided"
    )  # fmt: skip
    if diag.get("allocation"):  # a budget: whether its shares settled
        alloc = diag["allocation"]
        state = "settled" if alloc["settled"] else "NOT settled"
        verdict = f"{state}: {alloc['moved_units']:.2f} ranks moved over the last window"
    return [
        rank_heatmap(report["ranks"], run_dir / FIGURES[0]),
        alpha_trajectories(history, run_dir / FIGURES[1]),
        rank_trajectories(history, run_dir / FIGURES[2], verdict),
    ]


class RunFigures:
    """draw_run(run_dir) in a child process (background=True; `wait` collects it), or at once."""

    def __init__(self, run_dir: str | Path, background: bool) -> None:
        self.run_dir, self._proc = Path(run_dir), None
        self._log = None  # the child's stderr: a file, so that no pipe can fill up and block it
        if not background:
            draw_run(self.run_dir)
            return
        self._log = tempfile.TemporaryFile("w+")
        path = os.pathsep.join(p for p in sys.path if p)  # the child imports what this process does
        env = {**os.environ, "PYTHONPATH": path}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "autolora.io.plots", str(self.run_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=env,
        )

    def wait(self) -> None:
        """Block until the figures are written; raise RuntimeError with the child's error if it failed."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        proc.wait()
        self._log.seek(0)
        err = self._log.read()
        self._log.close()
        if proc.returncode:
            raise RuntimeError(
                f"drawing the figures of {self.run_dir} failed (exit {proc.returncode}):\n{err[-2000:]}"
            )


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m autolora.io.plots RUN_DIR  (holding ranks.json and alpha_history.json)")
    for path in draw_run(argv[0]):
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
