"""What the pipeline keeps of a search, step by step, and what it reads from it.

Every step appends one record to the history (saved in the search's checkpoints, so everything
below survives a resume): the losses, each adapter's alpha, the rank rule's weights when they are not
alpha (the spectrum), each adapter's rank by the rule, its size (what a budget is shared by:
autolora.tuner.allocation) and the ranks retraining would get if the search ended at that step. All
of them come from one RankPolicy, so the progress bar, the records, the diagnostics and the selection
agree. From the history the tracker reads the final ranks, the diagnostics
(autolora.search.diagnostics) and whether the search may stop: with stop_when_stable, once the
selection has been settled for a window and at least min_steps have run.

A step's readings (`observe`: every alpha and, for the spectral rules and rank_share "norm", the two
Gram matrices of each update) stay on the device until a logging step, when the run's loop brings
the pending steps' readings to the host in one transfer (autolora.integrations.search_phase) and `record`
turns each into its record; the singular values come from the Grams there, on the host. The stop
rule is judged at logging steps only, so with stop_when_stable a search ends at the first logging
step (every log_every steps) at which it has settled.
"""

from __future__ import annotations

import torch

from autolora.nn.adapter import AutoLoraAdapter
from autolora.search.diagnostics import adapter_diagnostics, allocation_diagnostics, summarise
from autolora.train.host import to_host
from autolora.tuner.allocation import RankPolicy
from autolora.tuner.rank_rules import (
    decision_series,
    effective_rank,
    rank_from_weights,
    spectrum_from_grams,
    update_grams,
)


class SearchTracker:
    def __init__(
        self,
        named: list[tuple[str, AutoLoraAdapter]],
        *,
        policy: RankPolicy,
        window: int,
        stop_when_stable: bool = False,
        min_steps: int = 0,
    ) -> None:
        if not named:
            raise ValueError("model: has no search-mode adapters to track")
        self.named, self.policy, self.rule, self.window = named, policy, policy.rule, window
        self.stop_when_stable, self.min_steps = stop_when_stable, min_steps
        self.key = "alpha" if self.rule in ("alpha", "alpha-avg") else "weights"
        self.spectral = self.key == "weights" or policy.share == "norm"  # reads singular values

    def thresholds(self) -> dict[str, float]:
        """tau per adapter: the alpha rules compare with the adapter's own threshold (1/k, or 1/2
        for sigmoid selection), the spectral rules with 1/k (effective-rank's diagnostics replace it by
        the rounding boundary: autolora.tuner.rank_rules.decision_series)."""
        return {n: a.threshold() if self.key == "alpha" else 1.0 / a.rank for n, a in self.named}

    @torch.no_grad()
    def observe(self) -> torch.Tensor:
        """This step's readings, left on the adapters' device (nothing waits for it): every adapter's
        alpha (k,), then, when the rule or the share reads the spectrum, each adapter's (G_u, G_v)
        (autolora.tuner.rank_rules.update_grams, (k, k) each), flattened into one fp64 vector."""
        parts = [a.alpha().detach().double() for _, a in self.named]
        if self.spectral:
            parts += [g for _, a in self.named for g in update_grams(a.U, a.V, a.alpha(), a.scaling)]
        return torch.cat([p.reshape(-1) for p in parts])

    def _read(self, readings: torch.Tensor) -> tuple[dict, dict]:
        """(alpha, singular values) per adapter from `observe`'s vector on the host."""
        names, ks = [n for n, _ in self.named], [a.rank for _, a in self.named]
        parts = readings.split(ks + ([k * k for k in ks for _ in "uv"] if self.spectral else []))
        alpha = dict(zip(names, parts[: len(names)], strict=True))
        sv, grams = {}, parts[len(names) :]
        for i, (n, a) in enumerate(self.named if self.spectral else []):
            gu, gv = grams[2 * i].view(a.rank, a.rank), grams[2 * i + 1].view(a.rank, a.rank)
            # Delta has min(out, in, k) singular values, as many as the QR path (rank_rules.spectrum)
            sv[n] = spectrum_from_grams(gu, gv)[: min(a.rank, a.U.shape[0], a.V.shape[1])]
        return alpha, sv

    @torch.no_grad()
    def record(
        self, step: int, losses: dict, history: list[dict], readings: torch.Tensor | None = None
    ) -> dict:
        """The record of a step; `history` holds the records of the steps before it.

        Args:
            step: the step's number (1-based).
            losses: its losses, numbers on the host (or, without `readings`, 0-d tensors).
            history: the records before this step.
            readings: `observe`'s vector of this step on the host; None observes and reads now.

        Returns:
            The record: the losses, alpha and the rule's weights rounded to 5 decimals, sizes and
            ranks. The rank reads the exact weights, not the rounded ones.
        """
        names = [n for n, _ in self.named]
        if readings is None:  # observe and read this step alone, in one transfer
            host = to_host([*losses.values(), self.observe()])
            losses, readings = {k: float(v) for k, v in zip(losses, host[:-1], strict=True)}, host[-1]
        alpha_now, sv = self._read(readings)
        if self.key == "weights":
            now = {n: s / s.sum().clamp(min=torch.finfo(s.dtype).tiny) for n, s in sv.items()}
        else:
            now = alpha_now
        rounded = lambda r: [round(v, 5) for v in r.tolist()]  # noqa: E731
        rec = {"step": step, **losses, "alpha": {n: rounded(r) for n, r in alpha_now.items()}}
        if self.key == "weights":
            rec["weights"] = {n: rounded(r) for n, r in now.items()}
        tau = self.thresholds()
        if self.rule == "alpha-avg":  # the only rule that reads the window; the others read this step
            past = history[-(self.window - 1) :] if self.window > 1 else []
            window = {
                n: torch.cat([self._weights(past, n).reshape(-1, len(w)), w[None]]) for n, w in now.items()
            }
        else:
            window = {n: w[None] for n, w in now.items()}
        rule_ranks = {n: rank_from_weights(self.rule, w, tau[n]) for n, w in window.items()}
        sizes = {
            n: self.policy.size(
                rule_ranks[n],
                float(effective_rank(now[n])) if self.rule == "effective-rank" else None,
                float(sv[n].norm()) if self.policy.share == "norm" else None,
            )
            for n in names
        }
        rec["sizes"] = {n: round(v, 5) for n, v in sizes.items()}
        rec["ranks"] = self.policy.apply(rule_ranks, sizes)
        if self.policy.total is not None:
            rec["rule_ranks"] = rule_ranks
        rec["rank_sum"] = sum(rec["ranks"].values())
        return rec

    def _weights(self, records: list[dict], name: str) -> torch.Tensor:
        return torch.tensor([r[self.key][name] for r in records], dtype=torch.float64)

    def ranks(self, history: list[dict]) -> dict[str, int]:
        """The ranks retraining gets: those of the last record."""
        if not history:
            raise ValueError("history: the search took no step, so there are no ranks to read")
        return dict(history[-1]["ranks"])

    def keep_weights(self, history: list[dict]) -> dict[str, torch.Tensor] | None:
        """What the warm start ranks components by: None (the live alpha) for "alpha", else the rule's
        weights, averaged over the window for alpha-avg."""
        if self.rule == "alpha":
            return None
        recent = history[-self.window :]
        rows = {n: self._weights(recent, n) for n, _ in self.named}
        return {n: w.mean(0) if self.rule == "alpha-avg" else w[-1] for n, w in rows.items()}

    def diagnose(self, history: list[dict], records: list[dict] | None = None) -> dict:
        """The diagnostics over `records` (default: the whole history): per adapter, the rule's margins
        and rank stability; the verdict from them (no budget) or from the allocation's settling."""
        records = history if records is None else records
        steps = [r["step"] for r in records]
        tau = self.thresholds()
        key = "rule_ranks" if self.policy.total is not None else "ranks"
        per = {}
        for n, _ in self.named:
            series, threshold = decision_series(self.rule, self._weights(records, n), tau[n])
            per[n] = adapter_diagnostics(series, steps, [r[key][n] for r in records], threshold, self.window)
        full = {n: a.rank for n, a in self.named}
        allocation = None
        if self.policy.total is not None:
            rows = [[r["sizes"][n] for n, _ in self.named] for r in records]
            sizes = torch.tensor(rows, dtype=torch.float64)
            allocation = allocation_diagnostics(
                sizes, steps, [r["ranks"] for r in records], self.policy.total, self.window
            )
        summary = summarise(per, self.window, steps[-1] if steps else 0, k=full, allocation=allocation)
        summary["rule"] = self.rule
        return summary

    def should_stop(self, history: list[dict]) -> bool:
        """stop_when_stable: settled over the last window, after min_steps."""
        if not self.stop_when_stable or len(history) < max(self.min_steps, self.window + 1):
            return False
        return self.diagnose(history, history[-(self.window + 1) :])["decisive"]

    def rank_trajectory(self, history: list[dict]) -> dict[str, list[int]]:
        """Each adapter's applied ranks along the search."""
        return {n: [r["ranks"][n] for r in history] for n, _ in self.named}
