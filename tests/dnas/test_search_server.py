"""A search whose latency table comes over HTTP from a real profiler-server (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import DeviceInfo
from search.app.cli import app
from search.lut import MissingEntriesError
from search.search_config import SearchConfig
from search.searcher import run_search
from search.space import get_space
from tests.support.live_server import LiveServer
from tests.support.measurements import batch, result

OVERHEAD = 0.05


def _fill_lut(srv: LiveServer, device: str, space_path: Path, skip: int = 0) -> dict[str, float]:
    """Register ``device`` and POST a measurement for every key of the space (all but the last ``skip``)."""
    keys = get_space(str(space_path)).op_keys()
    keys = keys[: len(keys) - skip]
    latencies = {k: 0.2 + 0.01 * i for i, k in enumerate(keys)}
    with srv.client("agent") as c:
        c.put_device(device, DeviceInfo(manufacturer="Test", model="Phone", cpu_cores=4))
        # min = median: the table's estimator (median or burst minimum) then reads the same value
        results = [result(k, median=v, min_ms=v) for k, v in latencies.items()]
        results.append(result(OVERHEAD_KEY, median=OVERHEAD, min_ms=OVERHEAD))
        c.post_measurements(batch(device, results, runtime="onnxruntime", threads=1))
    return latencies


def test_search_pulls_the_latency_table_over_http(live_server: LiveServer, tmp_path: Path, tiny_space: Path) -> None:
    latencies = _fill_lut(live_server, "pixel-test", tiny_space)
    cache = tmp_path / "cache"
    cfg = SearchConfig.from_flat(
        out=str(tmp_path / "run"),
        space=str(tiny_space),
        cost="latency",
        server=live_server.url,
        device="pixel-test",
        runtime="onnxruntime",
        threads=1,
        cache_dir=str(cache),
        subset=300,
        val_subset=100,
        batch_size=32,
        progress=False,
        plots=False,
    )
    res = run_search(cfg)
    costs = json.loads((Path(res.out) / "costs.json").read_text())
    assert costs["unit"] == "ms" and costs["source"]["table_device"] == "pixel-test"
    space = get_space(str(tiny_space))
    for layer in space.layers():  # layer cost = entry − overhead: the overhead is counted once, in `fixed`
        want = [latencies[layer.spec(c).key] - OVERHEAD for c in layer.candidates]
        assert costs["layer_costs"][layer.index] == pytest.approx(want)
    fixed = OVERHEAD + sum(latencies[s.key] - OVERHEAD for s in space.fixed_specs())
    assert costs["fixed"] == pytest.approx(fixed)
    assert list(cache.glob("pixel-test__onnxruntime__1__*.json"))  # pulled and cached (ETag) for offline runs
    predicted = fixed + sum(latencies[l.spec(c).key] - OVERHEAD for l, c in zip(space.layers(), res.argmax))
    assert res.argmax_cost == pytest.approx(predicted) and res.unit == "ms"


def test_missing_entries_are_listed(live_server: LiveServer, tmp_path: Path, tiny_space: Path) -> None:
    _fill_lut(live_server, "half-phone", tiny_space, skip=2)
    cfg = SearchConfig.from_flat(
        out=str(tmp_path / "run"),
        space=str(tiny_space),
        cost="latency",
        server=live_server.url,
        device="half-phone",
        runtime="onnxruntime",
        threads=1,
        cache_dir=str(tmp_path / "c"),
        subset=100,
        progress=False,
        plots=False,
    )
    with pytest.raises(MissingEntriesError) as exc:
        run_search(cfg)
    assert len(exc.value.keys) == 2
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "search",
            "--space",
            str(tiny_space),
            "--server",
            live_server.url,
            "--device",
            "half-phone",
            "--runtime",
            "onnxruntime",
            "--threads",
            "1",
            "--cache-dir",
            str(tmp_path / "c"),
            "--subset",
            "100",
            "--no-create-job",
            "--no-progress",
            "--out",
            str(tmp_path / "cli"),
        ],
    )
    assert r.exit_code == 1
    assert "2 operator(s) of the space missing" in r.output and exc.value.keys[0] in r.output
    assert "Traceback" not in r.output
