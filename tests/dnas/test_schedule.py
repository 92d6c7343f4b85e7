"""Schedules that work at any length: warm-up, τ per step, θ's step size, split sizes, an unmoved θ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.loss import COLLAPSE_FLOOR, default_cost_scale
from search.mixed import normalised_entropy
from search.search_config import SearchConfig, SearchConfigError
from search.search_epoch import entropy_term
from search.searcher import run_search


@pytest.mark.parametrize("epochs,warmup", [(1, 0), (2, 1), (4, 1), (10, 1), (30, 3), (90, 9)])
def test_warmup_is_a_share_of_the_epochs_but_at_least_one(epochs: int, warmup: int) -> None:
    assert SearchConfig.from_flat(out="-", epochs=epochs).schedule.num_warmup_epochs == warmup


@pytest.mark.parametrize(
    "images,batch,steps,warmup",
    [(2000, 64, 100, 4), (2000, 64, 31, 1), (2000, 64, 32, 2), (10000, 128, 500, 7), (640, 64, 10_000, 10), (2000, 64, 0, 0)],
)
def test_a_warmup_in_steps_becomes_whole_epochs_rounded_up(images: int, batch: int, steps: int, warmup: int) -> None:
    cfg = SearchConfig.from_flat(out="-", epochs=10, batch_size=batch, warmup_steps=steps)
    cfg.schedule.resolve_warmup(images)  # 2,000 images at 64: 31 steps an epoch
    assert cfg.schedule.num_warmup_epochs == warmup  # capped at --epochs (10)


def test_a_search_warms_up_for_the_steps_asked_whatever_its_subset(tmp_path: Path, tiny_space: Path) -> None:
    cfg = SearchConfig.from_flat(
        out=str(tmp_path / "s"),
        space=str(tiny_space),
        subset=400,
        batch_size=32,
        epochs=3,
        warmup_steps=15,
        progress=False,
        plots=False,
    )
    history = run_search(cfg).history  # 320 weight images: 10 steps an epoch, so 2 warm-up epochs
    assert [e["phase"] for e in history] == ["warmup", "warmup", "search"]
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    assert saved["schedule"]["warmup_steps"] == 15 and saved["schedule"]["warmup_epochs"] == 2


@pytest.mark.parametrize("epochs", [2, 4, 10, 90])
def test_tau_reaches_tau_end_at_the_last_step_whatever_the_length(epochs: int) -> None:
    cfg = SearchConfig.from_flat(out="-", epochs=epochs, tau0=5.0, tau_end=0.5)
    assert cfg.schedule.tau(0) == pytest.approx(5.0)
    assert cfg.schedule.tau(epochs) == pytest.approx(0.5)
    assert cfg.schedule.tau(epochs / 2) == pytest.approx((5.0 * 0.5) ** 0.5)  # geometric halfway
    assert cfg.schedule.tau(0.5) < cfg.schedule.tau(0.25)  # it moves inside an epoch


def test_the_papers_epoch_schedule_is_kept_as_an_option() -> None:
    cfg = SearchConfig.from_flat(out="-", epochs=90, tau_schedule="epoch")
    assert cfg.schedule.tau(10.7) == pytest.approx(5.0 * 2.718281828 ** (-0.045 * 10), rel=1e-6)


def test_theta_lr_is_fbnets_for_long_searches_and_larger_for_short_ones() -> None:
    long = SearchConfig.from_flat(out="-", epochs=90, batch_size=128)
    assert long.schedule.resolved_theta_lr(12000) == 0.01  # 93 θ batches × 81 epochs
    short = SearchConfig.from_flat(out="-", epochs=4, batch_size=64)
    assert short.schedule.resolved_theta_lr(1280) == pytest.approx(8.0 / (20 * 3))
    tiny = SearchConfig.from_flat(out="-", epochs=2, batch_size=64)
    assert tiny.schedule.resolved_theta_lr(640) == pytest.approx(0.2)  # 8 / 10 steps, capped
    assert SearchConfig.from_flat(out="-", theta_lr=0.3).schedule.resolved_theta_lr(1280) == 0.3


def test_a_theta_split_smaller_than_one_batch_is_an_error_that_names_the_fix(tmp_path: Path, tiny_space: Path) -> None:
    cfg = SearchConfig.from_flat(
        out=str(tmp_path / "s"), space=str(tiny_space), subset=500, epochs=2, progress=False, plots=False
    )
    with pytest.raises(SearchConfigError, match=r"θ split has 100 images.*--subset 640"):
        run_search(cfg)


def test_a_search_whose_theta_did_not_move_warns(tmp_path: Path, tiny_space: Path) -> None:
    cfg = SearchConfig.from_flat(
        out=str(tmp_path / "s"),
        space=str(tiny_space),
        subset=400,
        batch_size=32,
        epochs=2,
        theta_lr=1e-6,
        val_subset=100,
        progress=False,
        plots=False,
    )
    result = run_search(cfg)
    assert result.theta_entropy > 0.99
    assert any("θ barely moved" in w for w in result.warnings)
    moved = run_search(SearchConfig.from_flat(**{**cfg.flat(), "out": str(tmp_path / "m"), "theta_lr": 0.5}))
    assert not any("θ barely moved" in w for w in moved.warnings), moved.theta_entropy


def test_normalised_entropy_is_one_when_uniform_and_zero_when_decided() -> None:
    assert normalised_entropy([[0.25] * 4, [0.5, 0.5]]) == pytest.approx(1.0)
    assert normalised_entropy([[1.0, 0.0, 0.0]]) == pytest.approx(0.0)


@pytest.mark.parametrize("ratio", [0.02, 0.1, 0.5])
def test_cost_scale_keeps_collapse_from_paying_more_than_a_fifth(ratio: float) -> None:
    import math

    uniform = 3.7
    scale = default_cost_scale(uniform, ratio * uniform)
    assert scale * uniform >= 20.0 - 1e-9
    multiplier = (math.log(scale * ratio * uniform) / math.log(scale * uniform)) ** 0.6
    assert multiplier >= COLLAPSE_FLOOR - 1e-9


def test_a_super_net_that_learned_nothing_warns_that_theta_followed_the_cost(tmp_path: Path, tiny_space: Path) -> None:
    cfg = SearchConfig.from_flat(
        out=str(tmp_path / "s"),
        space=str(tiny_space),
        subset=1000,
        batch_size=32,
        epochs=3,
        w_lr=1e-7,
        val_subset=100,
        progress=False,
        plots=False,
    )
    frozen = run_search(cfg)
    assert frozen.history[-1]["train_acc"] < 0.2
    assert any("super net barely learned" in w for w in frozen.warnings), frozen.warnings
    learned = run_search(SearchConfig.from_flat(**{**cfg.flat(), "out": str(tmp_path / "l"), "w_lr": 0.1}))
    assert learned.history[-1]["train_acc"] >= 0.2
    assert not any("super net barely learned" in w for w in learned.warnings)


def test_the_decision_term_ramps_from_zero_to_theta_decide() -> None:
    cfg = SearchConfig.from_flat(out="-", theta_decide=4.0)
    assert cfg.schedule.decide_weight(0.0) == 0.0
    assert cfg.schedule.decide_weight(0.5) == pytest.approx(2.0)
    assert cfg.schedule.decide_weight(1.0) == pytest.approx(4.0)
    assert cfg.schedule.decide_weight(1.7) == pytest.approx(4.0)  # never past its weight
    with pytest.raises(SearchConfigError, match="--theta-decide"):
        SearchConfig.from_flat(out="-", theta_decide=-1.0)


def test_entropy_term_is_the_normalised_entropy_and_pulls_theta_apart() -> None:
    import torch

    class Net:
        theta = [torch.nn.Parameter(torch.tensor([0.3, 0.0, -0.2])), torch.nn.Parameter(torch.zeros(4))]

        def arch_parameters(self):
            return self.theta

    net = Net()
    h = entropy_term(net)
    expected = normalised_entropy([torch.softmax(t.detach(), -1).tolist() for t in net.theta])
    assert float(h.detach()) == pytest.approx(expected, rel=1e-6)
    h.backward()
    g = net.theta[0].grad
    # descending the entropy raises the leading candidate and lowers the last one
    assert g[0] < 0 < g[2]


def test_the_decision_term_makes_a_short_search_decide(tmp_path: Path, tiny_space: Path) -> None:
    cfg = SearchConfig.from_flat(
        out=str(tmp_path / "off"),
        space=str(tiny_space),
        subset=640,
        batch_size=32,
        epochs=3,
        theta_decide=0.0,
        val_subset=100,
        progress=False,
        plots=False,
    )
    off = run_search(cfg)
    on = run_search(SearchConfig.from_flat(**{**cfg.flat(), "out": str(tmp_path / "on"), "theta_decide": 10.0}))
    assert on.theta_entropy < off.theta_entropy - 0.05, (on.theta_entropy, off.theta_entropy)
