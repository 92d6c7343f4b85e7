"""The measurement protocol: bursts in shuffled interleaved rounds, CV re-measure, canary, cool-down.

On the hosts this was designed on, speed drifts 20-40% between minutes. Measuring one
operator after another turns that drift into table error; measuring every operator once per
round, rounds in a fresh random order, and keeping each burst's minimum, spreads the drift
over all of them (research: lut-fidelity-host.md, protocol P2: ±10% for 97-100% of
networks instead of 10-18%).

A batch (a few dozen operators) is planned as one schedule of bursts, so a device runner can
send it as one shell invocation.
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwnas.schemas import MeasurementResult

from device_agent.parsers import ThermalState
from device_agent.runtimes.base import Burst, BurstResult, Item, ProgressFn, Runner
from device_agent.stats import burst_minimum, summarize, variation

log = logging.getLogger(__name__)


@dataclass
class ProtocolConfig:
    """How each operator is measured (defaults: 10 warm-up and 50 timed runs in 5 bursts)."""

    warmup: int = 10
    iterations: int = 50
    rounds: int = 5  # bursts per operator, one per round
    burst_warmup: int = 2  # untimed runs before every later burst (a phone binary reloads the model)
    cv_threshold: float = 0.05
    max_remeasure: int = 3
    canary_every: int = 8  # a canary burst at the start and after every N operator bursts
    drift_threshold: float = 0.10
    suspect_retries: int = 1
    keep_samples: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.rounds < 1 or self.warmup < 0 or self.burst_warmup < 0:
            raise ValueError("iterations and rounds must be >= 1, warm-ups >= 0")
        self.rounds = min(self.rounds, self.iterations)

    def iters_per_round(self) -> list[int]:
        base, extra = divmod(self.iterations, self.rounds)
        return [base + (1 if r < extra else 0) for r in range(self.rounds)]


def plan(items: Sequence[Item], cfg: ProtocolConfig, canary: Item | None = None,
         rng: random.Random | None = None) -> list[Burst]:
    """One schedule: ``cfg.rounds`` rounds, each every item once in a fresh random order."""
    rng = rng or random.Random(cfg.seed)
    bursts: list[Burst] = []
    since_canary = 0
    canaries = 0

    def add_canary(iters: int) -> None:
        nonlocal canaries, since_canary
        assert canary is not None
        bursts.append(Burst(canary, cfg.warmup if canaries == 0 else cfg.burst_warmup, iters, canary=True))
        canaries += 1
        since_canary = 0

    for r, iters in enumerate(cfg.iters_per_round()):
        order = list(items)
        rng.shuffle(order)
        for item in order:
            if canary is not None and (canaries == 0 or since_canary >= cfg.canary_every):
                add_canary(iters)
            bursts.append(Burst(item, cfg.warmup if r == 0 else cfg.burst_warmup, iters))
            since_canary += 1
    if canary is not None and canaries < 2:
        add_canary(cfg.iters_per_round()[-1])
    elif canary is not None and since_canary > 0:
        add_canary(cfg.iters_per_round()[-1])
    return bursts


def canary_drift(results: Sequence[BurstResult]) -> tuple[float, list[float]]:
    """Largest relative deviation of a canary burst minimum from their median."""
    values = [min(r.samples_ms) for r in results if r.burst.canary and r.samples_ms]
    if len(values) < 2:
        return 0.0, values
    ref = statistics.median(values)
    return (max(abs(v / ref - 1.0) for v in values) if ref > 0 else 0.0), values


@dataclass
class BatchOutcome:
    """What one batch produced: results to upload, keys that failed, and how it went."""

    results: list[MeasurementResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)  # stopped before enough bursts
    state: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False
    # Every finished item's bursts in round order, and its warm-up runs: whole networks
    # (``Item.network``) are summarised from these by the caller, not into ``results``.
    bursts: dict[str, list[list[float]]] = field(default_factory=dict)
    warmups: dict[str, int] = field(default_factory=dict)


def _collect(results: Sequence[BurstResult]) -> tuple[dict[str, list[list[float]]], dict[str, int], dict[str, str]]:
    bursts: dict[str, list[list[float]]] = {}
    warm: dict[str, int] = {}
    errors: dict[str, str] = {}
    for r in results:
        if r.burst.canary:
            continue
        key = r.burst.item.key
        if r.error is not None or not r.samples_ms:
            errors.setdefault(key, r.error or "no samples")
            continue
        bursts.setdefault(key, []).append(r.samples_ms)
        warm[key] = warm.get(key, 0) + r.burst.warmup
    return bursts, warm, errors


def measure_batch(runner: Runner, items: Sequence[Item], cfg: ProtocolConfig, canary: Item | None = None,
                  stop: threading.Event | None = None, progress: ProgressFn | None = None,
                  rng: random.Random | None = None) -> BatchOutcome:
    """Measure ``items`` with the protocol; never raises for one bad operator (it lands in ``failures``)."""
    rng = rng or random.Random(cfg.seed)
    outcome = BatchOutcome()
    stop = stop or threading.Event()
    attempts = 0
    while True:
        schedule = plan(items, cfg, canary, rng)
        results = runner.run(schedule, stop, progress)
        drift, canary_values = canary_drift(results)
        outcome.stopped = stop.is_set() or len(results) < len(schedule)
        if drift > cfg.drift_threshold and attempts < cfg.suspect_retries and not outcome.stopped:
            attempts += 1
            log.warning("canary drifted %.1f%% during the batch (> %.0f%%): measuring the batch again",
                        drift * 100, cfg.drift_threshold * 100)
            continue
        break
    bursts, warm, errors = _collect(results)
    need = max(1, (cfg.rounds + 1) // 2)
    done: dict[str, list[list[float]]] = {}
    for item in items:
        got = bursts.get(item.key, [])
        if len(got) >= (need if outcome.stopped else 1):
            done[item.key] = got
        elif item.key in errors and not got:
            outcome.failures[item.key] = errors[item.key]
        else:
            outcome.unfinished.append(item.key)
    # Coefficient of variation too high: measure those again (keep the steadiest attempt).
    remeasured: dict[str, int] = {}
    cvs = {k: variation(v) for k, v in done.items()}
    by_key = {item.key: item for item in items}
    for _ in range(cfg.max_remeasure):
        noisy = [by_key[k] for k, cv in cvs.items() if cv > cfg.cv_threshold]
        if not noisy or stop.is_set():
            break
        again = runner.run(plan(noisy, cfg, None, rng), stop, None)
        more, more_warm, _ = _collect(again)
        for key, new in more.items():
            remeasured[key] = remeasured.get(key, 0) + 1
            if len(new) >= len(done[key]) and variation(new) < cvs[key]:
                done[key], warm[key], cvs[key] = new, more_warm[key], variation(new)
    for key, got in done.items():
        outcome.bursts[key], outcome.warmups[key] = got, warm.get(key, 0)
        if not by_key[key].network:
            outcome.results.append(summarize(key, got, warm.get(key, 0), cfg.keep_samples))
    outcome.state = {
        "canary": {"key": canary.key if canary else None, "burst_min_ms": [round(v, 6) for v in canary_values],
                   "drift": round(drift, 4), "remeasured_batches": attempts},
        "suspect": drift > cfg.drift_threshold,
        "cv": {k: round(v, 4) for k, v in cvs.items()},
        "cv_remeasured": remeasured,
        "protocol": {"warmup": cfg.warmup, "iterations": cfg.iterations, "rounds": cfg.rounds,
                     "burst_warmup": cfg.burst_warmup, "estimator": "min_ms = median over bursts of burst minimum"},
    }
    return outcome


@dataclass
class CoolDown:
    """Wait before a batch while the device is hot (thermal status > ``max_status`` or too warm)."""

    max_status: int = 0
    max_temp_c: float | None = 55.0
    poll_s: float = 5.0
    max_wait_s: float = 600.0

    def hot(self, state: ThermalState) -> bool:
        if state.status is not None and state.status > self.max_status:
            return True
        t = state.max_temp_c
        return self.max_temp_c is not None and t is not None and t > self.max_temp_c

    def wait(self, read: Callable[[], ThermalState], stop: threading.Event | None = None,
             sleep: Callable[[float], None] = time.sleep) -> tuple[float, ThermalState]:
        """Poll ``read`` until the device is cool (or ``max_wait_s``); return (seconds waited, last state)."""
        start = time.monotonic()
        state = read()
        announced = False
        while self.hot(state) and time.monotonic() - start < self.max_wait_s:
            if stop is not None and stop.is_set():
                break
            if not announced:
                log.warning("device is hot (thermal status %s, max %.1f °C): cooling down before the next batch",
                            state.status, state.max_temp_c or float("nan"))
                announced = True
            sleep(self.poll_s)
            state = read()
        return time.monotonic() - start, state
