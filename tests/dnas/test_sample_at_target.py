"""`hwnas sample --at-target`: candidates inside the search's target window, trained, the best chosen on held-out
training images (never the test split) and written to DIR/picked.json."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from search.arch import Architecture
from search.app.cli import app
from search.search_config import SearchConfig
from search.search_setup import build_setup
from search.searcher import run_search

runner = CliRunner()


def test_sample_at_target_trains_candidates_in_the_window_and_picks_on_held_out_images(tmp_path: Path, tiny_space: Path) -> None:
    base = dict(
        space=str(tiny_space), cost="params", subset=600, val_subset=200, epochs=2, batch_size=32, progress=False, plots=False
    )
    costs = build_setup(SearchConfig.from_flat(out=str(tmp_path / "probe"), **base)).costs
    uniform = costs.fixed + sum(sum(row) / len(row) for row in costs.layer_costs)
    target, tol = 0.8 * uniform, 0.25
    out = tmp_path / "run"
    run_search(SearchConfig.from_flat(out=str(out), loss="target", target=target, target_tolerance=tol, **base))

    r = runner.invoke(
        app,
        [
            "sample",
            str(out),
            "--at-target",
            "-k",
            "3",
            "--no-eval",
            "--train-epochs",
            "1",
            "--train-subset",
            "600",
            "--holdout",
            "200",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "picked" in r.output
    samples = json.loads((out / "samples" / "index.json").read_text())["samples"]
    found = Architecture.load(out / "found.json").choices
    assert found in [s["choices"] for s in samples] and len(samples) >= 2
    for s in samples:
        assert target * (1 - tol) <= s["predicted"]["params"] <= target * (1 + tol), s
        report = json.loads((out / "samples" / f"{s['id']}.train.json").read_text())
        assert report["evaluated_on"] == "holdout" and report["test_images"] == 200 and report["train_images"] == 400
    picked = Architecture.load(out / "picked.json")
    best = max(samples, key=lambda s: s["trained_acc"])
    assert picked.choices == best["choices"] and picked.meta["trained_acc"] == best["trained_acc"]
    # 400 images for one epoch teach this tiny space nothing: the user is told the pick means nothing.
    assert "warning: every trained sample is at chance level" in r.output and "--train-epochs" in r.output


def test_sample_at_target_needs_a_search_with_a_target(tmp_path: Path, tiny_space: Path) -> None:
    out = tmp_path / "run"
    run_search(
        SearchConfig.from_flat(
            out=str(out), space=str(tiny_space), subset=300, val_subset=100, epochs=1, batch_size=32, progress=False, plots=False
        )
    )
    r = runner.invoke(app, ["sample", str(out), "--at-target", "--no-eval"])
    assert r.exit_code == 1 and "needs a search with a target" in r.output, r.output


def test_shortlist_trains_the_found_network_and_the_best_by_super_net_accuracy(tmp_path: Path, tiny_space: Path) -> None:
    base = dict(
        space=str(tiny_space), cost="params", subset=600, val_subset=200, epochs=2, batch_size=32, progress=False, plots=False
    )
    costs = build_setup(SearchConfig.from_flat(out=str(tmp_path / "probe"), **base)).costs
    uniform = costs.fixed + sum(sum(row) / len(row) for row in costs.layer_costs)
    out = tmp_path / "run"
    run_search(SearchConfig.from_flat(out=str(out), loss="target", target=0.8 * uniform, target_tolerance=0.25, **base))
    args = ["sample", str(out), "--at-target", "-k", "4", "--val-subset", "200", "--shortlist", "1"]
    r = runner.invoke(app, [*args, "--no-eval", "--train-epochs", "1"])
    assert r.exit_code == 1 and "--shortlist" in r.output and "Traceback" not in r.output, r.output

    r = runner.invoke(app, [*args, "--train-epochs", "1", "--train-subset", "600", "--holdout", "200"])
    assert r.exit_code == 0, r.output
    samples = json.loads((out / "samples" / "index.json").read_text())["samples"]
    assert len(samples) >= 3
    found = Architecture.load(out / "found.json").choices
    best_supernet = max(samples, key=lambda s: s["supernet_acc"])
    expected = {tuple(found), tuple(best_supernet["choices"])}
    trained = {tuple(s["choices"]) for s in samples if s["shortlisted"]}
    assert trained == expected
    for s in samples:
        report = out / "samples" / f"{s['id']}.train.json"
        assert report.is_file() == (tuple(s["choices"]) in expected) == ("trained_acc" in s), s
    assert f"trained {len(expected)} of {len(samples)}" in r.output and "outside the shortlist" in r.output
    picked = Architecture.load(out / "picked.json")
    assert tuple(picked.choices) in expected and picked.meta["trained"] == len(expected)
