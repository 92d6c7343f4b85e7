"""The timing loop of the in-process engines: back-to-back runs, one clock reading per sample."""

from __future__ import annotations

import time
from typing import Any


def timed(run: Any, iters: int, sample_runs: int, engine: Any) -> list[float]:
    """Time ``iters`` runs as ``iters // sample_runs`` back-to-back blocks; each block's mean per run, in ms.

    One clock reading per block, not per run: for a 10 µs operator the per-run reading (and, with
    the thread-CPU clock, its system call) would be a visible part of what is measured. Sets
    ``engine.last_wall_ms``: the wall time of the timed runs, whatever ``engine.clock`` is.
    """
    k = max(1, min(sample_runs, iters)) if iters else 1
    n = iters // k
    clock = engine.clock
    out = [0] * n
    wall = time.perf_counter_ns()
    if k == 1:
        for i in range(n):
            t0 = clock()
            run()
            out[i] = clock() - t0
    else:
        block = range(k)
        for i in range(n):
            t0 = clock()
            for _ in block:
                run()
            out[i] = clock() - t0
    engine.last_wall_ms = (time.perf_counter_ns() - wall) / 1e6
    scale = 1e6 * k
    return [t / scale for t in out]
