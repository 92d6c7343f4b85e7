"""One rank of a teardown test: a DDP step on gloo, then ``distributed.shutdown()``; reports how it left.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed/teardown_worker.py \
        --report REPORT [--slow-rank 1 --slow-s 1.5] [--fail-rank 1]

``--slow-rank R``: rank R dawdles on its way out, like a rank whose teardown is slow: its
``destroy_process_group`` takes ``--slow-s`` longer, and its process lingers as long again after
``shutdown`` returned (an ``atexit`` handler). ``--fail-rank R``: rank R raises instead of calling
``shutdown``.

Each rank writes ``REPORT/rank<R>.json``: its pid, what ``shutdown`` raised (if anything) and how long
it took; rank 0 adds which other ranks' processes were still alive when its ``shutdown`` returned.
A DDP step keeps the gloo group alive after ``destroy_process_group``, as in a real search.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie has ended: it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", required=True)
    ap.add_argument("--slow-rank", type=int, default=-1)
    ap.add_argument("--slow-s", type=float, default=1.5)
    ap.add_argument("--fail-rank", type=int, default=-1)
    args = ap.parse_args()

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from search import distributed

    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    rank, n = distributed.rank(), distributed.world_size()
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    (report / f"rank{rank}.pid").write_text(str(os.getpid()))

    model = DistributedDataParallel(torch.nn.Linear(8, 4))
    model(torch.randn(4, 8)).sum().backward()  # one gradient all-reduce over gloo
    t = torch.ones(3)
    distributed.all_reduce_sum_(t)
    assert t.tolist() == [float(n)] * 3
    # Every rank is past its collectives before any fails: a rank that dies while the other still reads the last
    # bytes of an all-reduce would fail that one, not the shutdown under test.
    distributed.store_barrier(dist.distributed_c10d._get_default_store(), rank, n, "worker/ready", 60)

    if rank == args.fail_rank:
        raise RuntimeError(f"rank {rank} fails on purpose")
    if rank == args.slow_rank:
        destroy = dist.destroy_process_group

        def slow_destroy(*a, **kw):  # type: ignore[no-untyped-def]
            time.sleep(args.slow_s)
            destroy(*a, **kw)

        dist.destroy_process_group = slow_destroy
        atexit.register(time.sleep, args.slow_s)  # and a slow way out of the interpreter after shutdown

    out: dict[str, object] = {"rank": rank, "pid": os.getpid(), "error": None}
    start = time.monotonic()
    try:
        distributed.shutdown(timeout_s=60)
    except distributed.DistributedError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["shutdown_s"] = time.monotonic() - start
    if rank == 0:
        peers = {r: int((report / f"rank{r}.pid").read_text()) for r in range(1, n)}
        out["peers_alive_after_shutdown"] = [r for r, pid in peers.items() if _alive(pid)]
    (report / f"rank{rank}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
