"""Ranks from elsewhere: a ranks.json of an earlier run or a JSON map of module name to rank, and the
controls that allocate ranks without a search (random with a given total, uniform), a found
allocation carried to another total (scaled), and a total shared in proportion to weights."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import torch


def read_ranks(path: str | Path) -> dict[str, int]:
    """{module name: rank} from a ranks.json ({"ranks": {...}, ...}) or a plain {name: rank} map."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"ranks: file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"ranks: {path}:{err.lineno}: not JSON ({err.msg})") from None
    ranks = data.get("ranks", data) if isinstance(data, dict) else None
    if not isinstance(ranks, dict) or not ranks:
        raise ValueError(f"ranks: {path} must hold a non-empty map of module name to rank")
    for name, r in ranks.items():
        if isinstance(r, bool) or not isinstance(r, int):
            raise ValueError(f"ranks: {path}: {name!r} has rank {r!r}, expected an integer")
    return dict(ranks)


def check_ranks(ranks: dict[str, int], names: list[str], k: int, where: str = "ranks") -> None:
    """Every name must be an adapter of the model and every rank in 1..k; every adapter needs a rank."""
    unknown = sorted(set(ranks) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown module(s) {unknown}; the model's adapters: {names}")
    missing = sorted(set(names) - set(ranks))
    if missing:
        raise ValueError(f"{where}: no rank for module(s) {missing}")
    bad = {n: r for n, r in ranks.items() if not 1 <= r <= k}
    if bad:
        raise ValueError(f"{where}: ranks must lie in 1..k={k}, got {bad}")


def check_total(n: int, total: int, k: int, where: str = "total") -> None:
    """A total of ranks that n adapters of 1..k can hold."""
    if not n <= total <= n * k:
        raise ValueError(f"{where}: expected {n}..{n * k} for {n} adapters of k={k}, got {total}")


def random_ranks(names: list[str], total: int, k: int, seed: int) -> dict[str, int]:
    """A seeded random allocation of `total` rank units over the adapters, each in 1..k: every adapter
    gets 1, then the rest go one at a time to adapters drawn uniformly among those below k."""
    n = len(names)
    check_total(n, total, k)
    gen = torch.Generator().manual_seed(seed)
    ranks = [1] * n
    for _ in range(total - n):
        open_ = [i for i in range(n) if ranks[i] < k]
        ranks[open_[int(torch.randint(len(open_), (1,), generator=gen))]] += 1
    return dict(zip(names, ranks, strict=True))


def uniform_ranks(names: list[str], total: int, k: int) -> dict[str, int]:
    """`total` spread as evenly as possible (the first adapters get the remainder)."""
    n = len(names)
    check_total(n, total, k)
    base, extra = divmod(total, n)
    return {name: base + (i < extra) for i, name in enumerate(names)}


def scaled_ranks(ranks: dict[str, int], total: int, k: int) -> dict[str, int]:
    """`ranks` carried to another `total`, each in 1..k and in the same order: every adapter keeps 1 and
    the rest is shared in proportion to what each had above 1 (proportional_ranks). At the same total
    the ranks come back unchanged."""
    return proportional_ranks({n: r - 1 for n, r in ranks.items()}, total, k)


def proportional_ranks(weights: dict[str, float], total: int, k: int) -> dict[str, int]:
    """`total` ranks, each in 1..k: every adapter gets 1 and the rest is shared in proportion to its
    weight (>= 0; evenly when all are 0); an adapter whose share passes k stops at k and the others
    share what is left; whole units go by the largest remainders, ties to the earlier adapter."""
    names = list(weights)
    check_total(len(names), total, k)
    bad = {n: w for n, w in weights.items() if not w >= 0}
    if bad:
        raise ValueError(f"weights: expected >= 0, got {bad}")
    weight = {n: Fraction(w) for n, w in weights.items()}  # exact: a float's own binary value
    extra, free, left = {}, list(names), total - len(names)
    while True:  # water-filling: fix the adapters whose proportional share reaches k - 1
        above = {n: weight[n] for n in free}
        if not any(above.values()):
            above = dict.fromkeys(free, 1)
        share = {n: left * above[n] / sum(above.values()) for n in free}
        full = [n for n in free if share[n] >= k - 1]
        if not full:
            break
        for n in full:
            extra[n] = k - 1
            free.remove(n)
        left -= (k - 1) * len(full)
    for n in free:
        extra[n] = int(share[n])
    order = sorted(free, key=lambda n: int(share[n]) - share[n])  # stable: ties keep adapter order
    for n in order[: left - sum(int(share[n]) for n in free)]:
        extra[n] += 1
    return {n: 1 + extra[n] for n in names}
