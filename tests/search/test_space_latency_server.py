"""Latency cost against a real profiler-server (SQLite): table over HTTP, missing entries, a job, the offline cache."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import DeviceInfo, JobClaim, MeasurementBatch, MeasurementResult
from search.arch import get_arch
from search.app.cli import app
from search.cost import LatencyCost, arch_cost, predict
from search.lut import MissingEntriesError, cache_path, fetch_table
from search.space import get_space

DEVICE = "pixel-test"
OVERHEAD = 0.05


def _ms(key: str) -> float:
    """A made-up but deterministic latency per key, so the expected sum can be computed independently."""
    return 0.1 + (sum(key.encode()) % 97) / 100.0


def _upload(srv, keys: list[str], job_id: int | None = None) -> None:  # type: ignore[no-untyped-def]
    results = [MeasurementResult(key=k, median_ms=_ms(k), iterations=50) for k in dict.fromkeys(keys)]
    results.append(MeasurementResult(key=OVERHEAD_KEY, median_ms=OVERHEAD, iterations=50))
    with srv.client("agent") as c:
        c.post_measurements(
            MeasurementBatch(
                device=DEVICE,
                runtime="onnxruntime",
                threads=1,
                agent="test-agent",
                run_id=uuid.uuid4(),
                job_id=job_id,
                results=results,
            )
        )


@pytest.fixture(scope="module")
def server(live_server):  # type: ignore[no-untyped-def]
    with live_server.client("agent") as c:
        c.put_device(DEVICE, DeviceInfo(manufacturer="Test", model="Phone", cpu_cores=8))
    keys = get_arch("fbnet_a").op_keys()
    _upload(live_server, [k for k in keys if k != keys[-3]])  # leave out the last searchable layer's operator
    return live_server


def test_prediction_is_overhead_plus_sum_of_entries_minus_overhead(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = fetch_table(server.url, DEVICE, cache_dir=tmp_path)
    assert table.overhead_ms == pytest.approx(OVERHEAD) and table.runtime == "onnxruntime" and table.threads == 1
    arch = get_arch("fbnet_a")
    keys = arch.op_keys()
    with pytest.raises(MissingEntriesError) as info:
        predict(arch, table)
    assert info.value.keys == [keys[-3]] and keys[-3] in str(info.value)

    _upload(server, [keys[-3]])
    table = fetch_table(server.url, DEVICE, cache_dir=tmp_path)
    expected = OVERHEAD + sum(_ms(k) - OVERHEAD for k in keys)  # one overhead per network, not 25
    assert predict(arch, table).latency_ms == pytest.approx(expected, rel=1e-9)
    assert arch_cost(LatencyCost(table), arch) == pytest.approx(expected, rel=1e-9)


def test_layer_costs_report_every_missing_key(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = fetch_table(server.url, DEVICE, cache_dir=tmp_path)
    space = get_space("fbnet")
    with pytest.raises(MissingEntriesError) as info:
        LatencyCost(table).layer_costs(space)
    assert set(info.value.keys) == set(space.op_keys()) - set(table.entries)
    assert len(info.value.keys) > 50 and str(len(info.value.keys)) in str(info.value)


def _agent_loop(srv, stop: threading.Event, served: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Plays the device agent through the real API: claim the job, upload its keys."""
    with srv.client("agent") as c:
        while not stop.is_set():
            claimed = c.claim_job(JobClaim(device=DEVICE, agent="test-agent", lease_s=60))
            if claimed is None:
                time.sleep(0.1)
                continue
            _upload(srv, claimed.keys, job_id=claimed.id)
            served.append(claimed.id)


def test_cli_predict_creates_a_job_for_missing_entries_and_waits(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    base = [
        "predict",
        "fbnet_c",
        "--cost",
        "latency",
        "--server",
        server.url,
        "--device",
        DEVICE,
        "--cache-dir",
        str(tmp_path),
        "--token",
        server.client_token,
    ]
    refused = runner.invoke(app, base + ["--no-create-job"])
    assert refused.exit_code == 1 and "operator(s) missing from the latency table" in refused.output
    assert "ir_cdw_k3_e6_g1_s1_o32@1x32x28x28" in refused.output and "--create-job" in refused.output

    stop, served = threading.Event(), []
    agent = threading.Thread(target=_agent_loop, args=(server, stop, served), daemon=True)
    agent.start()
    try:
        result = runner.invoke(app, base + ["--create-job", "--poll", "0.2", "--wait-timeout", "60"])
    finally:
        stop.set()
        agent.join(10)
    assert result.exit_code == 0, result.output
    assert "created profiling job" in result.output and served
    with server.client("client") as c:
        job = c.get_job(served[0])
    assert job.state.value == "done" and job.pending == 0 and job.done == job.total > 0
    expected = OVERHEAD + sum(_ms(k) - OVERHEAD for k in get_arch("fbnet_c").op_keys())
    assert f"latency  {expected:.3f} ms" in result.output
    assert "MACs     382.98 M" in result.output


def test_etag_revalidation_and_offline_cache(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = fetch_table(server.url, DEVICE, cache_dir=tmp_path)
    cached = cache_path(tmp_path, server.url, DEVICE, None, None)
    stamp = cached.stat().st_mtime_ns
    again = fetch_table(server.url, DEVICE, cache_dir=tmp_path)
    assert again.entries == first.entries and again.etag == first.etag and not again.stale
    assert cached.stat().st_mtime_ns == stamp  # 304 Not Modified: nothing rewritten

    server.stop()
    try:
        offline = fetch_table(server.url, DEVICE, cache_dir=tmp_path)
        assert offline.stale and offline.entries == first.entries and offline.overhead_ms == first.overhead_ms
        out = CliRunner().invoke(
            app, ["predict", "fbnet_a", "--server", server.url, "--device", DEVICE, "--cache-dir", str(tmp_path)]
        )
        assert out.exit_code == 0, out.output
        assert "server unreachable" in out.output and "latency" in out.output
        nothing = CliRunner().invoke(
            app, ["predict", "fbnet_a", "--server", server.url, "--device", DEVICE, "--cache-dir", str(tmp_path / "empty")]
        )
        assert nothing.exit_code == 1 and "unreachable and no cached table" in nothing.output
        assert "Traceback" not in nothing.output
    finally:
        server.start()


def test_unknown_device_is_one_clear_line(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = CliRunner().invoke(
        app, ["predict", "fbnet_a", "--server", server.url, "--device", "nope", "--cache-dir", str(tmp_path)]
    )
    assert out.exit_code == 1 and out.output.startswith("error: ") and "nope" in out.output and "Traceback" not in out.output
