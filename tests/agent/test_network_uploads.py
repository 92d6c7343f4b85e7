"""Whole-network results go up the operators' path: retried while the server fails (503) or is away,
for ``--upload-deadline-s``, then spooled and sent by ``flush_spool`` once the server takes them.

The agent measures on this host (``--local``) against a real server. A 503 comes from a small
reverse proxy in front of it, as a load balancer answers while its upstream restarts; the
server itself answers 503 only when its database is busy or away, which a test cannot cause
in a bounded time.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from device_agent.errors import ServerError
from device_agent.config import AgentConfig
from device_agent.jobloop import Agent
from device_agent.platforms.local import LocalDevice
from device_agent.protocol import ProtocolConfig
from hwnas.client import NotFoundError, ProfilerClient
from hwnas.schemas import (
    JobCreate,
    JobState,
    MeasurementBatch,
    MeasurementResult,
    NetworkMeasurementBatch,
    NetworkResult,
    NetworkSpec,
)
from tests.agent.agent_support import FMNIST_KEYS
from tests.support.live_server import LiveServer

NETWORK_UPLOAD = "/networks/measurements"


class Gate:
    """A reverse proxy to ``upstream`` that answers 503 (Retry-After: 0) to the next ``busy`` network uploads."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=30.0)
        self.busy = 0  # network uploads still to answer 503 (negative: all of them)
        self.refused = 0  # 503s answered
        self.lock = threading.Lock()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path.startswith(NETWORK_UPLOAD) and gate._take():
                    self._answer(
                        503,
                        json.dumps({"detail": "upstream restarting", "errors": []}).encode(),
                        "application/json",
                        {"Retry-After": "0"},
                    )
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type", "accept")}
                r = gate.upstream.request(self.command, self.path, content=body, headers=headers)
                self._answer(r.status_code, r.content, r.headers.get("content-type", "application/json"), {})

            def _answer(self, status: int, body: bytes, ctype: str, extra: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _take(self) -> bool:
        with self.lock:
            if self.busy == 0:
                return False
            self.busy -= 1 if self.busy > 0 else 0
            self.refused += 1
            return True

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.upstream.close()


@pytest.fixture
def gate(live_server: LiveServer) -> Iterator[Gate]:
    g = Gate(live_server.url)
    try:
        yield g
    finally:
        g.close()


def _net(i: int) -> NetworkSpec:
    doc = {"space": "fbnet-fmnist", "choices": ["ir_k3_e1"] * 8 + [["skip", "ir_k3_e3"][i]]}
    return NetworkSpec(arch_id=f"{uuid.uuid4().hex[:12]}{i:04x}", arch=doc, input_shape=[1, 1, 28, 28])


def _agent(server: LiveServer, url: str, cache: Path, upload_deadline_s: float) -> Agent:
    cfg = AgentConfig(
        once=True,
        poll_s=0.1,
        upload_deadline_s=upload_deadline_s,
        cache_dir=cache,
        measure_overhead=False,
        protocol=ProtocolConfig(warmup=1, iterations=3, rounds=2),
    )
    agent = Agent(
        LocalDevice(),
        cfg,
        client=ProfilerClient(url, token=server.agent_token),
        make_client=lambda: ProfilerClient(url, token=server.agent_token),
        local=True,
    )
    agent.connect()
    agent.name = f"net-uploads-{uuid.uuid4().hex[:8]}"  # a device of its own: the module's server is shared
    agent.register()
    return agent


def _network_job(server: LiveServer, agent: Agent) -> tuple[int, list[NetworkSpec]]:
    nets = [_net(0), _net(1)]
    with server.client() as c:
        job = c.create_job(JobCreate(device=agent.name, runtime="onnxruntime", threads=1, keys=FMNIST_KEYS[:1], networks=nets))
    return job.id, nets


def _stored_networks(server: LiveServer, device: str) -> set[str]:
    with server.client() as c:
        try:
            return set(c.get_networks(device, runtime="onnxruntime", threads=1).entries)
        except NotFoundError:  # none stored yet
            return set()


def test_a_network_upload_that_meets_503s_is_retried_and_lands(
    live_server: LiveServer, gate: Gate, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = _agent(live_server, gate.url, tmp_path / "cache" / "models", upload_deadline_s=60)
    job_id, nets = _network_job(live_server, agent)
    # More 503s than the client's own three resends: the agent's retry has to carry it.
    gate.busy = 6
    caplog.set_level(logging.INFO, logger="device_agent")
    try:
        assert agent.serve() == 1
    finally:
        agent.close()
    assert gate.refused == 6
    assert "network result(s) failed with a server error" in caplog.text and "uploaded 2 network result(s)" in caplog.text
    assert _stored_networks(live_server, agent.name) == {n.arch_id for n in nets}
    with live_server.client() as c:
        job = c.get_job(job_id)
    assert (job.state, job.failed, job.pending) == (JobState.done, 0, 0)
    assert agent.spooled() == []


def test_a_network_upload_past_the_deadline_is_spooled_and_flushed_later(
    live_server: LiveServer, gate: Gate, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = _agent(live_server, gate.url, tmp_path / "cache" / "models", upload_deadline_s=0.5)
    job_id, nets = _network_job(live_server, agent)
    gate.busy = -1  # every network upload answered 503
    caplog.set_level(logging.INFO, logger="device_agent")
    try:
        assert agent.serve() == 1  # the job is worked off; its networks wait in the spool, the agent goes on
        spooled = agent.spooled()
        assert [p.name.endswith(".networks.json") for p in spooled] == [True], spooled
        assert "network result(s) saved to" in caplog.text
        assert _stored_networks(live_server, agent.name) == set()
        with live_server.client() as c:
            assert c.get_job(job_id).pending_networks == [n.arch_id for n in nets]
        refused = gate.refused
        assert agent.flush_spool() == 0 and gate.refused > refused  # still refused: kept for later
        gate.busy = 0  # the server takes uploads again
        assert agent.flush_spool() == 1
    finally:
        agent.close()
    assert agent.spooled() == []
    assert _stored_networks(live_server, agent.name) == {n.arch_id for n in nets}
    with live_server.client() as c:
        assert c.get_job(job_id).state == JobState.done


def test_a_spooled_batch_the_server_refuses_is_set_aside_and_does_not_hold_up_the_rest(
    live_server: LiveServer, tmp_path: Path
) -> None:
    agent = _agent(live_server, live_server.url, tmp_path / "cache" / "models", upload_deadline_s=0.5)
    assert agent.name is not None
    try:
        unknown = NetworkMeasurementBatch(
            device=agent.name,
            runtime="onnxruntime",
            threads=1,
            agent=agent.agent_id,
            run_id=uuid.uuid4(),
            results=[NetworkResult(arch_id="feedfacefeedface", median_ms=1.0, min_ms=1.0, iterations=3)],
        )
        with pytest.raises(ServerError, match="server rejected the network result"):
            agent.uploads.post(unknown)  # no job ever carried this network: 404, spooled, the job stops
        ops = MeasurementBatch(
            device=agent.name,
            runtime="onnxruntime",
            threads=1,
            agent=agent.agent_id,
            run_id=uuid.uuid4(),
            results=[MeasurementResult(key=FMNIST_KEYS[0], median_ms=0.2, min_ms=0.1, iterations=3)],
        )
        agent.uploads.spool(ops)
        assert len(agent.spooled()) == 2
        assert agent.flush_spool() == 1  # the operators went up although the refused batch came first
    finally:
        agent.close()
    assert agent.spooled() == []
    assert [p.name for p in (tmp_path / "cache" / "spool" / "rejected").iterdir()][0].endswith(".networks.json")
    with live_server.client() as c:
        lut = c.get_lut(agent.name, runtime="onnxruntime", threads=1).lut
    assert lut is not None and set(lut.entries) == {FMNIST_KEYS[0]}
