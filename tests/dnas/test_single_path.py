"""Issue 23's search pieces: θ held on the budget by projection, uniform and sandwich single paths."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from search.budget import project_logits
from search.search_config import SearchConfigError
from search.search_epoch import train_step
from search.search_setup import build_setup
from search.searcher import run_search
from search.space import get_space
from search.supernet import SuperNet
from tests.dnas.test_search import _config, _low_target, _ramp_table


def _expected(theta, costs, fixed):  # type: ignore[no-untyped-def]
    total = fixed
    for t, c in zip(theta, costs):
        p = np.exp(np.asarray(t) - max(t))
        total += float((p / p.sum()) @ np.asarray(c))
    return total


def test_projection_hits_the_target_and_keeps_equal_cost_networks_odds() -> None:
    rng = random.Random(1)
    costs = [[rng.uniform(0.1, 2.0) for _ in range(4)] for _ in range(5)]
    theta = [[rng.gauss(0, 2) for _ in range(4)] for _ in range(5)]
    for target in (3.0, 5.0, 7.5):
        out = project_logits(theta, costs, 0.2, target)
        assert _expected(out, costs, 0.2) == pytest.approx(target, rel=1e-6)
        # Every architecture's log-probability moves by −κ·cost + const: the shift per candidate is linear in its cost.
        shifts = [np.asarray(o) - np.asarray(t) for o, t in zip(out, theta)]
        slopes = [np.polyfit(c, s, 1)[0] for c, s in zip(costs, shifts)]
        assert max(abs(s - slopes[0]) for s in slopes) < 1e-6
        residual = max(float(np.max(np.abs(s - np.polyval(np.polyfit(c, s, 1), c)))) for c, s in zip(costs, shifts))
        assert residual < 1e-6


def test_projection_holds_the_target_after_every_theta_step(tmp_path: Path, tiny_space: Path) -> None:
    lut = _ramp_table(tiny_space, tmp_path / "t.json")
    kw = dict(cost="latency", lut=str(lut), subset=400, val_subset=100, epochs=2, mode="hard")
    target = _low_target(build_setup(_config(tmp_path / "probe", tiny_space, **kw)))
    setup = build_setup(_config(tmp_path, tiny_space, loss="target", target=target, budget="projection", **kw))
    for p in setup.model.weight_parameters():
        p.requires_grad_(False)
    moved = []
    for i in range(4):
        x, y = setup.train_set.batch(setup.theta_index[32 * i : 32 * (i + 1)])
        before = [t.detach().clone() for t in setup.model.arch_parameters()]
        train_step(setup, x, y, setup.theta_optimizer)
        assert setup.model.distribution_cost(setup.cost_tensors, setup.costs.fixed) == pytest.approx(target, rel=1e-5)
        moved.append(max(float((a - b).detach().abs().max()) for a, b in zip(setup.model.arch_parameters(), before)))
    assert max(moved) > 0  # θ does learn (from the cross-entropy alone)


def test_budget_and_paths_options_are_checked(tmp_path: Path, tiny_space: Path) -> None:
    with pytest.raises(SearchConfigError, match="projection"):
        _config(tmp_path, tiny_space, budget="projection")
    with pytest.raises(SearchConfigError, match="--mode hard"):
        _config(tmp_path, tiny_space, paths="uniform")
    with pytest.raises(SearchConfigError, match="--paths must be"):
        _config(tmp_path, tiny_space, mode="hard", paths="random")


def test_uniform_paths_ignore_theta() -> None:
    space = get_space("fbnet-fmnist")
    net = SuperNet(space, mode="hard").train()
    with torch.no_grad():
        for t in net.theta:
            t.copy_(torch.tensor([20.0] + [0.0] * (len(t) - 1)))  # θ all but certain of candidate 0
    torch.manual_seed(0)
    drawn = [net._masks()[1][0] for _ in range(660)]
    assert drawn.count(0) == 660  # drawn from θ: always candidate 0
    net.uniform_paths = True
    drawn = [net._masks()[1][0] for _ in range(660)]
    counts = [drawn.count(i) for i in range(11)]
    assert min(counts) > 30 and max(counts) < 95, counts  # 60 each on average


def test_a_sandwich_search_with_shared_weights_and_projection_runs(tmp_path: Path, tiny_space: Path) -> None:
    lut = _ramp_table(tiny_space, tmp_path / "t.json")
    kw = dict(cost="latency", lut=str(lut), subset=600, val_subset=200, epochs=2, mode="hard")
    target = _low_target(build_setup(_config(tmp_path / "probe", tiny_space, **kw)))
    result = run_search(
        _config(tmp_path, tiny_space, loss="target", target=target, budget="projection", weights="shared", paths="sandwich", **kw)
    )
    assert result.val_acc > 0.15
    last = result.history[-1]
    assert last["expected_cost"] == pytest.approx(target, rel=1e-4)
    assert math.isfinite(last["train_loss"])


def _sandwich_grads(setup, x: torch.Tensor, y: torch.Tensor, distill: bool) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """The weights' gradient of one sandwich step computed by hand: CE on the costliest path, then on the cheapest
    and a uniform one either CE (sandwich) or KL to the costliest path's predictions (distill)."""
    from torch.nn import functional as F

    model = setup.model
    params = list(model.weight_parameters())
    for p in params:
        p.grad = None
    paths = [[int(c.argmax()) for c in setup.cost_tensors], [int(c.argmin()) for c in setup.cost_tensors], None]
    teacher = None
    for path in paths:
        if path is None:
            logits = model(x)
        else:
            with model.fixed_choices([model.candidates(l)[i] for l, i in enumerate(path)]):
                logits = model(x)
        if teacher is None or not distill:
            loss = F.cross_entropy(logits, y)
            teacher = torch.softmax(logits.detach(), 1)
        else:
            loss = F.kl_div(torch.log_softmax(logits, 1), teacher, reduction="batchmean")
        (loss / 3).backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def test_distill_paths_learn_the_costliest_paths_predictions(tmp_path: Path, tiny_space: Path) -> None:
    setup = build_setup(
        _config(tmp_path, tiny_space, subset=400, val_subset=100, epochs=2, mode="hard", weights="shared", paths="distill")
    )
    x, y = setup.train_set.batch(setup.w_index[:32])
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    torch.manual_seed(5)
    train_step(setup, x, y, setup.w_optimizer)
    taken = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in setup.model.weight_parameters()]
    setup.model.load_state_dict(before)
    torch.manual_seed(5)
    distilled = _sandwich_grads(setup, x, y, distill=True)
    setup.model.load_state_dict(before)
    torch.manual_seed(5)
    labelled = _sandwich_grads(setup, x, y, distill=False)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(taken, distilled))
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(taken, labelled))  # the teacher did change them
