"""The network a budgeted search ships: the most likely architecture whose cost is inside the window."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from search.budget import BudgetError, most_likely_within, nearest_most_likely


def _brute(probs, costs, fixed, lo, hi):  # type: ignore[no-untyped-def]
    best = None
    for index in itertools.product(*(range(len(r)) for r in costs)):
        c = fixed + sum(costs[l][j] for l, j in enumerate(index))
        lp = sum(math.log(probs[l][j]) for l, j in enumerate(index))
        if lo <= c <= hi and (best is None or lp > best[0]):
            best = (lp, list(index))
    return best


def test_matches_exhaustive_search_on_random_problems() -> None:
    rng = random.Random(3)
    exact = 0
    for _ in range(150):
        n_layers, k = rng.randint(1, 4), rng.randint(2, 4)
        probs = [[rng.random() + 0.01 for _ in range(k)] for _ in range(n_layers)]
        probs = [[v / sum(row) for v in row] for row in probs]
        costs = [[rng.uniform(-0.5, 3.0) for _ in range(k)] for _ in range(n_layers)]
        fixed, lo = rng.uniform(0, 2), rng.uniform(0, 6)
        hi = lo + rng.uniform(0.05, 2.0)
        want = _brute(probs, costs, fixed, lo, hi)
        if want is None:
            with pytest.raises(BudgetError):
                most_likely_within(probs, costs, fixed, lo, hi)
            continue
        got = most_likely_within(probs, costs, fixed, lo, hi)
        assert lo <= got.cost <= hi
        assert got.log_prob <= want[0] + 1e-9
        want_cost = fixed + sum(costs[l][j] for l, j in enumerate(want[1]))
        span = hi - fixed - sum(min(r) for r in costs)
        if min(want_cost - lo, hi - want_cost) > span / 1000:  # away from the grid's rounding at the edges
            assert got.log_prob == pytest.approx(want[0], abs=1e-9)
            exact += 1
    assert exact > 50  # most problems are checked exactly, not only for feasibility


def test_the_argmax_far_over_budget_is_replaced_by_the_likeliest_network_at_the_budget() -> None:
    # Every layer slightly prefers its expensive candidate: the argmax costs 10, the budget is 5.
    probs = [[0.45, 0.55]] * 10
    costs = [[0.0, 1.0]] * 10
    got, inside = nearest_most_likely(probs, costs, 0.0, target=5.0, tolerance=0.02)
    assert inside and got.cost == pytest.approx(5.0)
    assert sorted(got.index).count(1) == 5


def test_a_window_no_architecture_reaches_is_widened_and_says_so() -> None:
    got, inside = nearest_most_likely([[0.5, 0.5]], [[1.0, 3.0]], 0.0, target=2.0, tolerance=0.02)
    assert not inside and got.cost in (1.0, 3.0)


def test_budget_logits_hold_the_target_and_favour_no_network_of_equal_cost() -> None:
    from search.budget import budget_logits

    costs = [[1.0, 2.0, 6.0, 0.0], [0.5, 3.0, 3.0], [2.0, 2.0, 4.0, 1.0]]
    fixed = 0.5
    uniform = fixed + sum(sum(r) / len(r) for r in costs)
    for target in (3.0, uniform, 9.0):
        logits = budget_logits(costs, fixed, target)
        probs = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in logits]
        expected = fixed + sum(sum(p * c for p, c in zip(pr, cr)) for pr, cr in zip(probs, costs))
        assert expected == pytest.approx(target, rel=1e-6)
        # Two networks of cost 0.5 + 7 by different routes (2 + 3 + 2 and 0 + 3 + 4) are equally likely.
        lp = [sum(math.log(probs[layer][j]) for layer, j in enumerate(index)) for index in ([1, 1, 0], [3, 1, 2])]
        assert lp[0] == pytest.approx(lp[1], abs=1e-9)
    low = budget_logits(costs, fixed, 3.0)
    assert low[0][2] < low[0][0] < low[0][3]  # below uniform's cost: dearer candidates less likely
    high = budget_logits(costs, fixed, 9.0)
    assert high[0][2] > high[0][0]  # above it: the other way
    reach = budget_logits(costs, fixed, 0.1)  # below the cheapest network: as near as it can get
    assert max(range(4), key=lambda j: reach[0][j]) == 3
