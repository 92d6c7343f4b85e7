"""A latency table fitted from whole networks (search/lut_fit.py, hwnas lut fit), on synthetic data.

The fit on HELP's measured phones (not shipped) is a figure of benchmarks/published_tables.py; here the same path
runs on a synthetic CSV in HELP's layout (tests/support/synthetic_tables.py)."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.app.cli import app
from search.cost import LatencyCost
from search.lut import load_table
from search.lut_fit import FitError, fit_additive, fit_space_table, quality, split
from search.random_search import uniform_random
from search.searcher import cost_table
from search.space import get_space
from tests.support import synthetic_tables as synthetic


def test_an_additive_truth_is_recovered_from_whole_networks() -> None:
    rng = random.Random(1)
    truth = {f"L{i}:{k}": rng.uniform(0.1, 2.0) for i in range(6) for k in range(4)}
    counts = [{f"L{i}:{rng.randrange(4)}": 1 for i in range(6)} for _ in range(200)]
    y = [0.7 + sum(truth[f] for f in row) for row in counts]
    model = fit_additive(counts, y)  # (the constant trades against one op per layer: only sums are identifiable)
    pred = model.predict(counts)
    assert max(abs(p - t) for p, t in zip(pred, y)) < 1e-6  # exact on an exactly additive device
    assert all(w >= 0 for w in model.weights) and model.constant >= 0


def test_the_fit_never_goes_negative_and_rejects_bad_timings() -> None:
    counts = [{"a": 1}, {"b": 1}, {"a": 1, "b": 1}]
    model = fit_additive(counts, [1.0, 5.0, 4.0])  # b would want a negative partner
    assert all(w >= 0 for w in model.weights)
    with pytest.raises(FitError, match="positive"):
        fit_additive(counts, [1.0, 0.0, 2.0])
    with pytest.raises(FitError, match="at least 2"):
        fit_additive(counts[:1], [1.0])
    with pytest.raises(FitError, match="holdout"):
        split(10, 1.0, 0)


def test_a_space_table_fitted_from_networks_timed_by_a_table_reproduces_that_table(tmp_path: Path) -> None:
    # Networks "timed" by an additive table are predicted by the fitted table to within float error.
    space = get_space("fbnet-fmnist")
    keys = space.op_keys()
    rng = random.Random(0)
    doc = {
        "device": "d",
        "runtime": "r",
        "threads": 1,
        "overhead_ms": 0.01,
        "entries": {k: {"median_ms": rng.uniform(0.001, 0.05)} for k in keys},
    }
    (tmp_path / "t.json").write_text(json.dumps(doc))
    costs = cost_table(LatencyCost(load_table(tmp_path / "t.json")), space)
    archs = uniform_random(space, 400, seed=3)
    y = [costs.arch_cost(space, a) for a in archs]
    table, report = fit_space_table(space, archs, y, device="fit", holdout=0.25)
    assert report.test_networks == 100 and report.mape_pct < 1e-3 and report.kendall_tau > 0.999
    fitted = cost_table(LatencyCost(table), space)
    assert all(abs(fitted.arch_cost(space, a) - costs.arch_cost(space, a)) < 1e-6 for a in uniform_random(space, 20, seed=9))


def test_a_phone_in_helps_layout_is_predicted_to_its_noise_from_whole_networks(tmp_path: Path) -> None:
    # A noisy additive phone: the fit's hold-out error must come within the noise's own (the truth's error).
    with gzip.open(synthetic.write_help_csv(tmp_path / "help.csv.gz", 1000), "rt") as fh:
        rows = list(csv.DictReader(fh))
    feats = [{f"L{i}:{r[f'L{i}']}": 1 for i in range(22)} for r in rows]
    y = [float(r["pixel2"]) for r in rows]
    train, test = split(len(rows), 0.2, 0)
    q = quality(fit_additive([feats[i] for i in train], [y[i] for i in train]), feats, y, train, test)
    constant, costs = synthetic.phone_truth()
    truth = [constant + sum(costs[i][int(rows[j][f"L{i}"])] for i in range(22)) for j in test]
    noise_pct = 100 * sum(abs(t - y[j]) / y[j] for t, j in zip(truth, test)) / len(test)
    assert q.test_networks == len(test) == 200 and q.mape_pct < 1.5 * noise_pct and q.kendall_tau > 0.8, (q, noise_pct)


def test_hwnas_lut_fit_writes_a_usable_table_and_reports_the_hold_out(tmp_path: Path) -> None:
    space = get_space("fbnet-fmnist")
    rng = random.Random(2)
    per_candidate = {c: rng.uniform(0.002, 0.03) for c in space.layers()[0].candidates}
    rows = [(a, 0.05 + sum(per_candidate[c] for c in a)) for a in uniform_random(space, 120, seed=4)]
    with open(tmp_path / "timed.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["choices", "ms"])
        w.writerows([(" ".join(a), m) for a, m in rows])
    r = CliRunner().invoke(
        app,
        [
            "lut",
            "fit",
            "--space",
            "fbnet-fmnist",
            "--networks",
            str(tmp_path / "timed.csv"),
            "--device",
            "npu",
            "-o",
            str(tmp_path / "npu.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "hold-out MAPE" in r.output and "on 24 networks" in r.output
    table = load_table(tmp_path / "npu.json")
    assert table.device == "npu" and table.overhead_ms is not None and table.overhead_ms > 0
    bad = CliRunner().invoke(
        app, ["lut", "fit", "--space", "fbnet-fmnist", "--networks", str(tmp_path / "none.csv"), "-o", str(tmp_path / "x.json")]
    )
    assert bad.exit_code == 2 and "cannot read" in bad.output
