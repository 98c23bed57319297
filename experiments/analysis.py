"""Statistics the studies share: paired differences with a t interval, the readouts of an eval curve
(has it converged, is it still rising, its late mean), and rank agreement (Spearman).

Imported by the study scripts beside it; the library never imports it.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable

from scipy import stats
from scipy.stats import spearmanr


def ci95(diffs: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t interval of paired differences (nan bounds for one difference)."""
    n, mean = len(diffs), statistics.fmean(diffs)
    if n < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return mean, mean - half, mean + half


def late_gain(runs: Iterable[dict], metric: str, since: float = 0.5) -> float | None:
    """Has retraining converged? The mean over seeds of (final metric - metric at the eval-curve point
    nearest `since` of the steps: half by default), from `--eval-every` curves; None when the runs
    have no curve."""
    gains = []
    for r in runs:
        curve = r.get("eval_curve") or []
        if len(curve) < 2:
            return None
        mid = min(curve[:-1], key=lambda p: abs(p["step"] - curve[-1]["step"] * since))
        gains.append(curve[-1][metric] - mid[metric])
    return statistics.fmean(gains)


def late_trend(runs: Iterable[dict], metric: str) -> float | None:
    """Is the curve still rising late? The mean over seeds of (least-squares slope of the eval curve over
    its points after half the steps, the final one included) x half the steps: the gain the late trend
    projects over the second half; None when a run has fewer than two such points."""
    gains = []
    for r in runs:
        curve = r.get("eval_curve") or []
        half = curve[-1]["step"] / 2 if curve else 0
        late = [p for p in curve if p["step"] > half]
        if len({p["step"] for p in late}) < 2:
            return None
        fit = statistics.linear_regression([p["step"] for p in late], [p[metric] for p in late])
        gains.append(fit.slope * half)
    return statistics.fmean(gains)


def late_mean(run: dict, metric: str) -> float | None:
    """The mean of the eval-curve points after half the steps (the final one included); None without
    a curve."""
    curve = run.get("eval_curve") or []
    if not curve:
        return None
    return statistics.fmean(p[metric] for p in curve if p["step"] > curve[-1]["step"] / 2)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho of two rankings; nan when either is constant."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")  # a constant vector has no ranking
    return float(spearmanr(a, b).statistic)


def mean_pairwise(vectors: list[list[int]]) -> float:
    """Mean Spearman over every pair of vectors (pairs without a rho left out; nan when none has one)."""
    vals = [spearman(a, b) for a, b in itertools.combinations(vectors, 2)]
    vals = [v for v in vals if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def fmt_rho(v: float) -> str:
    """A rho as reports print it: signed, two decimals."""
    return "nan" if math.isnan(v) else f"{v:+.2f}"
