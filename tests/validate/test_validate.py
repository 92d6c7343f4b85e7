"""`hwnas validate` end to end: real server, real device agent (--local, and a network job over loopback ADB)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwnas.client import NotFoundError
from hwnas.schemas import JobCreate, JobState
from search.arch import Architecture
from search.lut import fetch_table
from search.space import get_space
from search.validate import network_spec, sample_archs
from tests.agent.agent_support import agent_cmd, env, kill, start_loopback
from tests.support.databases import sqlite_url
from tests.support.live_server import LiveServer, start_live_server
from tests.support.ports import free_port

TINY = ["--warmup", "1", "--iterations", "6", "--rounds", "3"]  # 3 rounds: even/odd noise floor is defined


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("validate")
    srv = start_live_server(sqlite_url(tmp), tmp)
    try:
        yield srv
    finally:
        srv.stop()


def _wait_registered(srv: LiveServer, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    with srv.client() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(log.read_text())
            try:
                c.get_device(name)
                return
            except NotFoundError:
                time.sleep(0.2)
    raise AssertionError(f"agent did not register {name}:\n{log.read_text()}")


@pytest.fixture(scope="module")
def local_agent(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``device-agent run --local`` serving device ``host-cpu`` with a tiny protocol."""
    tmp = tmp_path_factory.mktemp("agent")
    log = tmp / "agent.log"
    fh = open(log, "wb")
    proc = subprocess.Popen(
        agent_cmd(
            "run",
            "--local",
            "--server",
            server.url,
            "--token",
            server.agent_token,
            "--name",
            "host-cpu",
            "--runtime",
            "onnxruntime",
            "--threads",
            "1",
            "--cache-dir",
            str(tmp / "models"),
            *TINY,
        ),
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=env(),
        start_new_session=True,
    )
    fh.close()
    try:
        _wait_registered(server, "host-cpu", proc, log)
        yield "host-cpu"
    finally:
        kill(proc, 15)


def test_validate_cli_measures_predicts_and_calibrates(server: LiveServer, local_agent: str, tmp_path: Path) -> None:
    out = tmp_path / "val"
    cmd = [
        sys.executable,
        "-m",
        "search.app.cli",
        "validate",
        "--server",
        server.url,
        "--device",
        local_agent,
        "--space",
        "fbnet-fmnist",
        "--n",
        "4",
        "--seed",
        "3",
        "--calibrate",
        "--out",
        str(out),
        "--token",
        server.client_token,
        "--calibration-token",
        server.agent_token,  # the owner rule: host-cpu's owner stores the fit
        "--cache-dir",
        str(tmp_path / "lut"),
        "--timeout",
        "120",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "prediction: MAPE" in proc.stdout and "noise floor (even vs odd of 3 rounds)" in proc.stdout
    doc = json.loads((out / "validation.json").read_text())
    assert (out / "scatter.png").stat().st_size > 5000 and "| arch id |" in (out / "report.md").read_text()
    rows = doc["networks"]
    assert len(rows) == 4 and all(r["rounds"] == 3 for r in rows)
    for r in rows:  # measured and predicted agree to a factor of 2 even with a 3-round protocol
        assert 0.5 < r["predicted_ms"] / r["measured_ms"] < 2.0
    figures = doc["figures"]
    # The figures are those of the rows (uncalibrated prediction against measurement), computed here independently.
    from scipy.stats import kendalltau

    pred, meas = [r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]
    rel = [(p - m) / m for p, m in zip(pred, meas)]
    assert figures["networks"] == 4
    assert figures["mape_pct"] == pytest.approx(100 * sum(abs(x) for x in rel) / 4, rel=1e-9)
    assert figures["bias_pct"] == pytest.approx(100 * sum(rel) / 4, rel=1e-9)
    assert figures["within10"] == sum(abs(x) <= 0.10 for x in rel) / 4
    assert figures["kendall_tau"] == pytest.approx(kendalltau(pred, meas).statistic)
    assert figures["noise_mape_pct"] is not None and figures["mape_over_noise"] is not None
    cal = doc["calibration"]
    assert cal["stored"] and cal["fit_networks"] == 2 and cal["test_networks"] == 2 and cal["scale"] > 0

    # The calibration travels with the table: the next fetch carries it and LatencyCost applies it.
    from search.cost import LatencyCost, arch_cost

    table = fetch_table(server.url, local_agent, runtime="onnxruntime", threads=1, cache_dir=tmp_path / "lut")
    assert table.calibration is not None and table.calibration.scale == pytest.approx(cal["scale"])
    arch = Architecture(space="fbnet-fmnist", choices=rows[0]["choices"], input_size=28, classes=10)
    raw = arch_cost(LatencyCost(table, calibrated=False), arch)
    assert raw == pytest.approx(rows[0]["predicted_ms"], rel=1e-9)
    assert arch_cost(LatencyCost(table), arch) == pytest.approx(cal["scale"] * raw + cal["offset_ms"], rel=1e-9)


def test_extra_networks_are_measured_and_fitted_with_the_uniform_ones(
    server: LiveServer, local_agent: str, tmp_path: Path
) -> None:
    """``extra``: networks chosen by the caller (near a search's budget, say) join the uniform draws in the job and the fit."""
    from search.validate import ValidateConfig, run_validation

    cheap = ["skip", "maxpool_k3", "skip", "avgpool_k3", "skip", "ir_k3_e1", "skip", "skip", "ir_k3_e1"]
    pooled = ["maxpool_k3"] * 9
    cfg = ValidateConfig(
        server=server.url,
        device=local_agent,
        space="fbnet-fmnist",
        n=2,
        seed=5,
        calibrate=True,
        extra=[cheap, pooled, cheap],
        token=server.client_token,
        calibration_token=server.agent_token,
        cache_dir=tmp_path / "lut",
        timeout_s=120,
    )
    report = run_validation(cfg, log=lambda _: None)
    ids = [r.arch_id for r in report.rows]
    extra_ids = {Architecture(space="fbnet-fmnist", choices=c, input_size=28, classes=10).id for c in (cheap, pooled)}
    assert len(ids) == 4 and len(set(ids)) == 4 and extra_ids <= set(ids)  # the repeated one is measured once
    assert report.calibration is not None and report.calibration["fit_networks"] + report.calibration["test_networks"] == 4


def test_validate_names_the_problem_in_one_line(server: LiveServer, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "search.app.cli",
        "validate",
        "--server",
        server.url,
        "--device",
        "no-such-phone",
        "--space",
        "fbnet-fmnist",
        "--n",
        "2",
        "--token",
        server.client_token,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error:") and "no-such-phone" in proc.stderr


def test_network_job_over_loopback_adb(server: LiveServer, tmp_path: Path) -> None:
    """The same job kind through the ADB path: models pushed to a (loopback) phone, measured by its benchmark binary."""
    port = free_port()
    phone = start_loopback(port, tmp_path / "phone", tmp_path / "phone.log")
    log = tmp_path / "agent.log"
    try:
        archs = sample_archs(get_space("fbnet-fmnist"), 2, seed=11)
        keys = list(dict.fromkeys(k for a in archs for k in a.op_keys()))[:4]
        with server.client() as c:
            proc = subprocess.run(
                agent_cmd("info", "--serial", f"127.0.0.1:{port}", "--json"),
                capture_output=True,
                text=True,
                env=env(),
                timeout=60,
            )
            name = json.loads(proc.stdout)["name"]
            with open(log, "wb") as fh:
                agent = subprocess.Popen(
                    agent_cmd(
                        "run",
                        "--serial",
                        f"127.0.0.1:{port}",
                        "--server",
                        server.url,
                        "--token",
                        server.agent_token,
                        "--cache-dir",
                        str(tmp_path / "models"),
                        *TINY,
                    ),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=env(),
                    start_new_session=True,
                )
            try:
                _wait_registered(server, name, agent, log)
                job = c.create_job(
                    JobCreate(device=name, runtime="onnxruntime", threads=1, keys=keys, networks=[network_spec(a) for a in archs])
                )
                deadline = time.monotonic() + 120
                while (state := c.get_job(job.id)).state not in (JobState.done, JobState.failed) and time.monotonic() < deadline:
                    time.sleep(0.5)
            finally:
                kill(agent, 15)
            assert state.state == JobState.done and state.failed == 0, log.read_text()
            nets = c.get_networks(name, runtime="onnxruntime", threads=1)
        assert set(nets.entries) == {a.id for a in archs}
        for entry in nets.entries.values():
            assert entry.samples_ms is not None and len(entry.samples_ms) == 3 and entry.min_ms is not None and entry.min_ms > 0
        assert "1 network(s)" not in log.read_text() and "2 network(s)" in log.read_text()
    finally:
        kill(phone)
