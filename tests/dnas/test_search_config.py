"""The search config in parts (schedule, cost source, objective, run settings): routing, files, old runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from search.quant.searcher import QuantSearchConfig
from search.search_config import (
    COSTS,
    CostSource,
    Objective,
    RunSettings,
    Schedule,
    SearchConfig,
    SearchConfigError,
    flat_options,
)
from search.searcher import run_search


def test_flat_options_reach_their_part() -> None:
    c = SearchConfig.from_flat(out="o", epochs=3, cost="params", loss="target", target=5.0, seed=7, server="http://x")
    assert c.schedule == Schedule(epochs=3)
    assert c.cost_source == CostSource(kind="params", server="http://x")
    assert c.objective == Objective(loss="target", target=5.0)
    assert c.run == RunSettings(seed=7)
    assert c.flat()["cost"] == "params" and c.flat()["epochs"] == 3


def test_an_unknown_option_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="'epoch'"):
        SearchConfig.from_flat(out="o", epoch=3)


def test_each_part_checks_itself() -> None:
    with pytest.raises(SearchConfigError, match="--epochs"):
        Schedule(epochs=0).validate()
    with pytest.raises(SearchConfigError, match="--server URL --device NAME"):
        CostSource(kind="latency").validate(COSTS)
    CostSource(kind="latency", lut="t.json").validate(COSTS)
    with pytest.raises(SearchConfigError, match="--target"):
        Objective(loss="target").validate()
    with pytest.raises(SearchConfigError, match="--tau0"):  # the whole config checks every part
        SearchConfig.from_flat(out="o", tau0=0.0)


def test_config_json_is_in_parts_without_the_token_and_reads_back() -> None:
    c = SearchConfig.from_flat(out="o", cost="latency", server="http://s", device="d", token="secret", epochs=4)
    d = json.loads(json.dumps(c.to_dict()))
    assert set(d) == {"out", "space", "schedule", "cost_source", "objective", "run"}
    assert "token" not in d["cost_source"] and "secret" not in json.dumps(d)
    back = SearchConfig.from_dict(d)
    assert back.cost_source.token is None
    back.cost_source.token = "secret"
    assert back == c


def test_a_flat_config_json_from_before_the_split_still_reads() -> None:
    c = SearchConfig.from_flat(out="o", cost="params", epochs=4, loss="additive", lam=0.5, subset=900)
    old = {k: v for k, v in c.flat().items() if k != "token"}
    old["removed_long_ago"] = 1  # options a later version dropped are ignored
    assert SearchConfig.from_dict(old) == c
    assert flat_options(c.to_dict()) == {k: v for k, v in c.flat().items() if k != "token"}


def test_a_bits_search_keeps_its_own_defaults_when_options_are_given() -> None:
    arch, bits = SearchConfig.from_flat(out="o"), QuantSearchConfig.from_flat(out="o", theta_lr=0.1, loss="target", target=40.0)
    assert (arch.schedule.theta_decide, arch.schedule.theta_travel, arch.cost_source.kind) == (3.0, 8.0, "flops")
    assert (bits.schedule.theta_decide, bits.schedule.theta_travel, bits.cost_source.kind) == (0.0, 4.0, "size")
    assert bits.schedule.theta_lr == 0.1 and bits.objective.lam == 1.0
    assert QuantSearchConfig.from_dict(bits.to_dict()) == bits
    with pytest.raises(SearchConfigError, match="size, bops, latency"):
        QuantSearchConfig.from_flat(out="o", cost="flops")


def test_a_run_folder_from_before_the_split_resumes(tmp_path: Path, tiny_space: Path) -> None:
    kw = dict(
        out=str(tmp_path / "run"),
        space=str(tiny_space),
        subset=400,
        val_subset=100,
        epochs=2,
        batch_size=32,
        progress=False,
        plots=False,
    )
    run_search(SearchConfig.from_flat(**{**kw, "epochs": 1}))
    # Write config.json and the checkpoint's config the way searches made before the split did: flat.
    old = {k: v for k, v in SearchConfig.from_flat(**{**kw, "epochs": 1}).flat().items() if k != "token"}
    (tmp_path / "run" / "config.json").write_text(json.dumps(old))
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    torch.save({**state, "config": old}, tmp_path / "run" / "checkpoint.pt")

    resumed = run_search(SearchConfig.from_flat(**kw, resume=True))
    assert [e["epoch"] for e in resumed.history] == [1, 2]
    with pytest.raises(SearchConfigError, match=r"seed \(0 != 5\)"):
        run_search(SearchConfig.from_flat(**{**kw, "seed": 5}, resume=True))
