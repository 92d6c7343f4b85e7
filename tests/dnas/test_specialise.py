"""hwnas specialise: one trained super net, the most accurate child inside each device's window."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.cost import LatencyCost
from search.lut import LatencyTable
from search.searcher import cost_table, run_search
from search.space import get_space
from search.specialise import ChildScorer, specialise
from tests.dnas.test_search import _config


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_space: Path) -> Path:
    tmp = tmp_path_factory.mktemp("spec")
    return Path(
        run_search(
            _config(tmp, tiny_space, mode="hard", weights="shared", paths="uniform", subset=600, val_subset=100, epochs=1)
        ).out
    )


def _tables(space_path: Path, folder: Path) -> dict[str, Path]:
    """Two devices that disagree: ir_k3_e3 is slow on one and fast on the other."""
    space = get_space(str(space_path))
    out = {}
    for device, ms in (
        ("phone-a", {"ir_k3_e1": 1.0, "ir_k3_e3": 4.0, "skip": 0.2}),
        ("phone-b", {"ir_k3_e1": 2.0, "ir_k3_e3": 0.8, "skip": 0.3}),
    ):
        entries = {key: 0.5 for key in space.op_keys()}
        for layer in space.layers():
            for name, v in ms.items():
                entries[layer.spec(name).key] = v
        out[device] = LatencyTable(device, "onnxruntime", 1, entries, overhead_ms=0.1).save(folder / f"{device}.json")
    return out


def test_each_device_gets_the_best_child_inside_its_own_window(trained: Path, tiny_space: Path, tmp_path: Path) -> None:
    from search.lut import load_table

    scorer = ChildScorer(trained, calib_images=100, val_images=200)
    tables = {d: load_table(p) for d, p in _tables(tiny_space, tmp_path).items()}
    space = scorer.space
    costs = {d: cost_table(LatencyCost(t), space) for d, t in tables.items()}
    every = [list(c) for c in itertools.product(*scorer.candidates)]
    targets = [("phone-a", 4.0), ("phone-b", 3.0)]
    results = specialise(scorer, tables, targets, tol=0.2, population=27, generations=2)
    for r, (device, target) in zip(results, targets):
        lo, hi = target * 0.8, target * 1.2
        assert lo <= r.predicted_ms[device] <= hi
        assert set(r.predicted_ms) == {"phone-a", "phone-b"}
        inside = [c for c in every if lo <= costs[device].arch_cost(space, c) <= hi]
        assert r.supernet_acc == max(scorer.score(c) for c in inside)  # the whole window was scored
    assert results[0].choices != results[1].choices or results[0].predicted_ms != results[1].predicted_ms


def test_specialise_command(trained: Path, tiny_space: Path, tmp_path: Path) -> None:
    from search.app.cli import app

    paths = _tables(tiny_space, tmp_path)
    args = [
        "specialise",
        str(trained),
        "--lut",
        str(paths["phone-a"]),
        "--lut",
        str(paths["phone-b"]),
        "--val-images",
        "200",
        "--calib-images",
        "100",
        "--population",
        "6",
        "--generations",
        "2",
        "--tol",
        "0.2",
        "-o",
        str(tmp_path / "out"),
    ]
    res = CliRunner().invoke(app, [*args, "--target-ms", "4", "--target-ms", "3"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "specialised.json").read_text())
    assert [d["device"] for d in doc] == ["phone-a", "phone-b"]
    for d in doc:
        lo, hi = d["window_ms"]
        assert lo <= d["predicted_ms"][d["device"]] <= hi
        arch = json.loads((tmp_path / "out" / f"{d['device']}_{d['target_ms']:g}ms.json").read_text())
        assert arch["choices"] == d["choices"]
    bad = CliRunner().invoke(app, [*args, "--target-ms", "4", "--target-ms", "3", "--target-ms", "2"])
    assert bad.exit_code == 2 and "one per device" in bad.output
    i = args.index(str(paths["phone-b"]))
    one = args[: i - 1] + args[i + 1 :]  # only phone-a's table: several targets for one device
    res = CliRunner().invoke(app, [*one, "--target-ms", "4", "--target-ms", "3"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "specialised.json").read_text())
    assert [(d["device"], d["target_ms"]) for d in doc] == [("phone-a", 4.0), ("phone-a", 3.0)]
    empty = CliRunner().invoke(app, [*args, "--target-ms", "0.01"])
    assert empty.exit_code == 1 and "no network" in empty.output
