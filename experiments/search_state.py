"""What a finished search leaves, read as ranks: per-adapter ranks by any rule from a search_study.py
run (its final state or a snapshot), and the singular values of each searched update from an
`autolora run` folder's search checkpoint.

Imported by the study scripts beside it; the library never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from autolora.options import RANK_RULES
from autolora.tuner.rank_rules import effective_rank, rank_from_weights, rule_weights, spectrum

# The package's rules, and three the study looked at beside them: each component's share of
# alpha_j * |u_j| * |v_j| (alpha with the scale the component's factors carry), the number of
# singular values holding 90% of the update's energy, and the effective rank of U V with the
# searched alpha replaced by 1/k (how much of the effective-rank rule the meta-learned alpha decides).
STUDY_RULES = ("contribution", "energy90", "effective-rank-no-alpha")
RULES = RANK_RULES + STUDY_RULES


def rank_of(rule: str, st: dict, window: torch.Tensor) -> int:
    """One adapter's rank by `rule` from its saved state st (U (out, k), V (k, in), beta (k,), scaling);
    window (steps, k) holds the recorded alphas alpha-avg averages."""
    U, V, scaling = st["U"], st["V"], st["scaling"]
    alpha = torch.softmax(st["beta"].double(), 0)
    k = alpha.numel()
    if rule == "contribution":
        c = alpha * U.double().norm(dim=0) * V.double().norm(dim=1)
        return max(1, int((c / c.sum() >= 1.0 / k).sum()))
    if rule == "energy90":
        e = spectrum(U, V, alpha, scaling) ** 2
        return int(((e.cumsum(0) / e.sum()) < 0.9).sum()) + 1
    if rule == "effective-rank-no-alpha":
        flat = torch.full_like(alpha, 1.0 / k)
        return rank_from_weights(
            "effective-rank", rule_weights("effective-rank", U, V, flat, scaling)[None], 0
        )
    if rule == "alpha-avg":
        return rank_from_weights(rule, window, 1.0 / k)
    return rank_from_weights(rule, rule_weights(rule, U, V, alpha, scaling)[None], 1.0 / k)


def ranks_from_state(run: dict, rule: str, step: int | None = None, tail: int = 50) -> list[int]:
    """Per-adapter ranks of a run by `rule`, at its end or at a snapshot `step`; alpha-avg averages
    the recorded alphas over the `tail` steps up to there."""
    state = run["final"] if step is None else run["snapshots"][step]
    last = run["records"][-1]["step"] if step is None else step
    recs = [r for r in run["records"] if last - tail < r["step"] <= last]
    return [
        rank_of(rule, st, torch.tensor([r["alpha"][name] for r in recs], dtype=torch.float64))
        for name, st in state.items()
    ]


def load(path: Path) -> dict:
    """A search_study.py run file (records, snapshots, final state)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def adapter_spectra(run: Path) -> dict[str, dict]:
    """{adapter: {rank, norm, top, effective_rank}} of one run's final search state."""
    ckpt = run / "checkpoints" / "search.pt"
    if not ckpt.is_file():
        raise SystemExit(f"run_dir: {run} has no {ckpt.relative_to(run)} (a --ranks run has no search)")
    config = json.loads((run / "config.json").read_text())
    ranks = json.loads((run / "ranks.json").read_text())["ranks"]
    params = torch.load(ckpt, map_location="cpu", weights_only=False)["params"]
    scaling = config["lora_alpha"] / config["k"]  # a search-mode adapter's scale (autolora.nn.adapter)
    out = {}
    for name, rank in ranks.items():
        alpha = torch.softmax(params[f"{name}.beta"].double(), 0)
        s = spectrum(params[f"{name}.U"], params[f"{name}.V"], alpha, scaling)
        out[name] = {
            "rank": rank,
            "norm": float(s.norm()),
            "top": float(s[0]),
            "effective_rank": float(effective_rank(s / s.sum())),
        }
    return out
