"""The zero-training baseline every search must beat: the network of most MACs (or params) a latency allows.

A count of multiply-adds ranks equal-latency networks better than an untrained guess, and costs nothing: if a
search cannot beat "spend the budget on the most MACs", it has learned nothing about accuracy.

Found by dynamic programming over the layers of the table: after each layer only the partial networks on the
(cost, count) Pareto front survive (a cheaper partial with at least as many MACs is at least as good whatever
follows), and partials that cannot stay under the budget even with the cheapest remaining layers are dropped.
The result is exact for "most MACs with predicted latency ≤ hi"; it is then checked against the window's
lower edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from hwnas.errors import HwnasError


class BaselineError(HwnasError, ValueError):
    """No network of the space fits the budget."""


@dataclass(frozen=True)
class CountBaseline:
    """The network of most ``by`` under the budget, and what it costs."""

    choices: list[str]
    by: str  # "macs" or "params"
    count: float  # in the count table's unit (millions)
    predicted_ms: float
    in_window: bool  # False: even the best network under the top of the window is cheaper than its bottom

    def to_dict(self) -> dict[str, Any]:
        return {
            "choices": self.choices,
            "by": self.by,
            "count": self.count,
            "predicted_ms": self.predicted_ms,
            "in_window": self.in_window,
        }


def most_under(
    latency: Any, count: Any, candidates: Sequence[Sequence[str]], lo: float, hi: float, by: str = "macs"
) -> CountBaseline:
    """The network of largest ``count`` whose ``latency`` cost is at most ``hi`` (both ``CostTable``-like)."""
    layers = len(candidates)
    cheapest_rest = [0.0] * (layers + 1)  # cheapest cost of layers i.. end
    for i in range(layers - 1, -1, -1):
        cheapest_rest[i] = cheapest_rest[i + 1] + min(latency.layer_costs[i])
    if latency.fixed + cheapest_rest[0] > hi:
        raise BaselineError(
            f"no network costs ≤ {hi:.4g}: the cheapest costs {latency.fixed + cheapest_rest[0]:.4g}; raise the target"
        )
    # A partial network: (latency so far, count so far, candidate index per layer so far)
    front: list[tuple[float, float, tuple[int, ...]]] = [(latency.fixed, count.fixed, ())]
    for i in range(layers):
        grown = [
            (c + latency.layer_costs[i][j], v + count.layer_costs[i][j], path + (j,))
            for c, v, path in front
            for j in range(len(candidates[i]))
            if c + latency.layer_costs[i][j] + cheapest_rest[i + 1] <= hi
        ]
        grown.sort(key=lambda t: (t[0], -t[1]))
        front, best = [], -float("inf")
        for item in grown:
            if item[1] > best:
                front.append(item)
                best = item[1]
    ms, value, path = max(front, key=lambda t: (t[1], -t[0]))
    return CountBaseline([candidates[i][j] for i, j in enumerate(path)], by, value, ms, lo <= ms <= hi)
