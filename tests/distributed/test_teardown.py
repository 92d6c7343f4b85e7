"""The end of a distributed run: every rank arrives, rank 0 (the store host) leaves last, a failed rank is told at once.

See the comment above ``search.distributed.shutdown`` for the failure these guard against: rank 1
aborting (SIGABRT) at gloo teardown, which the old end allowed by letting rank 0 go while rank 1
was still tearing down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch.distributed as dist

from search import distributed
from tests.support.ports import free_port
from tests.distributed.conftest import LAUNCH_TIMEOUT_S, ROOT, torchrun, worker_env

TEARDOWN_WORKER = Path(__file__).with_name("teardown_worker.py")
SLOW_S = 1.0


def _report(report_dir: Path, rank: int) -> dict[str, Any]:
    return json.loads((report_dir / f"rank{rank}.json").read_text())


# ----------------------------------------------------------------------------- real 2-process jobs
def test_rank_0_leaves_after_a_slow_rank_1_is_gone(tmp_path: Path) -> None:
    """Rank 1 is slow to destroy its group and slow to exit; both exit 0 and rank 0 outlives rank 1.

    Rank 0 hosts the store here (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``), the strictest case; the
    searches of ``test_ddp_search.py`` end through the same ``shutdown`` with torchrun's agent store.
    Under the old teardown (a barrier, then every rank destroys and exits at once) rank 0 returned
    from ``shutdown`` milliseconds after the barrier, with rank 1 still tearing down: still
    connected to rank 0's gloo sockets and store.
    """
    torchrun(
        ["--report", str(tmp_path), "--slow-rank", "1", "--slow-s", str(SLOW_S)],
        script=TEARDOWN_WORKER,
        env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"},
    )  # asserts that torchrun, hence every rank, exited 0
    r0, r1 = _report(tmp_path, 0), _report(tmp_path, 1)
    assert r0["error"] is None and r1["error"] is None
    assert r0["peers_alive_after_shutdown"] == []  # rank 1's process had ended before rank 0 could leave
    assert r0["shutdown_s"] >= 2 * SLOW_S - 0.2  # it waited out rank 1's slow destroy and its slow exit


def test_a_rank_that_fails_is_reported_at_once_not_after_the_timeout(tmp_path: Path) -> None:
    """Rank 1 raises instead of calling ``shutdown``: rank 0's ``shutdown`` raises ``PeerFailed`` within seconds.

    Two plain ``env://`` processes, without torchrun (which would stop rank 0 itself): rank 0 hosts
    the store, and only the notice rank 1 leaves in it at exit ends rank 0's wait early.
    """
    env = {
        **worker_env(),
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(TEARDOWN_WORKER), "--report", str(tmp_path), "--fail-rank", "1"],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    outputs = [p.communicate(timeout=LAUNCH_TIMEOUT_S)[0] for p in procs]
    assert procs[1].returncode == 1 and "rank 1 fails on purpose" in outputs[1], outputs[1][-3000:]
    assert procs[0].returncode == 0, outputs[0][-3000:]
    r0 = _report(tmp_path, 0)
    assert r0["error"] == "PeerFailed: rank 1 stopped before the end of the run"
    assert r0["shutdown_s"] < 30  # the arrival deadline was 60 s


# ----------------------------------------------------------------------------- the protocol, on one store
def _run_ranks(n: int, fn) -> list[Any]:  # type: ignore[no-untyped-def]
    """``fn(rank)`` on ``n`` threads; their results (or exceptions), in rank order."""
    results: list[Any] = [None] * n

    def run(r: int) -> None:
        try:
            results[r] = fn(r)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            results[r] = exc

    threads = [threading.Thread(target=run, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


def test_store_barrier_meets_then_times_out_alone() -> None:
    store = dist.HashStore()
    assert _run_ranks(3, lambda r: distributed.store_barrier(store, r, 3, "a", 10)) == [None] * 3
    start = time.monotonic()
    with pytest.raises(distributed.DistributedError, match="did not reach the end of the run within 0.2 s"):
        distributed.store_barrier(store, 0, 2, "b", 0.2)
    assert time.monotonic() - start < 5


def test_store_barrier_stops_waiting_when_a_rank_reports_failure() -> None:
    store = dist.HashStore()
    threading.Timer(0.2, lambda: store.set("c/failed", "1")).start()
    start = time.monotonic()
    with pytest.raises(distributed.PeerFailed, match="rank 1 stopped"):
        distributed.store_barrier(store, 0, 2, "c", 60)
    assert time.monotonic() - start < 5
    store.add("f/arrived", 1)  # rank 1 arrived, waited past its own deadline and gave up: rank 0, late, is told so
    store.set("f/failed", "1")
    with pytest.raises(distributed.PeerFailed, match="rank 1 stopped"):
        distributed.store_barrier(store, 0, 2, "f", 60)


def test_rank_0_destroys_and_returns_only_after_every_other_rank_left() -> None:
    store = dist.HashStore()
    events: list[str] = []

    def rank(r: int) -> None:
        def destroy() -> None:
            time.sleep(0.3 * r)  # the higher the rank, the slower its teardown
            events.append(f"{r} destroyed")

        distributed.leave_in_order(store, r, 3, "d", destroy, timeout_s=10)
        if r == 0:
            events.append("0 returned")

    start = time.monotonic()
    assert _run_ranks(3, rank) == [None] * 3
    assert events[-1] == "0 returned" and sorted(events[:-1]) == ["0 destroyed", "1 destroyed", "2 destroyed"]
    assert time.monotonic() - start < 5  # the threads are one process: rank 0 does not wait for its own exit


def test_rank_0_waits_for_a_local_peer_process_to_end(tmp_path: Path) -> None:
    store = dist.HashStore()
    peer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.0)"])
    try:
        assert distributed._start_time(peer.pid) is not None
        store.set(
            "e/left/1",
            json.dumps({"machine": distributed._machine(), "pid": peer.pid, "start": distributed._start_time(peer.pid)}),
        )
        start = time.monotonic()
        distributed.leave_in_order(store, 0, 2, "e", lambda: None, timeout_s=20)
        assert peer.poll() is not None or distributed._start_time(peer.pid) is None  # ended (maybe not yet reaped)
        assert time.monotonic() - start >= 0.5
    finally:
        peer.kill()
        peer.wait()


def test_peers_elsewhere_or_unrecognised_are_not_waited_for() -> None:
    here = distributed._machine()
    me = json.loads(distributed._process_identity())
    assert me["pid"] == os.getpid()
    assert distributed._process_gone(json.dumps(me), here)  # rank 0 never waits for its own process to end
    parent = {**me, "pid": os.getppid(), "start": distributed._start_time(os.getppid())}
    assert not distributed._process_gone(json.dumps(parent), here)
    assert distributed._process_gone(json.dumps({**parent, "machine": "another node"}), here)
    assert distributed._process_gone(json.dumps({**parent, "start": "0"}), here)  # a recycled pid: another process
    assert distributed._process_gone("", here) and distributed._process_gone(json.dumps(parent), None)
