"""The ground truth of search quality: window sampler, max-count baseline, statistics, and the shipped data file."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.cost import CostTable, FlopsCost, LatencyCost, ParamsCost
from search.count_baseline import BaselineError, most_under
from search.ground_truth import (
    SHIPPED,
    GroundTruth,
    GroundTruthError,
    Network,
    Recipe,
    Window,
    percentile_of,
    sample_window,
    table_fingerprint,
)
from search.stats import expected_best_pick, spearman, t_interval, win_share


def _toy(layers: int, width: int, seed: int) -> tuple[CostTable, CostTable, list[list[str]]]:
    rng = random.Random(seed)
    lat = CostTable("latency", "ms", [[rng.uniform(0, 1) for _ in range(width)] for _ in range(layers)], 0.3)
    count = CostTable("flops", "MMACs", [[rng.uniform(0, 5) for _ in range(width)] for _ in range(layers)], 1.0)
    return lat, count, [[f"op{j}" for j in range(width)] for _ in range(layers)]


def _enumerate(lat: CostTable, candidates: list[list[str]]) -> dict[tuple[str, ...], float]:
    out = {}
    for idx in itertools.product(*(range(len(c)) for c in candidates)):
        out[tuple(candidates[i][j] for i, j in enumerate(idx))] = lat.fixed + sum(
            lat.layer_costs[i][j] for i, j in enumerate(idx)
        )
    return out


# ---- the window sampler ---------------------------------------------------------------------------
def test_sampler_returns_every_network_of_a_small_window_once_and_nothing_outside() -> None:
    lat, _, cands = _toy(3, 4, seed=1)
    every = _enumerate(lat, cands)
    lo, hi = 1.3, 1.7
    inside = {c for c, ms in every.items() if lo <= ms <= hi}
    assert 5 <= len(inside) < len(every)
    got = sample_window(lat, cands, lo, hi, n=len(inside) + 10, seed=3, batch=256, max_draws=200_000)
    assert len(got) == len(inside)  # no repeats, none outside: exactly the window
    assert {tuple(c) for c in got} == inside


def test_sampler_is_uniform_over_the_window() -> None:
    """Each network of the window is first-drawn equally often (chi-square over 2,400 seeds)."""
    from scipy.stats import chisquare

    lat, _, cands = _toy(3, 4, seed=1)
    every = _enumerate(lat, cands)
    inside = sorted(c for c, ms in every.items() if 1.3 <= ms <= 1.7)
    counts = dict.fromkeys(inside, 0)
    for seed in range(2400):
        (first,) = sample_window(lat, cands, 1.3, 1.7, n=1, seed=seed, batch=64)
        counts[tuple(first)] += 1
    assert chisquare(list(counts.values())).pvalue > 1e-3, counts


def test_sampler_draws_the_real_window_and_extends_the_same_draw() -> None:
    from search.space import get_space

    from search.lut import load_table
    from search.searcher import cost_table

    space = get_space("fbnet-fmnist")
    lat = cost_table(LatencyCost(load_table(SHIPPED / "fbnet-fmnist_host-cpu.table.json")), space)
    cands = [layer.candidates for layer in space.layers()]
    w = Window(0.25, 0.05, 0.25 * lat.arch_cost(space, ["ir_k3_e6"] * space.num_layers))
    ten = sample_window(lat, cands, w.lo_ms, w.hi_ms, 10, seed=250)
    twenty = sample_window(lat, cands, w.lo_ms, w.hi_ms, 20, seed=250)
    assert twenty[:10] == ten  # a larger build extends the same uniform draw
    assert len({tuple(c) for c in twenty}) == 20
    assert all(w.holds(lat.arch_cost(space, c)) for c in twenty)


# ---- the max-count baseline -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [2, 5, 9])
def test_dp_finds_the_max_count_network_of_a_small_space(seed: int) -> None:
    lat, count, cands = _toy(5, 4, seed=seed)
    every = _enumerate(lat, cands)
    value = {c: count.fixed + sum(count.layer_costs[i][cands[i].index(x)] for i, x in enumerate(c)) for c in every}
    for lo, hi in ((1.6, 1.8), (2.0, 2.3), (0.8, 3.5)):
        best = max((c for c, ms in every.items() if ms <= hi), key=lambda c: value[c])
        got = most_under(lat, count, cands, lo, hi)
        assert tuple(got.choices) == best
        assert got.count == pytest.approx(value[best])
        assert got.predicted_ms == pytest.approx(every[best])
        assert got.in_window == (lo <= every[best] <= hi)


def test_dp_refuses_a_budget_below_the_cheapest_network() -> None:
    lat, count, cands = _toy(3, 3, seed=1)
    with pytest.raises(BaselineError, match="cheapest"):
        most_under(lat, count, cands, 0.0, lat.min_cost() * 0.9)


def test_hwnas_baseline_command_on_the_shipped_table(tmp_path: Path) -> None:
    from search.app.cli import app
    from search.space import get_space

    table = SHIPPED / "fbnet-fmnist_host-cpu.table.json"
    res = CliRunner().invoke(
        app, ["baseline", "--target-ms", "0.047", "--lut", str(table), "--json", "-o", str(tmp_path / "b.json")]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["in_window"] and 0.047 * 0.95 <= doc["predicted_ms"] <= 0.047 * 1.05
    arch = json.loads((tmp_path / "b.json").read_text())
    assert arch["choices"] == doc["choices"]
    # No random network of the window has more MACs than the baseline.
    from search.lut import load_table
    from search.searcher import cost_table

    space = get_space("fbnet-fmnist")
    lat = cost_table(LatencyCost(load_table(table)), space)
    macs = cost_table(FlopsCost(), space)
    others = sample_window(lat, [l.candidates for l in space.layers()], 0.047 * 0.95, 0.047 * 1.05, 200, seed=7)
    assert max(macs.arch_cost(space, c) for c in others) <= doc["mmacs"] + 1e-9
    bad = CliRunner().invoke(app, ["baseline", "--target-ms", "0.001", "--lut", str(table)])
    assert bad.exit_code == 1 and "cheapest" in bad.output
    assert CliRunner().invoke(app, ["baseline", "--target-ms", "0.05", "--by", "flops", "--lut", str(table)]).exit_code == 2


# ---- statistics ---------------------------------------------------------------------------------------
def test_t_interval_on_known_numbers() -> None:
    ci = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445
    assert ci.mean == 3.0
    assert ci.low == pytest.approx(3 - 2.776445 * (2.5**0.5) / 5**0.5, abs=1e-5)
    assert ci.high == pytest.approx(3 + 2.776445 * (2.5**0.5) / 5**0.5, abs=1e-5)
    # The 3 per-search gains: a t-interval, not a bootstrap's flattering one.
    three = t_interval([2.12, 0.27, 2.20])
    assert three.low == pytest.approx(-1.19, abs=0.01) and three.high == pytest.approx(4.25, abs=0.01)
    one = t_interval([1.0])
    assert one.low == float("-inf") and one.high == float("inf")


def test_rank_and_share_helpers() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427, abs=1e-5)
    assert win_share([1.0, -1.0, 0.0, 2.0]) == 0.625
    assert percentile_of(0.8, [0.7, 0.8, 0.9, 0.6]) == 62.5
    with pytest.raises(GroundTruthError):
        percentile_of(0.5, [])


def test_expected_best_pick_equals_enumeration() -> None:
    rng = random.Random(4)
    val = [rng.random() for _ in range(9)]
    test = [v + rng.gauss(0, 0.3) for v in val]
    for m in (1, 3, 5):
        subsets = list(itertools.combinations(range(9), m))
        brute = sum(test[max(s, key=lambda i: val[i])] for s in subsets) / len(subsets)
        assert expected_best_pick(val, test, m) == pytest.approx(brute)
    assert expected_best_pick(val, test, 1) == pytest.approx(sum(test) / 9)
    assert expected_best_pick(val, test, 10) is None


# ---- the data file and its loader ---------------------------------------------------------------------
def _tiny(tmp_path: Path) -> Path:
    recipe = Recipe(epochs=1, train_images=100, seeds=(0, 1))
    nets = [
        Network(
            f"id{i}",
            ["skip"] * 9,
            "b25",
            "window",
            1.0 + i,
            0.1,
            0.05,
            seeds={"0": {"val": 0.5 + i / 100, "test": 0.5 + i / 100}, "1": {"val": 0.5 + i / 90, "test": 0.5 + i / 95}},
        )
        for i in range(5)
    ]
    gt = GroundTruth(recipe, "a" * 64, {"b25": Window(0.25, 0.05, 0.05)}, nets)
    return gt.save(tmp_path / "gt.json")


def test_loader_refuses_another_recipe_or_table(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    same = GroundTruth.load(path, recipe=Recipe(epochs=1, train_images=100, seeds=(0, 1)), table_sha256="a" * 64)
    assert len(same.accuracies("b25")) == 5
    with pytest.raises(GroundTruthError, match="another recipe"):
        GroundTruth.load(path, recipe=Recipe(epochs=2, train_images=100, seeds=(0, 1)))
    with pytest.raises(GroundTruthError, match="another latency table"):
        GroundTruth.load(path, table_sha256="b" * 64)
    with pytest.raises(GroundTruthError, match="no ground-truth file"):
        GroundTruth.load(tmp_path / "missing.json")


def test_percentile_and_reliability_read_every_seed(tmp_path: Path) -> None:
    gt = GroundTruth.load(_tiny(tmp_path))
    accs = gt.accuracies("b25")
    assert accs[0] == pytest.approx(0.5)
    assert gt.percentile("b25", max(accs) + 0.01) == 100.0
    assert gt.percentile("b25", min(accs) - 0.01) == 0.0
    assert gt.seed_reliability() == pytest.approx(1.0)
    gt.networks[0].seeds.pop("1")  # a network with one seed trained is not yet part of the distribution
    assert len(gt.accuracies("b25")) == 4


def test_shipped_ground_truth_matches_its_recipe_and_table() -> None:
    """Every network of the committed file lies in its window on the committed table; ids are unique."""
    from search.lut import load_table
    from search.searcher import cost_table
    from search.space import get_space

    space = get_space("fbnet-fmnist")
    lat = cost_table(LatencyCost(load_table(SHIPPED / "fbnet-fmnist_host-cpu.table.json")), space)
    gt = GroundTruth.load(recipe=Recipe(), table_sha256=table_fingerprint(lat))
    macs, params = cost_table(FlopsCost(), space), cost_table(ParamsCost(), space)
    assert set(gt.windows) >= {"b25", "b35"}
    for name, w in gt.windows.items():
        members = [n for n in gt.networks if n.window == name]
        assert len({n.id for n in members}) == len(members)
        assert sum(n.role == "window" for n in members) >= 100
        for n in members:
            assert w.holds(lat.arch_cost(space, n.choices)), (name, n.id)
            assert n.macs == pytest.approx(macs.arch_cost(space, n.choices))
            assert n.params == pytest.approx(params.arch_cost(space, n.choices))
            for r in n.seeds.values():
                assert 0.1 < r["test"] <= 1 and 0.1 < r["val"] <= 1


def test_hwnas_train_with_the_recipe_trains_exactly_what_the_ground_truth_trains(tmp_path: Path) -> None:
    """The demo trains through train_arch with Recipe.train_config: the same images, order and numbers."""
    from search.arch import Architecture
    from search.ground_truth import train_on_recipe
    from search.train import train_arch

    recipe = Recipe(epochs=2, train_images=2000, validation_images=1000)
    choices = ["skip", "ir_k3_e1", "skip", "maxpool_k3", "ir_k3_e1_g2", "skip", "skip", "ir_k3_e1", "skip"]
    gt = train_on_recipe(choices, 1, recipe)
    arch = Architecture(space="fbnet-fmnist", choices=choices)
    got = train_arch(arch, recipe.train_config(1, num_threads=1, progress=False), out_dir=tmp_path)
    assert got.accuracy == gt["test"]
    other = train_arch(arch, recipe.train_config(1, num_threads=1, progress=False, validation_images=None), out_dir=tmp_path)
    assert other.accuracy != gt["test"]  # without the split the training images differ
