"""The search loop on real Fashion-MNIST subsets: learning, cost pressure on θ, exact resume, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from search.lut import LatencyTable
from search.app.plots import plot_search
from search.search_config import SearchConfig, SearchConfigError
from search.search_epoch import train_step
from search.search_setup import build_setup
from search.searcher import run_search
from search.space import get_space


def _config(tmp_path: Path, space: Path, **kw) -> SearchConfig:
    base = dict(
        out=str(tmp_path / "run"),
        space=str(space),
        subset=2000,
        val_subset=1000,
        epochs=1,
        batch_size=32,
        progress=False,
        plots=False,
    )
    base.update(kw)
    return SearchConfig.from_flat(**base)


def test_one_epoch_search_beats_chance(tmp_path: Path, tiny_space: Path) -> None:
    result = run_search(_config(tmp_path, tiny_space))
    assert result.val_acc > 0.3  # 10 classes: chance is 0.1
    entry = result.history[0]
    assert entry["phase"] == "search" and entry["theta_acc"] is not None  # 10% of 1 epoch: no warm-up
    out = Path(result.out)
    theta = json.loads((out / "theta.json").read_text())
    assert theta["candidates"] == [["ir_k3_e1", "ir_k3_e3", "skip"]] * 3
    assert len(theta["epochs"]) == 1 and len(theta["epochs"][0]["probabilities"]) == 3
    assert (out / "checkpoint.pt").is_file() and (out / "argmax.json").is_file()
    argmax = json.loads((out / "argmax.json").read_text())
    assert argmax["choices"] == result.argmax and argmax["meta"]["predicted"]["flops"] == pytest.approx(result.argmax_cost)


def _slow_table(space_path: Path, slow: str, path: Path) -> Path:
    """A latency table where candidate ``slow`` is 20× slower than the others in every layer."""
    space = get_space(str(space_path))
    entries = {key: 1.0 for key in space.op_keys()}
    for layer in space.layers():
        entries[layer.spec(slow).key] = 20.0
    return LatencyTable("test-phone", "onnxruntime", 1, entries, overhead_ms=0.1).save(path)


@pytest.mark.parametrize(
    "loss,extra,slow_name",
    [("fbnet", {"alpha": 5.0}, "ir_k3_e3"), ("fbnet", {"alpha": 5.0}, "ir_k3_e1"), ("additive", {"lam": 5.0}, "ir_k3_e3")],
)
def test_theta_moves_away_from_a_20x_slower_candidate(
    tmp_path: Path, tiny_space: Path, loss: str, extra: dict, slow_name: str
) -> None:
    lut = _slow_table(tiny_space, slow_name, tmp_path / "lut.json")
    cfg = _config(tmp_path, tiny_space, cost="latency", lut=str(lut), subset=400, loss=loss, **extra)
    setup = build_setup(cfg)
    model = setup.model
    slow = [layer.candidates.index(slow_name) for layer in setup.space.layers()]
    for p in model.weight_parameters():
        p.requires_grad_(False)  # a θ step, as in the search's θ phase
    x, y = setup.train_set.batch(setup.theta_index[:32])
    for _ in range(5):
        train_step(setup, x, y, setup.theta_optimizer)
    for layer, probs in enumerate(model.probabilities()):
        assert int(torch.argmin(probs)) == slow[layer], f"layer {layer}: {probs.tolist()}"
        assert float(probs[slow[layer]]) < 1 / 3


def test_resume_after_interruption_gives_the_same_theta(tmp_path: Path, tiny_space: Path) -> None:
    kw = dict(subset=600, val_subset=200, epochs=3, warmup_epochs=1, seed=7)
    straight = run_search(_config(tmp_path / "a", tiny_space, **kw))

    class Interrupted(Exception):
        pass

    def stop_after_second(epoch: int, entry: dict) -> None:
        if epoch == 1:
            raise Interrupted

    cfg = _config(tmp_path / "b", tiny_space, **kw)
    with pytest.raises(Interrupted):
        run_search(cfg, on_epoch_end=stop_after_second)
    with pytest.raises(SearchConfigError, match="--resume"):
        run_search(cfg)  # the folder holds a search: refuse to overwrite it
    resumed = run_search(_config(tmp_path / "b", tiny_space, resume=True, **kw))

    assert [e["theta"] for e in resumed.history] == [e["theta"] for e in straight.history]
    assert [e["val_acc"] for e in resumed.history] == [e["val_acc"] for e in straight.history]
    a = torch.load(Path(straight.out) / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(Path(resumed.out) / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Warm-up epoch: θ untouched; afterwards it moves.
    assert straight.history[0]["phase"] == "warmup" and straight.history[0]["theta"] == [[0.0] * 3] * 3
    assert straight.history[-1]["theta"] != straight.history[0]["theta"]


def test_resume_refuses_a_different_search(tmp_path: Path, tiny_space: Path) -> None:
    run_search(_config(tmp_path, tiny_space, subset=200, val_subset=100))
    with pytest.raises(SearchConfigError, match="mode"):
        run_search(_config(tmp_path, tiny_space, subset=200, val_subset=100, mode="hard", resume=True))


def test_hard_mode_search_runs_and_moves_theta(tmp_path: Path, tiny_space: Path) -> None:
    result = run_search(
        _config(tmp_path, tiny_space, mode="hard", subset=800, val_subset=200, epochs=2), on_finish=plot_search
    )  # the app draws the plots through the hook
    assert any(v != 0.0 for row in result.history[-1]["theta"] for v in row)
    assert result.history[1]["tau"] == pytest.approx(0.5, rel=0.05)  # τ_end, reached at the last step
    plots = sorted(p.name for p in (Path(result.out) / "plots").iterdir())
    assert plots == ["cost_accuracy.png", "theta_final.png", "theta_heatmap.png"]


def test_target_loss_needs_a_budget(tmp_path: Path, tiny_space: Path) -> None:
    with pytest.raises(SearchConfigError, match="target"):
        _config(tmp_path, tiny_space, loss="target")
    with pytest.raises(SearchConfigError, match="--server"):
        _config(tmp_path, tiny_space, cost="latency")


def _ramp_table(space_path: Path, path: Path) -> Path:
    """Every layer's candidates at 2 ms (ir_k3_e1), 5 ms (ir_k3_e3) and 0.2 ms (skip); the rest 1 ms."""
    space = get_space(str(space_path))
    entries = {key: 1.0 for key in space.op_keys()}
    for layer in space.layers():
        for name, ms in (("ir_k3_e1", 2.0), ("ir_k3_e3", 5.0), ("skip", 0.2)):
            entries[layer.spec(name).key] = ms
    return LatencyTable("test-phone", "onnxruntime", 1, entries, overhead_ms=0.1).save(path)


def _low_target(setup) -> float:  # type: ignore[no-untyped-def]
    """40% of the way from the cheapest network's cost to uniform θ's."""
    costs = setup.costs
    uniform = costs.fixed + sum(sum(row) / len(row) for row in costs.layer_costs)
    return costs.min_cost() + 0.4 * (uniform - costs.min_cost())


@pytest.mark.parametrize("start", [True, False])
def test_target_search_starts_theta_at_the_budget(tmp_path: Path, tiny_space: Path, start: bool) -> None:
    """θ's first step starts from the even distribution at the target; θ's learning rate is ~0, so it stays there."""
    lut = _ramp_table(tiny_space, tmp_path / "lut.json")
    kw = dict(cost="latency", lut=str(lut), subset=400, val_subset=100, epochs=2, warmup_epochs=1, theta_lr=1e-9)
    probe = build_setup(_config(tmp_path / "probe", tiny_space, **kw))
    target = _low_target(probe)
    uniform = probe.model.distribution_cost(probe.cost_tensors, probe.costs.fixed)
    result = run_search(_config(tmp_path, tiny_space, loss="target", target=target, target_start=start, **kw))
    warm, searched = result.history
    assert warm["expected_cost"] == pytest.approx(uniform, rel=1e-6)  # warm-up under uniform θ
    if start:
        assert searched["expected_cost"] == pytest.approx(target, rel=0.01)
    else:
        assert searched["expected_cost"] == pytest.approx(uniform, rel=0.01) and uniform > 1.3 * target


def test_target_loss_holds_the_distributions_cost_not_the_relaxed_samples(tmp_path: Path, tiny_space: Path) -> None:
    """At a high τ the Gumbel-softmax sample is nearly uniform whatever θ is; the target term must read softmax θ."""
    from search.search_epoch import start_at_budget

    lut = _ramp_table(tiny_space, tmp_path / "lut.json")
    kw = dict(cost="latency", lut=str(lut), subset=400)
    target = _low_target(build_setup(_config(tmp_path / "probe", tiny_space, **kw)))
    setup = build_setup(_config(tmp_path, tiny_space, loss="target", target=target, **kw))
    start_at_budget(setup)
    setup.model.temperature = 5.0
    for p in setup.model.weight_parameters():
        p.requires_grad_(False)
    x, y = setup.train_set.batch(setup.theta_index[:32])
    dist = setup.model.distribution_cost(setup.cost_tensors, setup.costs.fixed)
    r = train_step(setup, x, y, setup.theta_optimizer)
    lam = setup.config.objective.loss_config().weight
    assert r["cost"] > 1.2 * target  # the relaxed sample's cost: far above the budget at this τ
    assert r["loss"] - r["ce"] == pytest.approx(lam * abs(dist / target - 1.0), abs=1e-4)


def test_a_shared_weight_search_runs_resumes_and_keeps_one_weight_set_per_layer(tmp_path: Path, tiny_space: Path) -> None:
    result = run_search(_config(tmp_path, tiny_space, mode="hard", weights="shared", epochs=2))
    assert result.val_acc > 0.15
    state = torch.load(Path(result.out) / "checkpoint.pt", weights_only=False)
    assert any(k.startswith("mixed.0.pw") for k in state["model"])
    assert not any(".ops." in k for k in state["model"])  # no per-candidate weights
    with pytest.raises(SearchConfigError, match=r"weights \('shared' != 'separate'\)"):
        run_search(_config(tmp_path, tiny_space, mode="hard", epochs=3, resume=True))


def test_a_folder_from_before_the_weights_option_resumes_as_separate_weights(tmp_path: Path, tiny_space: Path) -> None:
    """Checkpoints written before --weights existed hold no such option: they ran with a weight set per candidate."""
    first = run_search(_config(tmp_path, tiny_space, mode="hard", epochs=1))
    path = Path(first.out) / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    for part in state["config"].values():
        if isinstance(part, dict):
            part.pop("weights", None)
    state["config"].pop("weights", None)
    torch.save(state, path)
    resumed = run_search(_config(tmp_path, tiny_space, mode="hard", epochs=2, resume=True))
    assert len(resumed.history) == 2
    with pytest.raises(SearchConfigError, match=r"weights \('separate' != 'shared'\)"):
        run_search(_config(tmp_path, tiny_space, mode="hard", epochs=3, weights="shared", resume=True))


def test_a_falling_super_net_accuracy_is_warned_about() -> None:
    from search.search_result import accuracy_fall

    demo = [{"val_acc": 0.703}, {"val_acc": 0.487}, {"val_acc": 0.419}]  # the demo's soft search, issue 27
    warning = accuracy_fall(demo)
    assert warning is not None and "fell from 0.703 (epoch 1) to 0.419" in warning
    assert accuracy_fall([{"val_acc": 0.70}, {"val_acc": 0.65}, {"val_acc": 0.68}]) is None  # noise, not a fall
    assert accuracy_fall([{"val_acc": 0.40}, {"val_acc": 0.70}]) is None  # rising
    assert accuracy_fall([{"val_acc": 0.70}]) is None


def test_a_target_search_runs_on_a_calibration_that_prices_cheap_networks_below_zero(tmp_path: Path, tiny_space: Path) -> None:
    from search.lut import TableCalibration

    # The demo's calibrations have come out at scale 1.4, offset −0.015 ms: its cheapest networks then cost < 0 ms.
    # Only FBNet's (log LAT)^β needs LAT > 0; the target loss must run (it stopped on the FBNet unit scale before).
    table = LatencyTable.from_document(json.loads(_slow_table(tiny_space, "ir_k3_e3", tmp_path / "lut.json").read_text()))
    table.calibration = TableCalibration(scale=1.4, offset_ms=-50.0, networks=8)
    lut = table.save(tmp_path / "calibrated.json")
    setup = build_setup(_config(tmp_path, tiny_space, cost="latency", lut=str(lut), subset=400, loss="target", target=10.0))
    assert setup.costs.min_cost() < 0 and setup.cost_scale == 1.0
    with pytest.raises(SearchConfigError, match="non-positive"):  # FBNet's form still refuses it, by name
        build_setup(_config(tmp_path / "f", tiny_space, cost="latency", lut=str(lut), subset=400, loss="fbnet"))
