"""Summaries of one operator's bursts: what gets uploaded for it.

Plain float arithmetic: ``statistics.pstdev``/``median`` convert every value to an exact
fraction first, which took ~19 ms for one operator's samples — more than measuring it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hwnas.schemas import MeasurementResult


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``q`` in [0, 100]."""
    if not sorted_values:
        raise ValueError("no values")
    k = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    if lo == hi:
        return sorted_values[int(k)]
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    """The median (mean of the middle two for an even count)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return float(ordered[mid]) if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no values")
    return math.fsum(values) / len(values)


def pstdev(values: Sequence[float], mu: float | None = None) -> float:
    """Population standard deviation (÷ n), two-pass in floats."""
    if not values:
        raise ValueError("no values")
    mu = mean(values) if mu is None else mu
    return math.sqrt(math.fsum((x - mu) * (x - mu) for x in values) / len(values))


def burst_minimum(bursts: Sequence[Sequence[float]]) -> float:
    """Median over bursts of each burst's minimum: the estimator that predicts whole networks best
    on drifting hosts (measured on a 2-core host, 224×224 FBNet networks: the median's noise MAPE
    8.1% → 4.7% and its prediction MAPE 4.8% → 3.2% with the burst minimum; Kendall τ 0.80 → 0.87)."""
    mins = [min(b) for b in bursts if b]
    if not mins:
        raise ValueError("no samples")
    return median(mins)


def variation(bursts: Sequence[Sequence[float]]) -> float:
    """Robust coefficient of variation of the burst minima (of the samples when there is one burst):
    1.4826 × median absolute deviation / median, which equals std / mean for normal data.

    The minima are what the table's estimator is built from; raw samples carry scheduler
    outliers the estimator ignores by design. Median-based like the estimator (a median over
    bursts): one burst that shared its core with another process does not move the value, so
    it does not make the operator "noisy" either, two or more do.
    """
    mins = [min(b) for b in bursts if b]
    values = mins if len(mins) >= 2 else [x for b in bursts for x in b]
    if len(values) < 2:
        return 0.0
    mid = median(values)
    if mid <= 0:
        return 0.0
    return 1.4826 * median([abs(v - mid) for v in values]) / mid


def summarize(key: str, bursts: Sequence[Sequence[float]], warmup: int, keep_samples: bool = True) -> MeasurementResult:
    """Median, p10, p90, mean, std (population), burst minimum (as ``min_ms``) and the raw samples."""
    samples = [float(x) for b in bursts for x in b]
    if not samples:
        raise ValueError(f"{key}: no samples")
    ordered = sorted(samples)
    med = percentile(ordered, 50)
    mu = mean(samples)
    return MeasurementResult(
        key=key,
        median_ms=med,
        p10_ms=min(percentile(ordered, 10), med),
        p90_ms=max(percentile(ordered, 90), med),
        mean_ms=mu,
        std_ms=pstdev(samples, mu),
        min_ms=min(burst_minimum(bursts), med),
        iterations=len(samples),
        warmup=warmup,
        samples_ms=[round(x, 6) for x in samples] if keep_samples else None,
    )
