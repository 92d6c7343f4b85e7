"""Measure on the host, in this process (``device-agent run --local``)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from device_agent.deviceinfo import read_thermal_zones
from device_agent.errors import ConfigError
from device_agent.parsers import ThermalState
from device_agent.runtimes.base import (
    Burst,
    BurstResult,
    Item,
    ProgressFn,
    Runner,
    check_runtime,
)
from device_agent.runtimes.engines import make_engine, runtime_version

if TYPE_CHECKING:
    from hwnas.schemas import OperatorBreakdown

CLOCKS = ("auto", "wall", "cpu")


class LocalRunner(Runner):
    """Sessions stay open across bursts, so later bursts need little warm-up."""

    where = "local"

    def __init__(self, runtime: str, threads: int = 1, clock: str = "auto") -> None:
        self.runtime = check_runtime(runtime)
        self.threads = threads
        if clock not in CLOCKS:
            raise ConfigError(f"unknown clock {clock!r}: use one of {', '.join(CLOCKS)}")
        # auto: the thread's CPU clock with one thread (immune to preemption on a shared host,
        # see runtimes/engines.py), the wall clock with more (work then runs on other threads).
        self.cpu_clock = clock == "cpu" or (clock == "auto" and threads == 1)
        if self.cpu_clock and threads != 1:
            raise ConfigError("--clock cpu measures the calling thread only: use it with --threads 1")
        self.runtime_version = runtime_version(runtime)
        self._engines: dict[Path, object] = {}
        # ExecuTorch: what XNNPACK runs of each key's program, for the keys of the batch (state()).
        self._delegation: dict[str, dict[str, object]] = {}
        if runtime == "torchscript":
            import torch

            torch.set_num_threads(threads)

    def prepare(self, items: Sequence[Item]) -> None:
        for item in items:
            engine = self._engine(item)
            if self.runtime == "executorch":
                self._delegation[item.key] = {**engine.delegation, "inputs_set_per_run": engine.inputs_set_per_run}

    def _engine(self, item: Item):
        engine = self._engines.get(item.model)
        if engine is None:
            engine = make_engine(self.runtime, item.model, self.threads, item.input_shape, cpu_clock=self.cpu_clock)
            self._engines[item.model] = engine
        return engine

    def run(
        self, bursts: Sequence[Burst], stop: threading.Event | None = None, progress: ProgressFn | None = None
    ) -> list[BurstResult]:
        results: list[BurstResult] = []
        for i, burst in enumerate(bursts):
            if stop is not None and stop.is_set():
                break
            try:
                engine = self._engine(burst.item)
                samples = engine.burst(burst.warmup, burst.iters, burst.sample_runs)
                results.append(BurstResult(burst, samples, wall_ms=engine.last_wall_ms))
            except Exception as exc:  # noqa: BLE001 - one broken model must not end the batch
                results.append(BurstResult(burst, error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
            if progress is not None:
                progress(i + 1, len(bursts))
        # The host's own thermal zones, read from sysfs (no process, no dumpsys).
        self.last_thermal = ThermalState(None, read_thermal_zones())
        return results

    def forget(self, items: Sequence[Item]) -> None:
        """Close the sessions of ``items`` (after their batch) to bound memory."""
        for item in items:
            self._engines.pop(item.model, None)
            self._delegation.pop(item.key, None)

    def operator_breakdown(self, item: Item) -> OperatorBreakdown | None:
        """ExecuTorch's ETDump of ``item`` run in this process (runtimes/etdump.py); None for the other runtimes."""
        if self.runtime != "executorch":
            return None
        from device_agent.runtimes.etdump import profile_pte

        return profile_pte(item.model, item.input_shape, self.threads)

    def state(self) -> dict[str, object]:
        state: dict[str, object] = {
            "runner": "local",
            "threads": self.threads,
            "clock": "thread_cpu" if self.cpu_clock else "wall",
        }
        if self.runtime == "executorch":
            from device_agent.runtimes.executorch_engine import pool_threads

            # Per key of the batch: "all" | "partial" | "none" | "empty" (search.export.pte_delegation), and the
            # thread pool XNNPACK ran on, read back from ExecuTorch (not just what was asked).
            state["executorch"] = {
                "backend": "xnnpack",
                "pool_threads": pool_threads(),
                "delegated": {k: d["delegated"] for k, d in sorted(self._delegation.items())},
                "portable_ops": {k: d["portable_ops"] for k, d in sorted(self._delegation.items()) if d["portable_ops"]},
                # Keys whose input a run overwrites (memory planning): set again before every timed run.
                "inputs_set_per_run": sorted(k for k, d in self._delegation.items() if d["inputs_set_per_run"]),
            }
        return state

    def close(self) -> None:
        self._engines.clear()
        self._delegation.clear()
