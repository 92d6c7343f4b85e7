"""Issue 25: on SQLite a small write does not wait behind queued uploads (profiler_server/write_queue.py).

SQLite's busy handler lets whichever writer retries at the right moment take the lock, and a 1-row PUT /devices
lost to seven uploads for up to 4.3 s. The server's writers now wait in a queue: small writes first, bulk ones
(uploads, imports, job creation) after them, each kind in arrival order; a writer that waits past the busy timeout
gets the same 503 as SQLite's "locked". SQLite only: PostgreSQL's writers lock rows and do not queue.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from profiler_server.app import database_fault
from profiler_server.write_queue import BULK, SMALL, WriteQueue, queue_of
from tests.support.inprocess_server import in_process_server


def until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.005)


def test_small_writers_go_first_and_each_kind_in_arrival_order() -> None:
    queue = WriteQueue()
    order: list[str] = []

    def writer(name: str, priority: int) -> threading.Thread:
        def run() -> None:
            with queue.turn(priority):
                order.append(name)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    threads = []
    with queue.turn(BULK):  # the lock is held: everyone after this waits
        for i, (name, priority) in enumerate([("bulk-1", BULK), ("small-1", SMALL), ("bulk-2", BULK), ("small-2", SMALL)]):
            threads.append(writer(name, priority))
            until(lambda i=i: queue.waiting == i + 1, f"{name} waits")  # queued in this order
    for thread in threads:
        thread.join(timeout=30)
    assert order == ["small-1", "small-2", "bulk-1", "bulk-2"]
    assert queue.waiting == 0


def test_a_writer_that_waits_past_the_busy_timeout_is_a_busy_503() -> None:
    queue = WriteQueue()
    with queue.turn(BULK):
        with pytest.raises(OperationalError) as caught, queue.turn(SMALL, wait_s=0.05):
            pass
        assert queue.waiting == 0  # the one that gave up left the queue
    assert database_fault(caught.value) == "busy"  # answered 503 + Retry-After, as SQLite's own "database is locked"
    with queue.turn(SMALL, wait_s=1):  # and the queue still works
        pass


def test_a_device_put_overtakes_an_upload_queued_before_it(tmp_path: Path) -> None:
    with in_process_server(f"sqlite:///{tmp_path / 'queue.db'}") as srv:
        auth = {"Authorization": f"Bearer {srv.tokens['agent']}"}
        for name in ("up", "probe"):
            httpx.put(f"{srv.url}/devices/{name}", json={"model": "x"}, headers=auth, timeout=30).raise_for_status()
        queue = queue_of(srv.app.state.engine)
        assert queue is not None
        done: list[str] = []

        def call(name: str, method: str, path: str, body: dict[str, object]) -> threading.Thread:
            def run() -> None:
                r = httpx.request(method, f"{srv.url}{path}", json=body, headers=auth, timeout=60)
                assert r.status_code == 200, r.text[:200]
                done.append(name)

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            return thread

        results = [{"key": f"ir_k3_e6_g1_s1_o{16 + i}@1x16x28x28", "median_ms": 1.0, "iterations": 5} for i in range(2000)]
        upload = {
            "device": "up",
            "runtime": "ort",
            "runtime_version": "1",
            "threads": 1,
            "agent": "a",
            "run_id": str(uuid.uuid4()),
            "results": results,
        }
        # Its keys are known already: the upload below writes in one transaction (no operator-dictionary ones first).
        httpx.post(
            f"{srv.url}/measurements", json={**upload, "run_id": str(uuid.uuid4())}, headers=auth, timeout=60
        ).raise_for_status()
        with queue.turn(BULK):  # another writer holds the lock
            first = call("upload", "POST", "/measurements", upload)
            until(lambda: queue.waiting == 1, "the upload waits for the lock")
            second = call("put", "PUT", "/devices/probe", {"model": "y"})
            until(lambda: queue.waiting == 2, "the PUT waits behind it")
        first.join(timeout=60)
        second.join(timeout=60)
        assert done == ["put", "upload"]
