"""The measurement protocol: bursts in shuffled interleaved rounds, sized by time, CV re-measure, canary, cool-down.

On the hosts this was designed on, speed drifts 20-40% between minutes. Measuring one
operator after another turns that drift into table error; measuring every operator once per
round, rounds in a fresh random order, and keeping each burst's minimum, spreads the drift
over all of them. Measured on a 2-core host (ONNX Runtime, one thread, 40 random FBNet
networks per layout): with this protocol the table predicted 97.5% (224×224 input) and 100%
(32×32) of the networks within ±10%, MAPE 3.2% / 2.3%; one operator model after another
managed 17.5% / 10% within ±10% (MAPE 17.9% / 21.6%).

What a burst costs beyond its timed runs — on a phone a new process, a new session or model
load and the warm-up runs; through ADB its share of the batch's shell command — is paid per
burst, so bursts are sized by **time**, not by count: a *probe* round first runs every item a
fixed number of times to learn its run time and the per-burst cost (its runs size the rounds,
they are not samples of the table), then every round gives each burst ``burst_cost_factor`` ×
that cost of timed runs (between ``min_burst_ms`` and ``max_burst_ms``, at least
``iterations / rounds`` runs). The canary's bursts are sized the same way: a short canary
burst can fall entirely into a moment when another process shares the core (seen: minima
doubled in 2 of 7 one-millisecond canary bursts on a loaded 2-core host), which reads as drift
and re-measures the whole batch. A **sample** is K back-to-back runs, K chosen so a
sample lasts at least ``sample_ms``: timer reads, scheduler ticks and cache effects of a
10 µs operator then average out inside a sample instead of making its minimum.

A batch (a few dozen operators) is planned as one schedule of bursts per round group, so a
device runner sends it as one shell invocation for the probe and one for the rest.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwnas.schemas import MeasurementResult

from device_agent.parsers import ThermalState
from device_agent.runtimes.base import Burst, BurstResult, Item, ProgressFn, Runner
from device_agent.stats import median, summarize, variation

log = logging.getLogger(__name__)
clock: Callable[[], float] = time.perf_counter  # seconds; what a schedule took, for the per-burst cost


@dataclass
class ProtocolConfig:
    """How each operator is measured (defaults: 10 warm-up runs, at least 50 timed runs, 5 rounds, time-sized bursts)."""

    warmup: int = 10
    iterations: int = 50  # at least this many timed runs per operator, over all rounds
    rounds: int = 5  # bursts per operator, one per round
    burst_warmup: int = 2  # untimed runs before every later burst (a phone binary reloads the model)
    cv_threshold: float = 0.05
    max_remeasure: int = 3
    canary_every: int = 16  # a canary burst at the start and after every N operator bursts
    drift_threshold: float = 0.10
    suspect_retries: int = 1
    keep_samples: bool = True
    seed: int | None = None
    # Time sizing. ``burst_ms`` fixes the timed time of a burst; None sizes it from the per-burst
    # cost the probe round measured (× ``burst_cost_factor``, within [min_burst_ms, max_burst_ms]);
    # 0 turns sizing off (every burst ``iterations / rounds`` runs, samples of one run).
    burst_ms: float | None = None
    burst_cost_factor: float = 4.0
    min_burst_ms: float = 5.0
    max_burst_ms: float = 250.0
    sample_ms: float = 0.1  # a sample is K runs lasting at least this long
    max_samples: int = 100  # per burst (K grows beyond sample_ms to keep uploads bounded)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.rounds < 1 or self.warmup < 0 or self.burst_warmup < 0:
            raise ValueError("iterations and rounds must be >= 1, warm-ups >= 0")
        if self.burst_ms is not None and self.burst_ms < 0:
            raise ValueError("burst_ms must be >= 0")
        self.rounds = min(self.rounds, self.iterations)

    def iters_per_round(self) -> list[int]:
        base, extra = divmod(self.iterations, self.rounds)
        return [base + (1 if r < extra else 0) for r in range(self.rounds)]

    @property
    def sized(self) -> bool:
        return self.burst_ms != 0


@dataclass(frozen=True)
class Sizing:
    """Timed runs of one burst and the runs per sample (K)."""

    iters: int
    sample_runs: int = 1


def size_burst(run_ms: float, budget_ms: float, min_iters: int, cfg: ProtocolConfig) -> Sizing:
    """Enough runs of a ``run_ms`` item to fill ``budget_ms`` (at least ``min_iters``), in samples of K runs.

    K is the fewest runs lasting ``cfg.sample_ms``, raised so a burst has at most
    ``cfg.max_samples`` samples; the run count is a multiple of K.
    """
    run_ms = max(run_ms, 1e-6)
    iters = max(min_iters, math.ceil(budget_ms / run_ms))
    k = max(1, math.ceil(cfg.sample_ms / run_ms), math.ceil(iters / cfg.max_samples))
    k = min(k, iters)
    return Sizing(math.ceil(iters / k) * k, k)


def regroup(samples: Sequence[float], k: int) -> list[float]:
    """Per-run values as samples of ``k`` back-to-back runs (their means); a short tail is dropped."""
    if k <= 1 or not samples:
        return list(samples)
    if len(samples) < k:
        return [sum(samples) / len(samples)]
    n = len(samples) // k
    return [sum(samples[i * k : (i + 1) * k]) / k for i in range(n)]


def plan(
    items: Sequence[Item],
    cfg: ProtocolConfig,
    canary: Item | None = None,
    rng: random.Random | None = None,
    sizes: dict[str, Sizing] | None = None,
    rounds: Sequence[int] | None = None,
    probe: bool = False,
    first: bool = True,
) -> list[Burst]:
    """One schedule: the given rounds (default all), each every item once in a fresh random order.

    ``sizes`` (by key) gives a burst's runs and K; without it every burst has the round's share of
    ``cfg.iterations`` in samples of one run. ``first``: the schedule starts the items' measuring, so
    their first bursts (and the first canary) get ``cfg.warmup`` warm-up runs, later ones ``burst_warmup``.
    """
    rng = rng or random.Random(cfg.seed)
    per_round = cfg.iters_per_round()
    rounds = list(range(cfg.rounds)) if rounds is None else list(rounds)
    bursts: list[Burst] = []
    since_canary = 0
    canaries = 0

    def burst(item: Item, r: int, is_canary: bool, warm: bool) -> Burst:
        size = (sizes or {}).get(item.key) or Sizing(per_round[r])
        return Burst(
            item,
            cfg.warmup if warm else cfg.burst_warmup,
            size.iters,
            canary=is_canary,
            sample_runs=size.sample_runs,
            probe=probe,
        )

    for n, r in enumerate(rounds):
        order = list(items)
        rng.shuffle(order)
        for item in order:
            if canary is not None and (canaries == 0 or since_canary >= cfg.canary_every):
                bursts.append(burst(canary, r, True, first and canaries == 0))
                canaries += 1
                since_canary = 0
            bursts.append(burst(item, r, False, first and n == 0))
            since_canary += 1
    if canary is not None and rounds and (canaries < 2 or since_canary > 0):
        bursts.append(burst(canary, rounds[-1], True, False))
    return bursts


def canary_drift(results: Sequence[BurstResult]) -> tuple[float, list[float]]:
    """How far the canary's burst minima moved from their median: the second largest deviation (the largest
    of two or fewer), probe bursts left out.

    One canary burst off alone is a moment another process shared the core, which the interleaved
    rounds already absorb (each operator's value is a median over rounds); two are drift.
    """
    values = [min(r.samples_ms) for r in results if r.burst.canary and not r.burst.probe and r.samples_ms]
    if len(values) < 2:
        return 0.0, values
    ref = median(values)
    if ref <= 0:
        return 0.0, values
    deviations = sorted(abs(v / ref - 1.0) for v in values)
    return (deviations[-2] if len(deviations) >= 3 else deviations[-1]), values


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
    # Wall time of the timed runs behind each finished item's samples (ms): what measuring it
    # needed at the least, the denominator of the overhead figures.
    timed_wall_ms: dict[str, float] = field(default_factory=dict)
    bursts_run: int = 0  # every burst run for the batch: canaries, probes and re-measures included


def _collect(
    results: Sequence[BurstResult],
) -> tuple[dict[str, list[list[float]]], dict[str, int], dict[str, str], dict[str, float]]:
    bursts: dict[str, list[list[float]]] = {}
    warm: dict[str, int] = {}
    errors: dict[str, str] = {}
    wall: dict[str, float] = {}
    for r in results:
        if r.burst.canary:
            continue
        key = r.burst.item.key
        if r.error is not None or not r.samples_ms:
            errors.setdefault(key, r.error or "no samples")
            continue
        bursts.setdefault(key, []).append(r.samples_ms)
        warm[key] = warm.get(key, 0) + r.burst.warmup
        wall[key] = wall.get(key, 0.0) + r.wall_ms
    return bursts, warm, errors, wall


@dataclass
class _Probe:
    """What the probe round taught: each item's run time and what a burst costs beyond its timed runs."""

    run_ms: dict[str, float]
    burst_cost_ms: float


def _learn(results: Sequence[BurstResult], wall_ms: float) -> _Probe:
    run_ms: dict[str, float] = {}
    overhead = wall_ms
    for r in results:
        if r.error is None and r.samples_ms:
            run_ms[r.burst.item.key] = median(r.samples_ms)
            overhead -= r.wall_ms + r.burst.warmup * run_ms[r.burst.item.key]
    return _Probe(run_ms, max(0.0, overhead / max(1, len(results))))


def _sizes(probe: _Probe, cfg: ProtocolConfig) -> tuple[dict[str, Sizing], float]:
    if cfg.burst_ms is not None:
        budget = cfg.burst_ms
    else:
        budget = min(cfg.max_burst_ms, max(cfg.min_burst_ms, cfg.burst_cost_factor * probe.burst_cost_ms))
    min_iters = max(cfg.iters_per_round())
    return {k: size_burst(v, budget, min_iters, cfg) for k, v in probe.run_ms.items()}, budget


def _run(
    runner: Runner, schedule: list[Burst], stop: threading.Event, progress: ProgressFn | None, offset: int, total: int
) -> tuple[list[BurstResult], float]:
    start = clock()
    shifted = None if progress is None else (lambda done, _n: progress(offset + done, total))
    results = runner.run(schedule, stop, shifted)
    return results, (clock() - start) * 1000.0


def _schedule(
    runner: Runner,
    items: Sequence[Item],
    cfg: ProtocolConfig,
    canary: Item | None,
    stop: threading.Event,
    progress: ProgressFn | None,
    rng: random.Random,
    sizes: dict[str, Sizing] | None,
) -> tuple[list[BurstResult], int, dict[str, Sizing] | None, dict[str, Any]]:
    """Run every round of ``items``: a probe round first when ``sizes`` are not known yet.

    Returns the results, the number of bursts planned, the sizes used and what sizing learnt.
    """
    info: dict[str, Any] = {}
    if not cfg.sized:
        schedule = plan(items, cfg, canary, rng)
        results, _ = _run(runner, schedule, stop, progress, 0, len(schedule))
        return results, len(schedule), None, info
    if sizes is None or any(it.key not in sizes for it in items):
        probe_items = list(items) + ([canary] if canary is not None else [])
        probe_plan = plan(probe_items, cfg, None, rng, rounds=[0], probe=True)
        later = len(items) * cfg.rounds + (2 + len(items) * cfg.rounds // cfg.canary_every if canary else 0)
        probe_results, wall = _run(runner, probe_plan, stop, progress, 0, len(probe_plan) + later)
        if stop.is_set() or len(probe_results) < len(probe_plan):
            return [], len(probe_plan), None, {"bursts_run": len(probe_results)}
        learnt = _learn(probe_results, wall)
        if not learnt.run_ms:  # nothing ran (the program cannot start?): the probe's errors are the answer
            return [r for r in probe_results if not r.burst.canary], len(items), None, {"bursts_run": len(probe_results)}
        sizes, budget = _sizes(learnt, cfg)
        info = {"burst_ms": round(budget, 3), "burst_cost_ms": round(learnt.burst_cost_ms, 3), "bursts_run": len(probe_results)}
        # The probe's few runs only size the rounds; they are not samples of the table (a mean of
        # 10 cold-ish runs is not comparable with the minimum of 100 samples of K runs).
        rest = plan(items, cfg, canary, rng, sizes, first=False)
        more, _ = _run(runner, rest, stop, progress, len(probe_plan), len(probe_plan) + len(rest))
        info["bursts_run"] += len(more)
        return more, len(rest), sizes, info
    schedule = plan(items, cfg, canary, rng, sizes, first=False)
    results, _ = _run(runner, schedule, stop, progress, 0, len(schedule))
    return results, len(schedule), sizes, info


def measure_batch(
    runner: Runner,
    items: Sequence[Item],
    cfg: ProtocolConfig,
    canary: Item | None = None,
    stop: threading.Event | None = None,
    progress: ProgressFn | None = None,
    rng: random.Random | None = None,
) -> BatchOutcome:
    """Measure ``items`` with the protocol; never raises for one bad operator (it lands in ``failures``)."""
    rng = rng or random.Random(cfg.seed)
    outcome = BatchOutcome()
    stop = stop or threading.Event()
    attempts = 0
    sizes: dict[str, Sizing] | None = None
    sizing: dict[str, Any] = {}
    measured: list[BurstResult] = []
    while True:
        results, planned, sizes, learnt = _schedule(runner, items, cfg, canary, stop, progress, rng, sizes)
        outcome.bursts_run += learnt.pop("bursts_run", len(results))
        sizing = learnt or sizing
        measured.extend(results)
        drift, canary_values = canary_drift(results)
        outcome.stopped = stop.is_set() or len(results) < planned
        if drift > cfg.drift_threshold and attempts < cfg.suspect_retries and not outcome.stopped:
            attempts += 1
            # More rounds, not a replacement: each value is a median over rounds, so the rounds
            # measured while the device drifted are outvoted, and no measured time is thrown away.
            log.warning(
                "canary drifted %.1f%% during the batch (> %.0f%%): measuring the batch again",
                drift * 100,
                cfg.drift_threshold * 100,
            )
            continue
        break
    bursts, warm, errors, wall = _collect(measured)
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
    # Burst minima too spread: measure those again, adding rounds (their value is the median over all).
    remeasured: dict[str, int] = {}
    cvs = {k: variation(v) for k, v in done.items()}
    by_key = {item.key: item for item in items}
    for _ in range(cfg.max_remeasure):
        noisy = [by_key[k] for k, cv in cvs.items() if cv > cfg.cv_threshold]
        if not noisy or stop.is_set():
            break
        again = runner.run(plan(noisy, cfg, None, rng, sizes, first=sizes is None), stop, None)
        outcome.bursts_run += len(again)
        more, more_warm, _, more_wall = _collect(again)
        for key, new in more.items():
            remeasured[key] = remeasured.get(key, 0) + 1
            done[key] = done[key] + new
            warm[key] = warm.get(key, 0) + more_warm[key]
            wall[key] = wall.get(key, 0.0) + more_wall[key]
            cvs[key] = variation(done[key])
    for key, got in done.items():
        outcome.bursts[key], outcome.warmups[key] = got, warm.get(key, 0)
        outcome.timed_wall_ms[key] = wall.get(key, 0.0)
        if not by_key[key].network:
            outcome.results.append(summarize(key, got, warm.get(key, 0), cfg.keep_samples))
    outcome.state = {
        "canary": {
            "key": canary.key if canary else None,
            "burst_min_ms": [round(v, 6) for v in canary_values],
            "drift": round(drift, 4),
            "remeasured_batches": attempts,
        },
        "suspect": drift > cfg.drift_threshold,
        "cv": {k: round(v, 4) for k, v in cvs.items()},
        "cv_remeasured": remeasured,
        "protocol": {
            "warmup": cfg.warmup,
            "iterations": cfg.iterations,
            "rounds": cfg.rounds,
            "burst_warmup": cfg.burst_warmup,
            **sizing,
            "sample_runs": {k: v.sample_runs for k, v in (sizes or {}).items() if k in done},
            "estimator": "min_ms = median over bursts of the minimum sample (a sample: the mean of "
            "sample_runs back-to-back runs)",
        },
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

    def wait(
        self, read: Callable[[], ThermalState], stop: threading.Event | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> tuple[float, ThermalState]:
        """Poll ``read`` until the device is cool (or ``max_wait_s``); return (seconds waited, last state)."""
        start = time.monotonic()
        state = read()
        announced = False
        while self.hot(state) and time.monotonic() - start < self.max_wait_s:
            if stop is not None and stop.is_set():
                break
            if not announced:
                log.warning(
                    "device is hot (thermal status %s, max %.1f °C): cooling down before the next batch",
                    state.status,
                    state.max_temp_c or float("nan"),
                )
                announced = True
            sleep(self.poll_s)
            state = read()
        return time.monotonic() - start, state
