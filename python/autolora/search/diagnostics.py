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

Under a budget (autolora.tuner.allocation) the rule's ranks are not applied as they are: the total is
fixed and the search decides its shares. The verdict then asks whether those shares have settled:
the *moved units* are the ranks above the floor of one per adapter that changed hands over the last
window, measured on the unrounded shares,

    moved = (total - n) * 1/2 * sum_l |s_l(T) - s_l(T - window)|,   s_l = size_l / sum(size),

and the allocation has settled when moved < 1: at the pace of the last window, another window would
move less than one rank between adapters. (The applied ranks are whole numbers, so a share that sits
on a rounding boundary may still flip one rank; stable_steps says how long they have held.) Settled
is about stability only: updates with no low-rank structure (noise, shuffled labels) settle fast on
an even split. When every adapter's rank lies within one of total/n the allocation is *even*: the
summary says so in a note (the searched ranks are then uniform LoRA's, up to rounding).
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


def allocation_diagnostics(
    sizes: torch.Tensor, steps: list[int], allocations: list[dict[str, int]], total: int, window: int
) -> dict:
    """Whether the shares of a budget have settled (the module docstring).

    Args:
        sizes: (T, n) each adapter's size at `steps` (what the total is shared by), T >= 1.
        steps: the T search steps, increasing.
        allocations: the applied ranks at each step.
        total: the budget's total of ranks.
        window: the steps over which the movement is measured.

    Returns:
        {"settled", "moved_units", "stable_steps", "total", "even"}.
    """
    if len(steps) != len(sizes) or len(allocations) != len(steps) or not steps:
        raise ValueError(f"steps, sizes, allocations: expected equal non-zero lengths, got "
                         f"{len(steps)}, {len(sizes)}, {len(allocations)}")  # fmt: skip
    sizes = sizes.double().clamp(min=0)
    sums = sizes.sum(1, keepdim=True)
    even = 1.0 / sizes.shape[1]  # no adapter has grown yet: the total is shared evenly
    shares = torch.where(sums > 0, sizes / sums.clamp(min=torch.finfo(sizes.dtype).tiny), even)
    first = next(i for i, s in enumerate(steps) if s >= steps[-1] - window)
    moved = float((shares[-1] - shares[first]).abs().sum() / 2 * (total - sizes.shape[1]))
    last_change = steps[0]
    for i in range(1, len(allocations)):
        if allocations[i] != allocations[i - 1]:
            last_change = steps[i]
    stable = steps[-1] - last_change
    settled = steps[-1] - steps[first] >= window and moved < 1.0
    even = all(abs(r - total / sizes.shape[1]) <= 1 for r in allocations[-1].values())
    out = {"settled": settled, "moved_units": round(moved, 3), "stable_steps": stable, "total": total}
    return {**out, "even": even}


def summarise(
    per_adapter: dict[str, AdapterDiagnostics],
    window: int,
    steps: int,
    k: dict[str, int] | None = None,
    allocation: dict | None = None,
) -> dict:
    """The search-level verdict: decisive or not, whether it selected anything (some adapter below its
    k; None when `k` is not given), and the warning to print when either fails. With `allocation`
    (allocation_diagnostics: a budget) the verdict is whether its shares settled; the per-adapter
    margins stay as information about the rule's own reading."""
    values = list(per_adapter.values())
    n_decisive = sum(d.decisive for d in values)
    summary = {
        "decisive": n_decisive == len(values) if allocation is None else allocation["settled"],
        "allocation": allocation,
        "selected": None if k is None else any(d.rank < k[n] for n, d in per_adapter.items()),
        "decisive_adapters": n_decisive,
        "adapters": len(values),
        "min_margin": min(d.min_margin for d in values),
        "stable_steps": min(d.stable_steps for d in values),
        "window": window,
        "search_steps": steps,
        "per_adapter": {name: asdict(d) for name, d in per_adapter.items()},
    }
    summary["warning"] = summary["note"] = None
    if allocation is not None:
        if not allocation["settled"]:
            summary["warning"] = allocation_warning(allocation, window)
        elif allocation["even"]:
            summary["note"] = (
                "every adapter's rank lies within one of an even split: the search found no layer that "
                "needs more rank than another (as on noise or shuffled labels), so these are uniform "
                "LoRA's ranks up to rounding."
            )
    elif not summary["decisive"]:
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


def allocation_warning(allocation: dict, window: int) -> str:
    return (
        f"the shares of the rank budget have not settled: {allocation['moved_units']:.1f} of its "
        f"{allocation['total']} ranks changed adapters over the last {window} steps (settled: under 1), "
        f"the applied ranks unchanged for {allocation['stable_steps']} steps. Another seed or a longer "
        "search may share it differently: search longer (--max-search-steps, --search-epochs), or let "
        "--stop-when-stable end the search once it settles."
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
