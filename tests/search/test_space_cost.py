"""Cost models: per-layer costs add up to what the built network counts; latency uses overhead once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from search.arch import Architecture, build
from search.app.cli import app
from search.cost import CostModel, FlopsCost, LatencyCost, ParamsCost, arch_cost
from search.lut import LatencyTable, LutError, MissingEntriesError, load_table
from search.space import get_space

CHOICES = ["ir_k3_e1_g2", "skip", "ir_k5_e6", "maxpool_k3", "ir_k3_e3", "avgpool_k3", "ir_k5_e1_g2", "skip", "ir_k3_e6"]


def test_expected_cost_pieces_match_the_built_network() -> None:
    space = get_space("fbnet-fmnist")
    arch = Architecture(space="fbnet-fmnist", choices=CHOICES)
    flops, params = FlopsCost(), ParamsCost()
    assert isinstance(flops, CostModel) and isinstance(params, CostModel)
    rows = flops.layer_costs(space)
    assert len(rows) == space.num_layers and all(len(r) == 11 for r in rows)
    from_rows = flops.fixed_cost(space) + sum(rows[i][space.layers()[i].candidates.index(c)] for i, c in enumerate(CHOICES))
    net = build(arch).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, 1, 28, 28))
    assert from_rows == pytest.approx(counter.get_total_flops() / 2 / 1e6, rel=1e-9) == pytest.approx(arch_cost(flops, arch))
    assert arch_cost(params, arch) == pytest.approx(sum(p.numel() for p in net.parameters()) / 1e6, rel=1e-9)
    skip_s1 = space.layers()[2].candidates.index("skip")
    assert rows[2][skip_s1] == 0.0  # an identity costs nothing


def _table(space_name: str, overhead: float | None) -> dict:
    keys = get_space(space_name).op_keys()
    return {
        "device": "d",
        "runtime": "onnxruntime",
        "threads": 1,
        "unit": "ms",
        "overhead_ms": overhead,
        "entries": {k: {"median_ms": 0.2 + 0.001 * i, "n": 5, "measured_at": "2025-01-01T00:00:00Z"} for i, k in enumerate(keys)},
    }


@pytest.mark.parametrize("overhead", [0.1, None])
def test_latency_cost_counts_the_overhead_once(overhead: float | None, tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps(_table("fbnet-fmnist", overhead)))
    table = load_table(tmp_path / "t.json")
    cost = LatencyCost(table)
    arch = Architecture(space="fbnet-fmnist", choices=CHOICES)
    ov = overhead or 0.0
    expected = ov + sum(table.entries[k] - ov for k in arch.op_keys())
    assert arch_cost(cost, arch) == pytest.approx(expected)
    space = get_space("fbnet-fmnist")
    rows = cost.layer_costs(space)
    assert rows[0][0] == pytest.approx(table.entries[space.layers()[0].spec(0).key] - ov)
    assert cost.fixed_cost(space) == pytest.approx(ov + sum(table.entries[s.key] - ov for s in space.fixed_specs()))


def test_missing_entries_are_listed(tmp_path: Path) -> None:
    doc = _table("fbnet-fmnist", 0.1)
    gone = [k for k in list(doc["entries"]) if k.startswith("ir_k5_e6")]
    for k in gone:
        del doc["entries"][k]
    table = LatencyTable.from_document(doc)
    with pytest.raises(MissingEntriesError) as info:
        LatencyCost(table).layer_costs(get_space("fbnet-fmnist"))
    assert sorted(info.value.keys) == sorted(gone) and all(k in str(info.value) for k in gone)

    (tmp_path / "t.json").write_text(json.dumps(doc))
    arch = Architecture(space="fbnet-fmnist", choices=CHOICES).save(tmp_path / "a.json")
    out = CliRunner().invoke(app, ["predict", str(arch), "--lut", str(tmp_path / "t.json")])
    assert out.exit_code == 1 and "operator(s) missing" in out.output
    assert "ir_k5_e6_g1_s1_o16@1x16x14x14" in out.output


def test_bad_table_files_name_the_field(tmp_path: Path) -> None:
    bad = _table("fbnet-fmnist", 0.1)
    bad["entries"]["ir_k3_e1_g1_s1_o8@1x8x28x28"]["median_ms"] = -1
    with pytest.raises(LutError, match=r"entries\['ir_k3_e1_g1_s1_o8@1x8x28x28'\]"):
        LatencyTable.from_document(bad)
    with pytest.raises(LutError, match="missing field 'threads'"):
        LatencyTable.from_document({"device": "d", "runtime": "r", "entries": {}})
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(LutError, match="not valid JSON"):
        load_table(tmp_path / "x.json")


def test_cli_spaces_keys_and_predict() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["spaces"])
    assert out.exit_code == 0 and "fbnet-fmnist" in out.output and "9^22" in out.output
    # Captured (not a terminal), the cells are whole: no "3x224x…" cut at 80 columns.
    assert "3x224x224" in out.output and "9^22 ≈ 9.85e+20" in out.output and "…" not in out.output
    keys = runner.invoke(app, ["lut", "keys", "--space", "fbnet"])
    assert keys.exit_code == 0 and len(keys.output.split()) == 111
    assert keys.output.split()[0] == "conv_k3_s2_o16@1x3x224x224"
    pred = runner.invoke(app, ["predict", "fbnet_b", "--json"])
    doc = json.loads(pred.output)
    assert doc["mmacs"] == pytest.approx(295.56, abs=0.01) and doc["name"] == "FBNet-B" and doc["latency_ms"] is None
    bad = runner.invoke(app, ["lut", "keys", "--space", "nope"])
    assert bad.exit_code == 1 and bad.output.startswith("error: space nope: name:")
