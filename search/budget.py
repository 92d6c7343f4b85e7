"""The most likely architecture whose cost lies in a window: what a target-cost search ships.

The argmax of θ ignores the budget: the target loss holds the *expected* cost at the target while
the argmax, rounding every unsure layer to its favourite, was measured 1.4–1.7× over it. The
network a budgeted search ships is instead ``argmax Σ_l log p_l(choice_l)`` subject to
``lo ≤ fixed + Σ_l cost_l(choice_l) ≤ hi`` — exactly, by dynamic programming over the cost
discretised on a fine grid. The grid's rounding can only matter within ``layers × cell / 2`` of the
window's edges: the dynamic programme runs over the window widened by that much, and the cells are
then tried best first, each winner's exact cost checked, so the answer is always inside the window
and is the exact optimum unless the optimum lies within that hair of an edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.errors import HwnasError

_GRID = 4000  # cells across [0, hi − fixed − Σ min costs]


def budget_logits(layer_costs: Sequence[Sequence[float]], fixed: float, target: float) -> list[list[float]]:
    """θ of the most even distribution whose expected cost is ``target``: ``θ_l = −κ·cost_l`` for one κ.

    Of all per-layer independent distributions with that expected cost, the exponential tilt has the highest
    entropy, and it gives every architecture of equal cost the same probability (log P = −κ·cost − Σ log Z_l),
    so it holds no preference among networks at the budget: what θ learns from there comes from accuracy.
    κ < 0 when the target lies above the uniform distribution's cost; a target outside the space's range
    gives the nearest extreme it can reach.
    """
    return project_logits([[0.0] * len(row) for row in layer_costs], layer_costs, fixed, target)


def project_logits(
    theta: Sequence[Sequence[float]], layer_costs: Sequence[Sequence[float]], fixed: float, target: float
) -> list[list[float]]:
    """``θ_l − κ·cost_l`` with the one κ that puts the expected cost of softmax(θ) at ``target``.

    The budget held by projection, not by a penalty inside θ's optimiser: after every θ step the distribution
    is tilted back onto the budget by the least change that keeps equal-cost networks' odds (every architecture's
    log-probability moves by −κ·cost + const), so the accuracy gradient alone decides between networks of
    equal cost, and no penalty term sets Adam's step sizes.
    """
    costs = [np.asarray(c, dtype=float) for c in layer_costs]
    logits = [np.asarray(t, dtype=float) for t in theta]
    unit = max(float(np.mean(np.abs(np.concatenate(costs)))) if costs else 1.0, 1e-30)

    def expected(kappa: float) -> float:
        total = fixed
        for t, c in zip(logits, costs):
            z = t - kappa * c / unit
            w = np.exp(z - z.max())
            total += float((w * c).sum() / w.sum())
        return total

    lo, hi = -200.0, 200.0  # expected() falls as κ rises
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if expected(mid) > target:
            lo = mid
        else:
            hi = mid
    kappa = 0.5 * (lo + hi)
    return [(t - kappa * c / unit).tolist() for t, c in zip(logits, costs)]


class BudgetError(HwnasError, ValueError):
    """No architecture of the space costs within the window."""


@dataclass(frozen=True)
class BudgetChoice:
    """One architecture (a candidate index per layer), its cost and log-probability."""

    index: list[int]
    cost: float
    log_prob: float


def most_likely_within(
    probabilities: Sequence[Sequence[float]], layer_costs: Sequence[Sequence[float]], fixed: float, lo: float, hi: float
) -> BudgetChoice:
    """The architecture of highest probability under ``probabilities`` with ``lo ≤ cost ≤ hi``; ``BudgetError`` if none."""
    if len(probabilities) != len(layer_costs):
        raise ValueError(f"{len(probabilities)} layers of probabilities, {len(layer_costs)} of costs")
    if hi < lo:
        raise ValueError(f"empty window [{lo:g}, {hi:g}]")
    mins = [min(row) for row in layer_costs]
    base = fixed + sum(mins)
    span = hi - base  # room above the cheapest architecture
    if span < 0:
        raise BudgetError(f"the cheapest architecture costs {base:.6g}, above the window's top {hi:.6g}")
    n_layers = len(layer_costs)
    cell = max(span, 1e-12) / _GRID
    # Each layer's cost is rounded to the grid (error ≤ cell/2): widen the window by the worst total.
    slack = n_layers * cell / 2
    lo_cell = max(0, math.floor((lo - base - slack) / cell))
    hi_cell = math.ceil((span + slack) / cell)
    width = hi_cell + 1
    neg = -np.inf
    best = np.full(width, neg)
    best[0] = 0.0
    back: list[np.ndarray] = []
    for p_row, c_row, c_min in zip(probabilities, layer_costs, mins):
        nxt = np.full(width, neg)
        arg = np.full(width, -1, dtype=np.int64)
        for j, (p, c) in enumerate(zip(p_row, c_row)):
            if p <= 0:
                continue
            shift = int(round((c - c_min) / cell))
            if shift >= width:
                continue
            cand = np.full(width, neg)
            cand[shift:] = best[: width - shift] + math.log(p)
            better = cand > nxt
            nxt[better] = cand[better]
            arg[better] = j
        back.append(arg)
        best = nxt
    cells = [c for c in range(lo_cell, hi_cell + 1) if np.isfinite(best[c])]
    for end in sorted(cells, key=lambda c: -best[c]):
        index = [0] * n_layers
        cell_at = end
        for layer in range(n_layers - 1, -1, -1):
            j = int(back[layer][cell_at])
            index[layer] = j
            cell_at -= int(round((layer_costs[layer][j] - mins[layer]) / cell))
        choice = _choice(index, probabilities, layer_costs, fixed)
        if lo <= choice.cost <= hi:
            return choice
    if hi - lo < 4 * slack:  # a window about as narrow as the rounding: settle it exactly
        return _exact_small(probabilities, layer_costs, fixed, lo, hi)
    raise BudgetError(f"no architecture of non-zero probability costs between {lo:.6g} and {hi:.6g}")


def nearest_most_likely(
    probabilities: Sequence[Sequence[float]],
    layer_costs: Sequence[Sequence[float]],
    fixed: float,
    target: float,
    tolerance: float,
) -> tuple[BudgetChoice, bool]:
    """Within ``target·(1 ± tolerance)`` if any architecture is (``True``), else the window widened until one is (``False``)."""
    tol = tolerance
    for _ in range(40):
        try:
            return most_likely_within(probabilities, layer_costs, fixed, target * (1 - tol), target * (1 + tol)), tol == tolerance
        except BudgetError:
            tol = tol * 1.5 + 0.01
    raise BudgetError(f"no architecture found near {target:g}")


def _choice(
    index: list[int], probabilities: Sequence[Sequence[float]], layer_costs: Sequence[Sequence[float]], fixed: float
) -> BudgetChoice:
    cost = fixed + sum(layer_costs[l][j] for l, j in enumerate(index))
    log_prob = sum(math.log(max(probabilities[l][j], 1e-300)) for l, j in enumerate(index))
    return BudgetChoice(index, cost, log_prob)


def _exact_small(
    probabilities: Sequence[Sequence[float]], layer_costs: Sequence[Sequence[float]], fixed: float, lo: float, hi: float
) -> BudgetChoice:
    """A window narrower than the grid's rounding: fall back to checking exact costs by search (small spaces only)."""
    space = math.prod(len(row) for row in layer_costs)
    if space > 2_000_000:
        raise BudgetError(f"the window [{lo:.6g}, {hi:.6g}] is narrower than the cost grid can resolve")
    import itertools

    best: BudgetChoice | None = None
    for index in itertools.product(*(range(len(row)) for row in layer_costs)):
        c = _choice(list(index), probabilities, layer_costs, fixed)
        if lo <= c.cost <= hi and (best is None or c.log_prob > best.log_prob):
            best = c
    if best is None:
        raise BudgetError(f"no architecture costs between {lo:.6g} and {hi:.6g}")
    return best
