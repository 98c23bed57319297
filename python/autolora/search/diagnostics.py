"""Did the search select? Margins, rank stability and rank trajectories, read from the search's history.

Each adapter's components carry a weight w_j along the search (alpha_j, or their share of the
update's spectrum: autolora.tuner.rank_rules) that the rank rule compares with a threshold tau.
A component's *margin* is how far it sits from tau in units of how far it moved over the last
`window` steps (the sum of its step-to-step changes):

    margin_j = |w_j(T) - tau| / sum_{T - window < t <= T} |w_j(t) - w_j(t - 1)|

margin >= 1: moving as it did, the component needs more than another window to cross tau. An
adapter's selection is *decisive* when its rank has not changed for `window` steps and every margin
is >= 1; the search's selection is decisive when every adapter's is. Alphas that end within a few
percent of 1/k while still drifting have margins well below 1: the ranks are then a snapshot of a
moving search, not a selection, and the warning says what to change. Decisive is about stability
only: a search that ends with every adapter at its full k (a flat spectrum, as noise gives) selected
nothing however still it sits, and gets a warning of its own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass
class AdapterDiagnostics:
    rank: int
    stable_steps: int  # steps since this adapter's rank last changed
    min_margin: float
    margins: list[float]  # per component, in the order of its weights
    decisive: bool


def _margins(weights: torch.Tensor, steps: list[int], tau: float, window: int) -> torch.Tensor:
    first = next(i for i, s in enumerate(steps) if s >= steps[-1] - window)
    recent = weights[first:]
    moved = (recent[1:] - recent[:-1]).abs().sum(0) if len(recent) > 1 else torch.zeros_like(weights[-1])
    gap = (weights[-1] - tau).abs()
    # nothing moved: decisive only if it is away from tau (inf); at tau exactly, 0
    still = torch.where(gap > 0, torch.full_like(gap, math.inf), torch.zeros_like(gap))
    return torch.where(moved > 0, gap / moved.clamp(min=torch.finfo(moved.dtype).tiny), still)


def adapter_diagnostics(
    weights: torch.Tensor, steps: list[int], ranks: list[int], tau: float, window: int
) -> AdapterDiagnostics:
    """weights: (T, k) at `steps` (increasing, T >= 1); ranks: the rank rule's rank at each step."""
    if len(steps) != len(weights) or len(ranks) != len(steps) or not steps:
        raise ValueError(f"steps, weights, ranks: expected equal non-zero lengths, got "
                         f"{len(steps)}, {len(weights)}, {len(ranks)}")  # fmt: skip
    last_change = steps[0]
    for i in range(1, len(ranks)):
        if ranks[i] != ranks[i - 1]:
            last_change = steps[i]
    margins = _margins(weights.double(), steps, tau, window)
    listed = [round(float(m), 3) if math.isfinite(m) else math.inf for m in margins.tolist()]
    stable = steps[-1] - last_change
    decisive = stable >= window and min(listed) >= 1.0
    return AdapterDiagnostics(ranks[-1], stable, min(listed), listed, decisive)


def summarise(
    per_adapter: dict[str, AdapterDiagnostics], window: int, steps: int, k: dict[str, int] | None = None
) -> dict:
    """The search-level verdict: decisive or not, whether it selected anything (some adapter below its
    k; None when `k` is not given), and the warning to print when either fails."""
    values = list(per_adapter.values())
    n_decisive = sum(d.decisive for d in values)
    summary = {
        "decisive": n_decisive == len(values),
        "selected": None if k is None else any(d.rank < k[n] for n, d in per_adapter.items()),
        "decisive_adapters": n_decisive,
        "adapters": len(values),
        "min_margin": min(d.min_margin for d in values),
        "stable_steps": min(d.stable_steps for d in values),
        "window": window,
        "search_steps": steps,
        "per_adapter": {name: asdict(d) for name, d in per_adapter.items()},
    }
    summary["warning"] = None
    if not summary["decisive"]:
        summary["warning"] = warning(summary)
    elif summary["selected"] is False:
        summary["warning"] = (
            "the search selected nothing: every adapter kept all of its components, as LoRA at the full "
            "rank would. The updates show no low-rank structure at this length (or k is too small): "
            "search longer, or lower --k."
        )
    return summary


def warning(summary: dict) -> str:
    near = summary["adapters"] - summary["decisive_adapters"]
    return (
        f"the selection is not decisive: {near} of {summary['adapters']} adapters have a component "
        f"within one window ({summary['window']} steps) of movement of the threshold or a rank that "
        f"changed in the last window (smallest margin {summary['min_margin']:.2f}, ranks unchanged for "
        f"{summary['stable_steps']} steps). These ranks may change with the seed or with more steps: "
        "search longer (--search-epochs, --stop-when-stable), or raise --lr-beta where beta is learned "
        "(not with --hypergradient none)."
    )


def json_safe(summary: dict) -> dict:
    """The summary with inf margins written as null (JSON has no infinity)."""

    def fix(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return fix(summary)
