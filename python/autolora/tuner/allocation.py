"""What retraining applies: the rank rule's reading of each adapter, and the budget it is shared from.

A rank rule (autolora.tuner.rank_rules) reads each adapter's rank from its own state. Its ranks keep
their order across seeds, but their total follows the length of the search rather than the data
(on MiniLM the effective-rank total falls almost linearly with the search's steps), so by default
the user states the total and the search decides how it is shared: the budget is an average rank per
adapter (4: LoRA r=4's parameters on adapters of one shape), every adapter gets one rank and the rest
goes in proportion to each adapter's *size*:

- rank_share "selection": what the rule reads above one rank: ``e - 1`` for effective-rank (the
  unrounded effective rank e, so the share moves smoothly), ``r - 1`` for the counting rules;
- rank_share "norm": the Frobenius norm of the searched update ``|s U diag(alpha) V|_F``.

With no budget (``RankPolicy.total is None``) the rule's own ranks are applied as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autolora.options import DEFAULT_BUDGET, DEFAULT_RULE
from autolora.tuner.ranks import check_total, proportional_ranks

__all__ = ["RankPolicy", "budget_total"]


def budget_total(budget: float | None, total: int | None, adapters: int, k: int) -> int | None:
    """The retraining's total of ranks: `total` when given, else round(budget * adapters) clamped to
    adapters..adapters * k (None when neither is set: the rule's own ranks).

    Args:
        budget: average rank per adapter, or None.
        total: an exact total, or None; it wins over `budget`.
        adapters: how many adapters share the total.
        k: each adapter's components before selection.

    Returns:
        The total, or None.

    Raises:
        ValueError: an explicit `total` outside adapters..adapters * k (naming rank_total).
    """
    if total is not None:
        check_total(adapters, total, k, where="rank_total")
        return total
    if budget is None:
        return None
    return min(adapters * k, max(adapters, math.floor(budget * adapters + 0.5)))


@dataclass(frozen=True)
class RankPolicy:
    """The rank rule, the total it is shared from, and how: one object that the search's progress,
    its records, the diagnostics and the selection all read, so what is shown is what is applied.

    Attributes:
        rule: a rank rule of autolora.tuner.rank_rules.
        total: the retraining's total of ranks, or None for the rule's own ranks.
        share: "selection" or "norm" (the module docstring).
        k: components per adapter.
    """

    rule: str
    total: int | None
    share: str
    k: int

    def size(self, rank: int, effective: float | None, norm: float | None) -> float:
        """An adapter's size, what the total is shared in proportion to.

        Args:
            rank: the rule's rank of the adapter.
            effective: its unrounded effective rank (effective-rank rule), else None.
            norm: its update's Frobenius norm (rank_share "norm"), else None.
        """
        if self.share == "norm":
            return float(norm)
        return max(0.0, effective - 1.0) if effective is not None else float(rank - 1)

    @classmethod
    def of(
        cls,
        adapters: int,
        k: int,
        rule: str = DEFAULT_RULE,
        budget: float | None = DEFAULT_BUDGET,
        total: int | None = None,
        share: str = "selection",
    ) -> RankPolicy:
        """The policy for `adapters` adapters of k components (the defaults: the library's)."""
        return cls(rule, budget_total(budget, total, adapters, k), share, k)

    def apply(self, rule_ranks: dict[str, int], sizes: dict[str, float]) -> dict[str, int]:
        """The ranks retraining gets: the rule's own (no total), or the total shared by `sizes`."""
        if self.total is None:
            return dict(rule_ranks)
        return proportional_ranks(sizes, self.total, self.k)
