"""Issue 25, D6: a write route answers 401/403 from its headers before reading the body; slow senders are cut off.

Raw sockets show what a client sees (the 401 arrives while most of the body is still unsent); an in-process server
shows what the server read (``unauth_body_bytes_read`` = 0). Header and body-idle timeouts, and the bound on large
bodies read at once, run on a server started with small limits.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import fresh_postgres_database, postgres_base_url
from tests.support.inprocess_server import InProcessServer, in_process_server
from tests.support.live_server import LiveServer, live_server_on

DECLARED = 15_000_000  # the body a client says it will send
SENT = 256 * 1024  # what it actually sends before it waits for an answer


def _connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def _head(path: str, length: int, token: str | None = None, method: str = "POST") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Content-Length: {length}\r\n\r\n"
    ).encode()


def _status(sock: socket.socket, deadline_s: float = 10.0) -> tuple[int, bytes]:
    """The status and what arrived of the answer (read until the head and a JSON body are in, or the deadline)."""
    data = b""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
            break
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split(b" ", 2)[1]), data


def _closed_within(sock: socket.socket, deadline_s: float) -> float | None:
    """Seconds until the server closed the connection (EOF or reset), or None when it was still open at the deadline."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < deadline_s:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return None


@pytest.mark.parametrize(("token_of", "status"), [(None, 401), ("bogus", 401), ("client", 403)])
def test_a_write_without_the_right_token_is_refused_before_its_body_is_sent(
    server: LiveServer, token_of: str | None, status: int
) -> None:
    token = {None: None, "bogus": "hwnas_not-a-token", "client": server.client_token}[token_of]
    with _connect(server) as sock:
        sock.sendall(_head("/measurements", DECLARED, token) + b"{" + b" " * (SENT - 1))
        got, data = _status(sock)  # the other 14.7 MB were never sent: the answer came from the headers
    assert got == status, data[:300]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["detail"]


def test_the_answer_keeps_the_connection_for_the_next_request(server: LiveServer) -> None:
    """A refused body of declared length is discarded as it arrives; the connection then serves the next request."""
    body = b"{" + b" " * 9_998 + b"}"
    with _connect(server) as sock:
        sock.sendall(_head("/measurements", len(body)) + body + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first, data = _status(sock)
        assert first == 401
        if b"HTTP/1.1 200" not in data:
            _, more = _status(sock)
            data += more
    assert b"HTTP/1.1 200" in data


@pytest.fixture(params=["sqlite"] + (["postgresql"] if postgres_base_url() else []))
def in_process(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    if request.param == "sqlite":
        with in_process_server(f"sqlite:///{tmp_path / 'gate.db'}") as srv:
            yield srv
        return
    with fresh_postgres_database() as url, in_process_server(url) as srv:
        yield srv


def test_the_server_reads_no_body_byte_of_a_refused_write(in_process: InProcessServer) -> None:
    url, app, tokens = in_process.url, in_process.app, in_process.tokens
    big = b"[" + b"0," * 2_500_000 + b"0]"  # 5 MB
    for headers in ({}, {"Authorization": "Bearer hwnas_bogus"}, {"Authorization": f"Bearer {tokens['client']}"}):
        r = httpx.post(f"{url}/measurements", content=big, headers={"Content-Type": "application/json", **headers}, timeout=60)
        assert r.status_code in (401, 403), r.text[:200]
    counters = app.state.gate  # type: ignore[attr-defined]
    assert counters.refused == 3
    assert counters.unauth_body_bytes_read == 0
    # An authorised write still reads its body (and the route's own checks answer).
    r = httpx.post(
        f"{url}/measurements",
        content=b"{}",
        timeout=30,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {tokens['agent']}"},
    )
    assert r.status_code == 422 and counters.unauth_body_bytes_read == 0


@pytest.fixture(scope="module", params=["sqlite"] + (["postgresql"] if postgres_base_url() else []))
def tight(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with 1 s header and body-idle timeouts and one large body at a time."""
    env = {"HEADER_TIMEOUT_S": "1", "BODY_IDLE_TIMEOUT_S": "1", "MAX_LARGE_BODIES": "1"}
    tmp = tmp_path_factory.mktemp(f"tight_{request.param}")
    with live_server_on(request.param, tmp, env=env) as srv:
        yield srv


def test_a_connection_that_never_finishes_its_headers_is_closed(tight: LiveServer) -> None:
    with _connect(tight) as sock:
        sock.sendall(b"POST /measurements HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        closed = _closed_within(sock, 10.0)
    assert closed is not None and closed < 10.0
    with _connect(tight) as idle:  # one that sends nothing at all
        assert _closed_within(idle, 10.0) is not None


def test_a_body_that_stops_arriving_is_closed(tight: LiveServer) -> None:
    with _connect(tight) as sock:
        sock.sendall(_head("/measurements", 10_000, tight.agent_token) + b'{"device": ')
        closed = _closed_within(sock, 10.0)
    assert closed is not None
    assert httpx.get(f"{tight.url}/healthz", timeout=10).status_code == 200


def test_one_large_body_too_many_is_a_503_with_retry_after(tight: LiveServer) -> None:
    with _connect(tight) as first:
        first.sendall(_head("/measurements", 2_000_000, tight.agent_token) + b"{")  # holds the one large-body slot
        time.sleep(0.05)  # not a race: the second request is retried below until the first one holds the slot
        deadline = time.monotonic() + 10
        while True:
            r = httpx.post(
                f"{tight.url}/measurements",
                content=b"{" + b" " * 1_500_000 + b"}",
                timeout=30,
                headers={"Authorization": f"Bearer {tight.agent_token}", "Content-Type": "application/json"},
            )
            if r.status_code == 503 or time.monotonic() > deadline:
                break
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text[:200]
        assert r.json()["errors"][0]["field"] == "body"
    # The slot is free again once the first request ends (its connection closed: the body never came).
    deadline = time.monotonic() + 10
    while True:
        r = httpx.post(
            f"{tight.url}/measurements",
            content=b"{" + b" " * 1_500_000 + b"}",
            timeout=30,
            headers={"Authorization": f"Bearer {tight.agent_token}", "Content-Type": "application/json"},
        )
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 422  # read and parsed: a body of spaces is no batch


@pytest.fixture(params=["sqlite"] + (["postgresql"] if postgres_base_url() else []))
def closed_reads(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    """An in-process server with READ_REQUIRES_TOKEN on."""
    if request.param == "sqlite":
        with in_process_server(f"sqlite:///{tmp_path / 'closed.db'}", read_requires_token=True) as srv:
            yield srv
        return
    with fresh_postgres_database() as url, in_process_server(url, read_requires_token=True) as srv:
        yield srv


def test_a_query_without_a_token_is_refused_before_its_body_while_reads_need_one(closed_reads: InProcessServer) -> None:
    """POST /lut/{device}/query is a read with a body: with READ_REQUIRES_TOKEN its token is checked from the headers
    too (gate.route_roles), so an anonymous caller cannot make the server read a 15 MB key list first."""
    url, app, tokens = closed_reads.url, closed_reads.app, closed_reads.tokens
    httpx.put(
        f"{url}/devices/pixel7", json={}, headers={"Authorization": f"Bearer {tokens['agent']}"}, timeout=30
    ).raise_for_status()
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(_head("/lut/pixel7/query", DECLARED) + b"{" + b" " * (SENT - 1))
        got, data = _status(sock)  # answered while most of the declared body was never sent
    assert got == 401, data[:300]
    big = b'{"keys": [' + b'"ir_k3_e6_g1_s1_o16@1x16x28x28",' * 150_000 + b'"x"]}'  # 5 MB
    for headers in ({}, {"Authorization": "Bearer hwnas_bogus"}):
        r = httpx.post(
            f"{url}/lut/pixel7/query", content=big, headers={"Content-Type": "application/json", **headers}, timeout=60
        )
        assert r.status_code == 401, r.text[:200]
    assert app.state.gate.unauth_body_bytes_read == 0  # type: ignore[attr-defined]
    assert app.state.gate.refused == 3  # type: ignore[attr-defined]
    # Any valid token reads (the gate's caller is the route's: one token lookup), and the answer is the route's own.
    for role in ("client", "agent"):
        r = httpx.post(
            f"{url}/lut/pixel7/query",
            json={"keys": ["ir_k3_e6_g1_s1_o16@1x16x28x28"]},
            timeout=30,
            headers={"Authorization": f"Bearer {tokens[role]}"},
        )
        assert r.status_code == 200 and r.json() == {"present": [], "missing": ["ir_k3_e6_g1_s1_o16@1x16x28x28"]}, r.text[:200]
    assert app.state.gate.unauth_body_bytes_read == 0  # type: ignore[attr-defined]


def test_a_query_stays_open_while_reads_are(in_process: InProcessServer) -> None:
    r = httpx.post(f"{in_process.url}/lut/pixel7/query", json={"keys": []}, timeout=30)
    assert r.status_code == 404 and "unknown device" in r.json()["detail"], r.text[:200]  # the route itself answered
    assert in_process.app.state.gate.refused == 0  # type: ignore[attr-defined]
