"""Issue 25, D7: uploads prepare everything outside their write transaction, so SQLite's one write lock is held
briefly; seven concurrent 20,000-result uploads all succeed (no 503 "database busy"), on both databases."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import fresh_postgres_database, postgres_base_url
from tests.support.inprocess_server import InProcessServer, in_process_server
from tests.support.live_server import LiveServer

RESULTS = 20_000


def upload_body(device: str, offset: int) -> dict[str, object]:
    results = [
        {"key": f"ir_k3_e6_g1_s1_o{16 + offset + i}@1x16x28x28", "median_ms": 1.0, "min_ms": 0.9, "iterations": 5}
        for i in range(RESULTS)
    ]
    return {
        "device": device,
        "runtime": "ort",
        "runtime_version": "1",
        "threads": 1,
        "agent": "a",
        "run_id": str(uuid.uuid4()),
        "results": results,
    }


@pytest.fixture(params=["sqlite"] + (["postgresql"] if postgres_base_url() else []))
def inproc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    if request.param == "sqlite":
        with in_process_server(f"sqlite:///{tmp_path / 'locks.db'}") as srv:
            yield srv
        return
    with fresh_postgres_database() as url, in_process_server(url) as srv:
        yield srv


def _upload_share(inproc: InProcessServer, device: str, offset: int) -> tuple[float, list[float]]:
    """One 20,000-result upload to a new device: its request time and the write-lock holds it caused."""
    from profiler_server.api.deps import WRITE_HOLDS

    auth = {"Authorization": f"Bearer {inproc.tokens['agent']}"}
    assert httpx.put(f"{inproc.url}/devices/{device}", json={}, headers=auth, timeout=30).status_code == 201
    WRITE_HOLDS.clear()
    started = time.perf_counter()
    r = httpx.post(f"{inproc.url}/measurements", json=upload_body(device, offset), headers=auth, timeout=300)
    request_s = time.perf_counter() - started
    assert r.status_code == 200 and r.json()["stored"] == RESULTS, r.text[:300]
    return request_s, list(WRITE_HOLDS)


def test_a_20000_result_upload_holds_its_write_lock_for_a_small_share_of_the_request(inproc: InProcessServer) -> None:
    # A share of the request, not seconds: a loaded machine slows both alike. Before, one transaction held the lock
    # for most of the request (4-8 s, a share of 0.6-0.9 in every upload); prepared outside it, the longest hold is
    # a small part of the work (0.06-0.07 here). One CI run saw a single 1 s hold (a disk stall at commit) in an
    # upload whose other holds were 0.02 s: a second upload is judged then, which the old behaviour would fail too.
    attempts = []
    for attempt in range(2):
        request_s, holds = _upload_share(inproc, f"locks{attempt}", 0)
        assert holds
        attempts.append((request_s, max(holds)))
        print(f"request {request_s:.2f} s, longest hold {max(holds):.2f} s, share {max(holds) / request_s:.2f}")
        if max(holds) < 0.35 * request_s:
            break
    else:
        raise AssertionError(f"the longest write-lock hold was over 35% of the request twice: {attempts}")
    table = httpx.get(f"{inproc.url}/lut/locks{attempt}", timeout=60).json()
    assert len(table["entries"]) == RESULTS


@pytest.mark.slow  # about 50 s per database
def test_seven_concurrent_20000_result_uploads_all_succeed(server: LiveServer, device: str) -> None:
    statuses: list[int] = []
    errors: list[str] = []

    def send(i: int) -> None:
        r = httpx.post(
            f"{server.url}/measurements",
            json=upload_body(device, 1_000_000 + i * RESULTS),
            timeout=600,
            headers={"Authorization": f"Bearer {server.agent_token}"},
        )
        statuses.append(r.status_code)
        if r.status_code != 200:
            errors.append(r.text[:200])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    assert statuses == [200] * 7, errors
    assert len(httpx.get(f"{server.url}/lut/{device}", timeout=60).json()["entries"]) == 7 * RESULTS
