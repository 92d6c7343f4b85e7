"""What `hwnas search`, `hwnas predict` and `hwnas validate` say when the server has no table, or no token was given
(issue 27): every refusal names the fix, and the missing-keys line is an error only when no job will fill them."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import DeviceInfo, JobClaim, MeasurementBatch, MeasurementResult
from search.app.cli import app
from search.space import get_space
from tests.support.live_server import LiveServer

TOKEN_COMMAND = "profiler-server token create --name NAME --role client"


def _invoke(args: list[str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, args)


def _register(srv: LiveServer, device: str) -> None:
    with srv.client("agent") as c:
        c.put_device(device, DeviceInfo(manufacturer="Test", model="Phone", cpu_cores=4))


def _search_args(srv: LiveServer, space: Path, device: str, tmp_path: Path) -> list[str]:
    return [
        "search",
        "--space",
        str(space),
        "--server",
        srv.url,
        "--device",
        device,
        "--runtime",
        "onnxruntime",
        "--threads",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--epochs",
        "2",
        "--subset",
        "400",
        "--val-subset",
        "100",
        "--batch-size",
        "40",
        "--samples",
        "0",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
    ]


def test_search_on_a_device_without_a_table_hints_create_job_and_a_token(
    live_server: LiveServer, tiny_space: Path, tmp_path: Path
) -> None:
    _register(live_server, "no-table-phone")
    r = _invoke(_search_args(live_server, tiny_space, "no-table-phone", tmp_path))
    assert r.exit_code == 1, r.output
    assert "HTTP 404" in r.output and "has no latency table" in r.output
    assert "rerun with --create-job and a client token" in r.output and TOKEN_COMMAND in r.output
    assert "Traceback" not in r.output
    # With a token at hand, only --create-job is missing.
    r = _invoke(_search_args(live_server, tiny_space, "no-table-phone", tmp_path) + ["--token", live_server.client_token])
    assert r.exit_code == 1 and "rerun with --create-job to have the device's agent measure" in r.output, r.output
    assert "client token" not in r.output


def test_search_on_an_unknown_device_says_an_agent_must_register_it(
    live_server: LiveServer, tiny_space: Path, tmp_path: Path
) -> None:
    r = _invoke(_search_args(live_server, tiny_space, "nobodys-phone", tmp_path))
    assert r.exit_code == 1, r.output
    assert "unknown device 'nobodys-phone'" in r.output
    assert "no device agent has registered 'nobodys-phone'" in r.output and "device-agent run" in r.output
    assert "--create-job" in r.output


def test_create_job_without_a_token_fails_before_any_job_naming_the_token(live_server: LiveServer, tmp_path: Path) -> None:
    _register(live_server, "tokenless-phone")
    r = _invoke(
        [
            "predict",
            "fbnet_c",
            "--cost",
            "latency",
            "--server",
            live_server.url,
            "--device",
            "tokenless-phone",
            "--cache-dir",
            str(tmp_path),
            "--create-job",
            "--wait-timeout",
            "5",
        ]
    )
    assert r.exit_code == 1, r.output
    assert "a profiling job needs a client token" in r.output and TOKEN_COMMAND in r.output
    # The missing keys were going to be measured: their line is information, not an error.
    header = re.search(r"^(.*) missing from the latency table of .*: measuring them first \(--create-job\)$", r.output, re.M)
    assert header is not None and not header.group(1).startswith("error"), r.output


def _agent(srv: LiveServer, device: str, stop: threading.Event, served: list[int]) -> None:
    """Serves the device's jobs through the real API (claim, upload made-up latencies), as an agent would."""
    with srv.client("agent") as c:
        while not stop.is_set():
            claimed = c.claim_job(JobClaim(device=device, agent="test-agent", lease_s=60))
            if claimed is None:
                time.sleep(0.1)
                continue
            results = [MeasurementResult(key=k, median_ms=0.1 + 0.01 * i, iterations=20) for i, k in enumerate(claimed.keys)]
            results.append(MeasurementResult(key=OVERHEAD_KEY, median_ms=0.01, iterations=20))
            c.post_measurements(
                MeasurementBatch(
                    device=device,
                    runtime="onnxruntime",
                    threads=1,
                    agent="test-agent",
                    run_id=uuid.uuid4(),
                    job_id=claimed.id,
                    results=results,
                )
            )
            served.append(claimed.id)


def test_search_with_create_job_reports_the_missing_keys_as_information_then_runs(
    live_server: LiveServer, tiny_space: Path, tmp_path: Path
) -> None:
    _register(live_server, "job-phone")
    stop, served = threading.Event(), []  # type: ignore[var-annotated]
    agent = threading.Thread(target=_agent, args=(live_server, "job-phone", stop, served), daemon=True)
    agent.start()
    try:
        r = _invoke(
            _search_args(live_server, tiny_space, "job-phone", tmp_path)
            + ["--create-job", "--token", live_server.client_token, "--wait-timeout", "120"]
        )
    finally:
        stop.set()
        agent.join(10)
    assert r.exit_code == 0, r.output
    n = len(get_space(str(tiny_space)).op_keys())
    assert f"{n} operator(s) of the space missing from the latency table" in r.output
    assert "measuring them first (--create-job)" in r.output and served
    assert "error:" not in r.output, r.output
    assert "search done" in r.output


def test_search_without_create_job_still_calls_missing_keys_an_error(
    live_server: LiveServer, tiny_space: Path, tmp_path: Path
) -> None:
    keys = get_space(str(tiny_space)).op_keys()
    _register(live_server, "half-table-phone")
    with live_server.client("agent") as c:
        results = [MeasurementResult(key=k, median_ms=0.2, iterations=20) for k in keys[:-1]]
        c.post_measurements(
            MeasurementBatch(
                device="half-table-phone",
                runtime="onnxruntime",
                threads=1,
                agent="test-agent",
                run_id=uuid.uuid4(),
                results=results,
            )
        )
    r = _invoke(_search_args(live_server, tiny_space, "half-table-phone", tmp_path) + ["--no-create-job"])
    assert r.exit_code == 1, r.output
    assert "error: 1 operator(s) of the space missing from the latency table" in r.output and keys[-1] in r.output
    assert "rerun with --create-job and a client token" in r.output


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_validate_names_the_token_it_needs(live_server: LiveServer, tmp_path: Path, token: str | None) -> None:
    args = [
        "validate",
        "--server",
        live_server.url,
        "--device",
        "host-cpu",
        "--space",
        "fbnet-fmnist",
        "--n",
        "4",
        "--cache-dir",
        str(tmp_path),
    ]
    r = _invoke(args + (["--token", token] if token else []))
    assert "client" in r.output and TOKEN_COMMAND in r.output, r.output
    if token is None:
        assert r.exit_code == 2 and "needs a client (or admin) token" in r.output
    else:
        assert r.exit_code == 1 and "HTTP 401" in r.output and "not one the server knows" in r.output
