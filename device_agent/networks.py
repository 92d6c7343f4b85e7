"""Whole networks of a job, measured in the same interleaved shuffled rounds as the job's keys.

A latency table predicts a network only as well as its entries and the network are measured
under the same conditions. On a drifting host, measuring the table first and the networks
later turns drift into prediction bias (on a 2-core host: −15% at 224×224 input, +20% at
32×32, from that alone; interleaved rounds brought it to +2% / −1%). So a job that carries networks is measured as ONE schedule: every round measures
every operator and every network once, in a fresh random order (protocol P2), and each
item's value is the median over rounds of its burst minimum.

Two parts of the operator protocol are left out here, because both measure a subset again
in a later time window, which is exactly what interleaving avoids: the per-key CV
re-measure and the canary's whole-batch repeat. The spread a drifting host leaves is
reported instead: every network's per-round burst minima are uploaded (``samples_ms``),
from which ``hwnas validate`` computes the noise floor (even rounds against odd rounds).
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from device_agent.errors import BenchmarkError, DeviceUnreachable
from device_agent.faults import split_failures
from device_agent.runtimes.base import Item, check_runtime
from device_agent.stats import percentile
from hwnas.client import ProfilerError
from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import JobFail, MeasurementResult, NetworkResult, NetworkSpec

if TYPE_CHECKING:
    from device_agent.jobloop import Agent
    from device_agent.runtimes.base import Runner

log = logging.getLogger("device_agent")

NETWORK_PREFIX = "net-"
BATCH_ATTEMPTS = 3  # whole-schedule retries after the device dropped


def summarize_network(arch_id: str, bursts: Sequence[Sequence[float]], warmup: int) -> NetworkResult:
    """A network's result: ``min_ms`` = median of the burst minima (the table's estimator), ``samples_ms`` = the minima in round order."""
    samples = sorted(float(x) for b in bursts for x in b)
    if not samples:
        raise ValueError(f"network {arch_id}: no samples")
    minima = [min(b) for b in bursts if b]
    median = statistics.median(samples)
    return NetworkResult(
        arch_id=arch_id,
        median_ms=median,
        p10_ms=min(percentile(samples, 10), median),
        p90_ms=max(percentile(samples, 90), median),
        mean_ms=statistics.fmean(samples),
        std_ms=statistics.pstdev(samples),
        min_ms=min(statistics.median(minima), median),
        iterations=len(samples),
        warmup=warmup,
        samples_ms=[round(m, 6) for m in minima],
    )


def _fail_network(agent: Agent, job_id: int | None, arch_id: str, reason: str) -> None:
    log.error("cannot measure network %s: %s", arch_id, reason)
    if job_id is not None and agent.client is not None:
        try:
            agent.client.fail_key(job_id, JobFail(arch_id=arch_id, error=reason[:4000] or "failed"))
        except ProfilerError as exc:
            log.warning("could not report the failure of network %s: %s", arch_id, exc)


def add_breakdowns(runner: Runner, by_key: dict[str, Item], nets: dict[str, NetworkResult]) -> None:
    """Attach the runtime's per-operator profile to each measured network (ExecuTorch: its ETDump).

    After the rounds, never inside them: a traced run pays the tracer's cost, so the profile is a pass
    of its own and the network's latency stays the untraced rounds'. A profile that cannot be made
    costs the network its breakdown, not its measurement.
    """
    for arch_id in list(nets):
        item = by_key[NETWORK_PREFIX + arch_id]
        try:
            breakdown = runner.operator_breakdown(item)
        except Exception as exc:  # noqa: BLE001 - the measurement is complete without it
            log.warning("no per-operator breakdown of network %s: %s: %s", arch_id, type(exc).__name__, exc)
            continue
        if breakdown is not None:
            nets[arch_id] = nets[arch_id].model_copy(update={"operator_breakdown": breakdown})


def build_network_items(agent: Agent, networks: Sequence[NetworkSpec], runtime: str, job_id: int | None) -> list[Item]:
    """Export every network (cached by arch id); a network that cannot be built is reported failed."""
    items = []
    for spec in networks:
        try:
            items.append(agent.cache.network(spec.arch_id, spec.arch, spec.input_shape, runtime))
        except BenchmarkError as exc:
            _fail_network(agent, job_id, spec.arch_id, exc.reason)
    return items


def measure_job_with_networks(
    agent: Agent,
    keys: Sequence[str],
    networks: Sequence[NetworkSpec],
    runtime: str,
    threads: int,
    job_id: int | None = None,
    upload: bool = True,
    lost: threading.Event | None = None,
) -> tuple[dict[str, MeasurementResult], dict[str, NetworkResult]]:
    """Measure ``keys`` and ``networks`` in one interleaved schedule; upload both; return (operator, network) results."""
    from device_agent.progress import Progress

    check_runtime(runtime)
    run_id = uuid.uuid4()
    failed: dict[str, str] = {}
    wanted = [k for k in dict.fromkeys(keys) if k != OVERHEAD_KEY]
    with Progress(f"building {runtime} models") as bar:
        items, build_failures = agent.build_items(wanted, runtime, bar.update)
        net_items = build_network_items(agent, networks, runtime, job_id)
    for key, reason in build_failures.items():
        agent.fail_key(job_id, key, reason, failed)
    overhead: Item | None = None
    if agent.cfg.measure_overhead:
        try:
            overhead = agent.cache.overhead(runtime)
        except BenchmarkError as exc:
            log.warning("no empty-model overhead this run: %s", exc.reason)
    everything = ([overhead] if overhead else []) + items + net_items
    runner = agent.runner(runtime, threads)
    agent.with_reconnect(lambda: runner.stage(everything), first=True)
    protocol = dataclasses.replace(agent.cfg.protocol, max_remeasure=0, suspect_retries=0)
    log.info("measuring %d operator(s) and %d network(s) in %d interleaved round(s)", len(items), len(net_items), protocol.rounds)
    ops: dict[str, MeasurementResult] = {}
    nets: dict[str, NetworkResult] = {}
    outcome = None
    with Progress(f"measuring on {agent.name or agent.device.serial}", total=len(everything)) as bar:
        faults = 0
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            if agent.stop.is_set() or (lost is not None and lost.is_set()):
                break
            try:
                outcome, state = agent.measure(everything, runner, None, bar.burst, protocol=protocol)
                outcome.failures, device_faults = split_failures(outcome.failures)
                faults = agent.handle_device_faults(device_faults, runner, faults)
                if not device_faults:
                    break
                outcome = None  # the program could not run: the rounds again, with its files pushed again
            except DeviceUnreachable as exc:
                if attempt == BATCH_ATTEMPTS:
                    raise
                log.warning("lost %s during the job's rounds: %s; measuring them again", agent.device.serial, exc)
                agent.with_reconnect(lambda: None)
                runner.forget_files()
        if outcome is not None:
            by_key = {it.key: it for it in everything}
            for key, reason in outcome.failures.items():
                if key == OVERHEAD_KEY:
                    log.warning("the empty-model overhead could not be measured this run")
                elif by_key[key].network:
                    _fail_network(agent, job_id, key[len(NETWORK_PREFIX) :], reason)
                else:
                    agent.fail_key(job_id, key, reason, failed)
            for key, bursts in outcome.bursts.items():
                if by_key[key].network:
                    arch_id = key[len(NETWORK_PREFIX) :]
                    nets[arch_id] = summarize_network(arch_id, bursts, outcome.warmups.get(key, 0))
            if not agent.stop.is_set():  # a stop uploads what is complete without a further pass
                add_breakdowns(runner, by_key, nets)
            ops = {r.key: r for r in outcome.results}
            state = {**state, "interleaved_networks": len(net_items)}
            # Uploaded even after a stop: what finished enough rounds is complete (see measure_batch).
            if upload and ops:
                agent.upload_batch(run_id, runtime, threads, job_id, list(ops.values()), state, runner)
            if upload and nets:  # the operators' path: retried to --upload-deadline-s, then spooled
                agent.upload_batch(run_id, runtime, threads, job_id, list(nets.values()), state, runner)
            bar.advance(len(ops) + len(nets))
    runner.forget(everything)
    return ops, nets


__all__ = ["NETWORK_PREFIX", "measure_job_with_networks", "summarize_network"]
