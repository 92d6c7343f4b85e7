"""The statistics of `hwnas validate` and how a stored calibration is applied by the search's cost model."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest

from search.cost import LatencyCost, arch_cost
from search.lut import LatencyTable, TableCalibration, load_table
from search.space import get_space
from search.stats import kendall_tau
from search.validate import Fidelity, NoiseFloor, fit_linear, sample_archs


def _tau_by_definition(x: list[float], y: list[float]) -> float:
    """τ-a over all pairs (no ties in the inputs used with it)."""
    s = sum((1 if (a - b) * (c - d) > 0 else -1) for (a, c), (b, d) in itertools.combinations(zip(x, y), 2))
    return s / (len(x) * (len(x) - 1) / 2)


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    rng = random.Random(1)
    x = [rng.random() for _ in range(30)]
    y = [v + rng.gauss(0, 0.2) for v in x]
    assert kendall_tau(x, y) == pytest.approx(_tau_by_definition(x, y))
    # τ-b with ties: x has one tie -> 5 pairs untied in x; known value 4/sqrt(5*6)
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(5 * 6))
    assert math.isnan(kendall_tau([1.0], [2.0]))


def test_fidelity_and_noise_floor() -> None:
    f = Fidelity.of([1.05, 0.8, 2.0], [1.0, 1.0, 2.0])
    assert f.mape == pytest.approx((5 + 20 + 0) / 3) and f.bias == pytest.approx((5 - 20) / 3)
    assert f.within5 == pytest.approx(2 / 3) and f.within10 == pytest.approx(2 / 3)
    assert f.rmse_ms == pytest.approx(math.sqrt((0.05**2 + 0.2**2) / 3))
    # even rounds (0, 2) and odd rounds (1, 3) of two networks
    nf = NoiseFloor.of([[1.0, 1.1, 1.0, 1.1], [2.0, 2.0, 2.0, 2.0]])
    assert nf is not None and nf.rounds == 4 and nf.mape == pytest.approx(100 * (0.1 / 1.1) / 2)
    assert NoiseFloor.of([[1.0], [2.0, 2.1]]) is None


def test_fit_linear_recovers_a_line_and_falls_back_to_a_scale() -> None:
    pred = [1.0, 1.5, 2.0, 3.0]
    scale, offset = fit_linear(pred, [1.2 * p + 0.3 for p in pred])
    assert scale == pytest.approx(1.2) and offset == pytest.approx(0.3)
    scale, offset = fit_linear([2.0, 2.0, 2.0], [2.2, 2.2, 2.2])  # no spread: a pure scale
    assert scale == pytest.approx(1.1) and offset == 0.0


def test_sampling_is_uniform_distinct_and_seeded() -> None:
    space = get_space("fbnet-fmnist")
    archs = sample_archs(space, 200, seed=5)
    assert len({a.id for a in archs}) == 200 and [a.id for a in sample_archs(space, 200, seed=5)] == [a.id for a in archs]
    first = [a.choices[0] for a in archs]
    counts = [first.count(c) for c in space.layers()[0].candidates]
    assert min(counts) > 200 / len(counts) / 3  # every candidate drawn, none starved


def _table(space_name: str, calibration: TableCalibration | None) -> LatencyTable:
    space = get_space(space_name)
    keys = space.op_keys()
    entries = {k: 0.01 + (sum(k.encode()) % 50) / 1000 for k in keys}
    return LatencyTable("d", "onnxruntime", 1, entries, overhead_ms=0.003, calibration=calibration)


def test_latency_cost_applies_the_calibration_linearly(tmp_path: Path) -> None:
    cal = TableCalibration(scale=1.2, offset_ms=0.05, networks=10)
    table = _table("fbnet-fmnist", cal)
    space = get_space("fbnet-fmnist")
    arch = sample_archs(space, 1, seed=2)[0]
    raw = arch_cost(LatencyCost(table, calibrated=False), arch)
    assert arch_cost(LatencyCost(table), arch) == pytest.approx(1.2 * raw + 0.05, rel=1e-12)
    # The search's view (per-layer costs + fixed) gives the same network cost.
    cost = LatencyCost(table)
    layers = cost.layer_costs(space)
    by_layers = cost.fixed_cost(space) + sum(layers[l.index][l.candidates.index(c)] for l, c in zip(space.layers(), arch.choices))
    assert by_layers == pytest.approx(1.2 * raw + 0.05, rel=1e-12)
    # Saved and loaded with the table.
    loaded = load_table(table.save(tmp_path / "t.json"))
    assert loaded.calibration == cal


def test_table_uses_the_burst_minimum_when_the_document_has_one(tmp_path: Path) -> None:
    doc = {
        "device": "d",
        "runtime": "onnxruntime",
        "threads": 1,
        "entries": {
            "skip_s1_o16@1x16x14x14": {"median_ms": 0.5, "min_ms": 0.4, "n": 10},
            "maxpool_k3_s2_o16@1x8x28x28": {"median_ms": 0.3, "n": 10},
        },
        "calibration": {
            "scale": 0.9,
            "offset_ms": -0.01,
            "networks": 4,
            "method": "linear",
            "created_at": "2026-01-01T00:00:00Z",
        },
    }
    (tmp_path / "t.json").write_text(json.dumps(doc))
    t = load_table(tmp_path / "t.json")
    assert t.entries == {"skip_s1_o16@1x16x14x14": 0.4, "maxpool_k3_s2_o16@1x8x28x28": 0.3}
    assert t.calibration == TableCalibration(0.9, -0.01, 4, "linear")
