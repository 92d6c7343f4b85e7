"""The demo's report and plots from a made-up result (no server, no training): the equal-latency comparison and θ colours."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from search.arch import Architecture
from search.app.demo_model import DemoConfig, DemoResult, NetworkResult
from search.app.demo_report import write_report
from search.app.plots import plot_accuracy_latency, plot_theta_heatmap
from search.space import get_space

SPACE = get_space("fbnet-fmnist")
CANDS = [list(layer.candidates) for layer in SPACE.layers()]


def _net(name: str, role: str, choices: list[str], acc: float | None, predicted: float, measured: float | None) -> NetworkResult:
    arch = Architecture(space="fbnet-fmnist", choices=choices, name=name)
    return NetworkResult(
        name=name,
        arch=arch,
        predicted_ms=predicted,
        mmacs=1.5,
        mparams=0.05,
        role=role,
        measured_ms=measured,
        accuracy=acc,
        train_s=10.0,
    )


def _theta(epochs: int = 3, spread: float = 0.004) -> dict:
    """A θ that barely moved: every layer within ±spread of uniform."""
    rng = np.random.default_rng(0)
    history = []
    for e in range(epochs):
        probs = []
        for names in CANDS:
            k = len(names)
            p = np.full(k, 1.0 / k) + (rng.uniform(-spread, spread, k) if e else 0.0)
            probs.append((p / p.sum()).round(6).tolist())
        history.append({"epoch": e + 1, "phase": "warmup" if e == 0 else "search", "probabilities": probs})
    return {"space": "fbnet-fmnist", "mode": "hard", "cost": "latency", "unit": "ms", "candidates": CANDS, "epochs": history}


def _result(tmp_path: Path, matched_accs: list[float]) -> DemoResult:
    (tmp_path / "search").mkdir(parents=True)
    theta = _theta()
    (tmp_path / "search" / "theta.json").write_text(json.dumps(theta))
    found = _net("found", "found", [c[1] for c in CANDS], 0.8612, 0.0850, 0.0841)
    matched = [
        _net(f"random-{i + 1}", "matched", [c[(i + 2) % len(c)] for c in CANDS], acc, 0.0850 * (1 + 0.01 * i), 0.0830 + 0.001 * i)
        for i, acc in enumerate(matched_accs)
    ]
    baseline = _net("baseline", "baseline", ["ir_k3_e6"] * len(CANDS), 0.8864, 0.1700, 0.1663)
    cfg = DemoConfig.preset(True, out=tmp_path)
    return DemoResult(
        config=cfg,
        server="http://127.0.0.1:1",
        table_entries=102,
        table_overhead_ms=0.01,
        search_s=42.0,
        search_epochs=3,
        supernet_val_acc=0.5,
        target_ms=0.0850,
        found=found,
        baseline=baseline,
        matched=matched,
        theta_history=theta["epochs"],
        candidates=CANDS,
        theta_entropy=0.99,
        argmax=[c[0] for c in CANDS],
        argmax_ms=0.12,
        search_warnings=["θ barely moved: test"],
    )


def test_equal_latency_numbers(tmp_path: Path) -> None:
    eq = _result(tmp_path, [0.84, 0.87, 0.85]).equal_latency()
    assert eq is not None and eq["n"] == 3
    assert eq["random_mean_acc"] == pytest.approx(0.8533333)
    assert eq["random_min_acc"] == 0.84 and eq["random_max_acc"] == 0.87
    assert eq["gain_pts"] == pytest.approx(100 * (0.8612 - (0.84 + 0.87 + 0.85) / 3))
    assert eq["beats"] == 2


def test_the_report_says_predictions_are_calibrated_and_on_what(tmp_path: Path) -> None:
    result = _result(tmp_path, [0.84])
    report = write_report(result, tmp_path, {"phases": {}, "total_s": 1.0}).read_text()
    assert "calibration" not in report
    result.table_calibration = {"scale": 0.812, "offset_ms": 0.0031, "networks": 8, "mape_before": 17.4, "mape_after": 3.2}
    report = write_report(result, tmp_path, {"phases": {}, "total_s": 1.0}).read_text()
    assert (
        "fitted on 8 other random networks measured whole right after the operators: measured ≈ 0.812 × table sum "
        "+ 0.0031 ms (on those networks the error fell from 17.4% to 3.2%)"
    ) in report
    assert result.to_dict()["table_calibration"]["networks"] == 8


def test_a_found_network_nobody_beats_on_both_counts_is_not_called_dominated(tmp_path: Path) -> None:
    report = write_report(_result(tmp_path, [0.84, 0.85]), tmp_path, {"phases": {}, "total_s": 1.0}).read_text()
    assert "dominated" not in report


def test_every_plot_colours_a_role_the_same(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    from search.app.plots import ROLE_STYLE, plot_predicted_vs_measured

    # The found network alone, large: its pixels carry the found role's red, as in the accuracy/latency plot.
    assert ROLE_STYLE["found"]["c"] == "red"
    path = plot_predicted_vs_measured(
        [
            {"predicted": 1.0, "measured": 1.0, "group": "found", "role": "found"},
            {"predicted": 2.0, "measured": 2.1, "group": "random", "role": "matched"},
        ],
        tmp_path / "fid.png",
    )
    img = (mpimg.imread(path)[..., :3] * 255).astype(int)
    red = (img[..., 0] > 200) & (img[..., 1] < 90) & (img[..., 2] < 90)
    orange = (img[..., 0] > 200) & (abs(img[..., 1] - 127) < 30) & (img[..., 2] < 60)
    assert red.sum() > 20 and orange.sum() > 20


def test_no_matched_network_means_no_comparison(tmp_path: Path) -> None:
    result = _result(tmp_path, [])
    assert result.equal_latency() is None
    report = write_report(result, tmp_path, {"phases": {}, "total_s": 1.0}).read_text()
    assert "nothing to compare it with at equal latency" in report
    assert result.to_dict()["equal_latency"] is None


def test_report_states_the_gain_with_its_caveat(tmp_path: Path) -> None:
    result = _result(tmp_path, [0.84, 0.87, 0.85])
    report = write_report(result, tmp_path, {"phases": {"search": {"wall_s": 1.0, "cpu_s": 1.0}}, "total_s": 2.0}).read_text()
    eq = result.equal_latency()
    assert "## At equal latency: found vs random" in report
    m = re.search(
        r"\*\*Gain at equal latency: ([+-]\d+\.\d\d) accuracy points\*\* — the found network (\d+\.\d\d)%, "
        r"the random networks (\d+\.\d\d)% on average \(min–max (\d+\.\d\d)%–(\d+\.\d\d)%\)",
        report,
    )
    assert m, report
    assert float(m[1]) == pytest.approx(eq["gain_pts"], abs=0.005)
    assert float(m[2]) == pytest.approx(86.12) and float(m[3]) == pytest.approx(85.33, abs=0.005)
    assert (float(m[4]), float(m[5])) == (84.0, 87.0)
    assert "beats 2 of them" in report
    # random-2 is measured faster and scored more accurate: the report says the found network is dominated.
    assert "**The found network is dominated:** 1 of the 3 random networks (random-2)" in report
    assert "illustration, not as evidence" in report and "search_quality.py" in report
    # The baseline row says how far from equal latency it is.
    assert "baseline (every layer `ir_k3_e6`), 2.0× the found network's latency" in report
    for plot in ("theta_heatmap.png", "equal_latency.png", "predicted_vs_measured.png"):
        assert f"plots/{plot}" in report
        assert (tmp_path / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "warning from the search: θ barely moved" in report
    assert "argmax of θ" in report


def _colours(path: Path) -> int:
    import matplotlib.image as mpimg

    img = mpimg.imread(path)[..., :3]
    return len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))


def test_theta_heatmap_colours_fit_a_near_uniform_theta(tmp_path: Path) -> None:
    theta = _theta(spread=0.004)
    layer = plot_theta_heatmap(theta, tmp_path / "layer.png", scale="layer", chosen=[c[0] for c in CANDS])
    fixed = tmp_path / "fixed.png"
    # What the old fixed scale (0 to ≥ 0.5) made of it: one flat colour per panel.
    flat = {
        **theta,
        "epochs": [
            *theta["epochs"],
            {"epoch": 4, "phase": "search", "probabilities": [[1.0] + [0.0] * (len(c) - 1) for c in CANDS]},
        ],
    }
    plot_theta_heatmap(flat, fixed, scale="global")
    assert _colours(layer) > _colours(fixed) + 50
    plot_theta_heatmap(theta, tmp_path / "global.png", scale="global")
    assert _colours(tmp_path / "global.png") > _colours(fixed)
    with pytest.raises(ValueError, match="scale"):
        plot_theta_heatmap(theta, tmp_path / "x.png", scale="bogus")


def test_theta_heatmap_of_a_theta_that_never_moved(tmp_path: Path) -> None:
    theta = _theta(spread=0.0)
    assert plot_theta_heatmap(theta, tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_accuracy_latency_plot(tmp_path: Path) -> None:
    nets = [{"role": "matched", "measured_ms": 0.08 + 0.001 * i, "acc": 0.84 + 0.01 * i} for i in range(3)]
    nets += [
        {"role": "found", "measured_ms": 0.081, "acc": 0.86},
        {"role": "baseline", "measured_ms": 0.17, "acc": 0.88},
        {"role": "matched", "measured_ms": None, "acc": 0.5},
    ]
    path = plot_accuracy_latency(nets, tmp_path / "a.png", target_ms=0.08, labels={"baseline": "baseline, 2.1×"})
    assert path.read_bytes()[:4] == b"\x89PNG"


# ---- the found network on the shipped ground truth ------------------------------------------------------
def _window_net(role: str = "window"):
    from search.ground_truth import GroundTruth

    gt = GroundTruth.load()
    return gt, next(n for n in gt.networks if n.window == "b35" and n.role == role and "0" in n.seeds)


def test_full_demo_places_the_found_network_and_says_its_percentile(tmp_path: Path) -> None:
    from search.app.demo_ground_truth import place

    gt, net = _window_net()
    result = _result(tmp_path, [0.84])
    result.config = DemoConfig.preset(False, out=tmp_path)
    dist = [n.seeds["0"]["test"] for n in gt.networks if n.window == "b35" and n.role == "window" and "0" in n.seeds]
    result.found = _net("found", "found", net.choices, max(dist) + 0.001, 0.066, 0.066)
    result.placement = place(result.found, result.matched, result.config)
    p = result.placement
    assert p.placed and p.percentile == 100.0 and len(p.distribution) == len(dist)
    report = write_report(result, tmp_path, {"phases": {}, "total_s": 1.0}).read_text()
    assert "## Among what this latency allows" in report
    assert f"better than **100%** of the {len(dist)} networks" in report and "top fifth" in report
    assert (tmp_path / "plots" / "ground_truth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.to_dict()["ground_truth"]["percentile"] == 100.0
    # Below the window's most-MACs network and below the median: the report says the search did not win.
    result.found = _net("found", "found", net.choices, min(dist) - 0.001, 0.066, 0.066)
    result.placement = place(result.found, result.matched, result.config)
    report = write_report(result, tmp_path, {"phases": {}, "total_s": 1.0}).read_text()
    assert result.placement.percentile == 0.0
    assert "did worse than a typical network" in report and "the search does not beat it" in report


def test_a_quick_demo_or_a_network_outside_the_windows_is_not_placed(tmp_path: Path) -> None:
    from search.app.demo_ground_truth import place

    _, net = _window_net()
    result = _result(tmp_path, [0.84])  # the quick preset: another recipe
    result.found = _net("found", "found", net.choices, 0.85, 0.066, 0.066)
    p = place(result.found, result.matched, result.config)
    assert not p.placed and "another recipe" in p.reason and "epochs 2 (ground truth 4)" in p.reason
    result.placement = p
    assert "Not placed on the ground truth" in write_report(result, tmp_path, {"phases": {}, "total_s": 1.0}).read_text()
    full = DemoConfig.preset(False, out=tmp_path)
    base = _net("found", "found", ["ir_k3_e6"] * len(CANDS), 0.88, 0.17, 0.17)
    outside = place(base, [], full)
    assert not outside.placed and "outside its windows" in outside.reason


def test_the_report_and_summary_say_the_runtime(tmp_path: Path) -> None:
    result = _result(tmp_path, [0.84])
    result.config.runtime = "executorch"
    report = write_report(result, tmp_path, {"phases": {}, "total_s": 1.0}).read_text()
    assert "`host-cpu` (ExecuTorch with the XNNPACK delegate, 1 thread)" in report
    assert "ONNX Runtime" not in report
    assert result.to_dict()["runtime"] == "executorch" and result.config.to_dict()["runtime"] == "executorch"
