"""Statistics that cannot flatter: t-intervals over independent runs, rank correlations, shares with their null.

A percentile bootstrap over 3 searches gives an interval far narrower than the 3 numbers justify; a t-interval
over independent runs does not. Every share or correlation reported beside its null value (what a random
network of the same window scores on the same figure) reads at a glance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Interval:
    """Mean of independent runs and its two-sided t-interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "confidence": self.confidence}


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean over ``values`` (each one an independent run: a search, a seed).

    Fewer than two values have no interval: (-inf, inf), never a spuriously tight one.
    """
    from scipy.stats import t

    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, -math.inf, math.inf, n, confidence)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, confidence)


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 0, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Rank correlation (ties share their mean rank); 0 when either side is constant."""
    rx, ry = ranks(x), ranks(y)
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    sx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    sy = math.sqrt(sum((b - my) ** 2 for b in ry))
    if sx == 0 or sy == 0:
        return 0.0
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / (sx * sy)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b (ties in either ranking handled); NaN when undefined (fewer than 2 points or all tied)."""
    if len(x) != len(y):
        raise ValueError("x and y differ in length")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else float("nan")


def win_share(diffs: Sequence[float]) -> float:
    """Share of differences above 0, ties half (null: 0.5)."""
    return sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in diffs) / len(diffs)


def expected_best_pick(val: Sequence[float], test: Sequence[float], m: int) -> float | None:
    """Exact expected ``test`` score of the best-on-``val`` item among ``m`` drawn without replacement.

    What picking by training gives over uniform draws, without simulating it: item i is the pick when it and m−1
    items ranked below it on ``val`` are drawn, P = C(r_i, m−1) / C(N, m) (ties broken by position).
    None when fewer than ``m`` items exist.
    """
    n = len(val)
    if n < m or m < 1:
        return None
    order = sorted(range(n), key=lambda i: (val[i], i))
    total = math.comb(n, m)
    return sum(test[i] * math.comb(rank, m - 1) / total for rank, i in enumerate(order))
