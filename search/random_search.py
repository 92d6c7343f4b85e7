"""Random search at matched cost: the baseline every search result is judged against.

A found network means something only next to random architectures of the same measured latency,
trained the same way (docs/search.md, "Is the search better than random?"). These helpers draw
uniformly random architectures of a space, optionally keeping only those whose predicted cost is
within ``target·(1 ± tol)``.
"""

from __future__ import annotations

import random
from typing import Any

MAX_DRAWS = 2_000_000


def uniform_random(space: Any, n: int, seed: int = 0) -> list[list[str]]:
    """``n`` architectures (repeats possible), every layer's candidate drawn uniformly."""
    rng = random.Random(seed)
    return [[rng.choice(layer.candidates) for layer in space.layers()] for _ in range(n)]


def matched_random(
    costs: Any, space: Any, target: float, n: int, tol: float = 0.05, seed: int = 0, exclude: set[tuple[str, ...]] | None = None
) -> list[list[str]]:
    """Up to ``n`` distinct uniformly random architectures whose predicted cost (``costs.arch_cost``) is within ±tol of ``target``.

    Drawn uniformly and then filtered (not steered towards the target), so they are a fair sample
    of what random search at that cost gives. Fewer than ``n`` come back only when the window is
    nearly empty after ``MAX_DRAWS`` draws.
    """
    rng = random.Random(seed)
    layers = space.layers()
    skip = set(exclude or ())
    out: dict[tuple[str, ...], None] = {}
    for _ in range(MAX_DRAWS):
        choices = tuple(rng.choice(layer.candidates) for layer in layers)
        if choices in skip or choices in out:
            continue
        if abs(costs.arch_cost(space, list(choices)) / target - 1) <= tol:
            out[choices] = None
            if len(out) == n:
                break
    return [list(c) for c in out]
