"""The agent: register the device, claim jobs, measure them batch by batch, upload, repeat.

Nothing is lost: every batch is uploaded as soon as it is measured (one run id per job
claim, so a retried upload stores nothing twice); the lease is heartbeated from a thread;
a dropped device is reconnected with back-off and the job goes on with its pending keys;
when the device stays away the job is given back with a clear log line; a stop request
(Ctrl-C) finishes the current burst, uploads what is complete and gives the job back.

Its parts live beside it: what it is told (``config.py``), reconnecting (``reconnect.py``), uploads and the spool
(``uploads.py``), the lease (``heartbeat.py``), the checks before any claim (``preflight.py``), whole networks
(``networks.py``), the runners (``runtimes/``).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hwnas.client import ConflictError, ProfilerClient, ProfilerError, ServerUnreachable
from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import (
    JobClaim,
    JobClaimed,
    JobFail,
    JobHeartbeat,
    MeasurementBatch,
    MeasurementResult,
    NetworkMeasurementBatch,
    NetworkResult,
)

from device_agent.config import AgentConfig
from device_agent.deviceinfo import PhoneFacts, read_facts, read_thermal
from device_agent.errors import AgentError, BenchmarkError, ConfigError, DeviceFault, DeviceUnreachable, SetupFault
from device_agent.faults import PINNING, SETUP, STORAGE, classify, fix_for, setup_fix, split_failures
from device_agent.heartbeat import Heartbeat
from device_agent.models import ModelCache
from device_agent.networks import measure_job_with_networks
from device_agent.parsers import ThermalState
from device_agent.platforms.base import Device
from device_agent.preflight import preflight as run_preflight
from device_agent.protocol import BatchOutcome, ProtocolConfig, measure_batch
from device_agent.reconnect import with_reconnect
from device_agent.runtimes.base import Item, Runner, check_phone_runtime, check_runtime
from device_agent.runtimes.binary import BinaryRunner
from device_agent.uploads import Uploads

log = logging.getLogger("device_agent")
STATUS_EVERY = 8  # batches between thermal-status reads while sysfs temperatures stay cool


class Agent:
    """One device (phone or host), one server, any number of jobs."""

    def __init__(
        self,
        device: Device,
        cfg: AgentConfig,
        client: ProfilerClient | None = None,
        make_client: Callable[[], ProfilerClient] | None = None,
        local: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.device = device
        self.cfg = cfg
        self.client = client
        self.make_client = make_client
        self.local = local
        self.stop = stop or threading.Event()
        self.cache = ModelCache(cfg.cache_dir, cfg.bytecode_version)
        self.agent_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"[:128]
        self.facts: PhoneFacts | None = None
        self.name: str | None = cfg.name
        self._runners: dict[tuple[str, int], Runner] = {}  # --local: in-process
        self._phone_runners: dict[tuple[str, int], BinaryRunner] = {}
        self.uploads = Uploads(self._require_client, self.cache.root.parent / "spool", cfg.upload_deadline_s)
        self._skipped_jobs: set[int] = set()
        self._thermal_source: bool | None = None
        self._status_age = 0  # batches since the thermal status (dumpsys) was last read
        self.timings: dict[str, float] = {}  # seconds spent staging files / opening sessions

    # -- device ------------------------------------------------------------------------------
    def connect(self) -> PhoneFacts:
        """Connect (once: a device never reached is a wrong address, not a dropped link) and read what it is."""
        try:
            self.device.connect()
        except DeviceUnreachable as exc:
            if exc.explained:  # says what to do itself (an unanswered RSA prompt, USB): no address hint
                raise
            raise DeviceUnreachable(
                f"{exc}; never reached {self.device.serial}, so not retrying: check the address, that the phone is on "
                "this network with `adb tcpip 5555` run on it (or on USB), and that `adb connect "
                f"{self.device.serial}` works from here"
            ) from None
        self.facts = self.with_reconnect(lambda: read_facts(self.device), first=True)
        self.name = self.cfg.name or self.facts.default_name()
        return self.facts

    def register(self) -> str:
        """``PUT /devices/{name}``: what the device is, stored on the server."""
        assert self.facts is not None and self.name is not None
        self._require_client().put_device(self.name, self.facts.device_info())
        log.info("registered %s as %s", self.device.serial, self.name)
        return self.name

    def with_reconnect(self, action: Callable[[], Any], first: bool = False) -> Any:
        """Run ``action``; while the device is unreachable, reconnect with back-off for ``cfg.reconnect_s`` (reconnect.py)."""
        return with_reconnect(self.device, self.cfg, self.stop, action, first)

    def runner(self, runtime: str, threads: int) -> Runner:
        """The runner for ``runtime`` at ``threads`` (one per pair, kept open): in-process with ``--local``, else
        the phone's benchmark program."""
        if not self.local:
            return self.phone_runner(runtime, threads)
        check_runtime(runtime)
        key = (runtime, threads)
        if key not in self._runners:
            from device_agent.runtimes.local import LocalRunner

            self._runners[key] = LocalRunner(runtime, threads, clock=self.cfg.clock)
        return self._runners[key]

    def phone_runner(self, runtime: str, threads: int) -> BinaryRunner:
        """The phone's benchmark program for ``runtime`` at ``threads`` (one per pair, kept open)."""
        check_phone_runtime(runtime)  # before the program: a host-only runtime has no phone program to name
        key = (runtime, threads)
        if key not in self._phone_runners:
            # Without --benchmark-binary the phone's own program (bin/<tool> in its work folder) runs.
            self._phone_runners[key] = BinaryRunner(
                self.device,
                runtime,
                threads,
                self.cfg.binaries.get(runtime),
                self.facts,
                runtime_version=self.cfg.runtime_version,
                pin=self.cfg.pin,
                read_timeout_s=self.cfg.read_timeout_s,
                libs=self.cfg.libs,
            )
        return self._phone_runners[key]

    def _all_runners(self) -> list[Runner]:
        return [*self._runners.values(), *self._phone_runners.values()]

    # -- measuring ---------------------------------------------------------------------------
    def build_items(
        self, keys: Sequence[str], runtime: str, progress: Callable[[int, int], None] | None = None
    ) -> tuple[list[Item], dict[str, str]]:
        """Models for ``keys`` (cached by key); keys whose model cannot be built come back as failures."""
        items: list[Item] = []
        failures: dict[str, str] = {}
        for i, key in enumerate(keys):
            try:
                items.append(self.cache.item(key, runtime))
            except BenchmarkError as exc:
                failures[key] = exc.reason
            if progress is not None:
                progress(i + 1, len(keys))
        return items, failures

    def measure(
        self,
        items: Sequence[Item],
        runner: Runner,
        canary: Item | None,
        progress: Callable[[int, int], None] | None = None,
        protocol: ProtocolConfig | None = None,
    ) -> tuple[BatchOutcome, dict[str, Any]]:
        """One batch: cool down if hot, make sure files are there, measure with the protocol (default: the agent's)."""
        sysfs = runner.last_thermal  # read by the previous batch's own script: no round trip
        if self._thermal_source is False:
            waited, thermal = 0.0, ThermalState(None, {})
        elif sysfs is not None and not self.cfg.cooldown.hot(sysfs) and self._status_age < STATUS_EVERY:
            waited, thermal = 0.0, sysfs
            self._status_age += 1
        else:
            self._status_age = 0
            waited, thermal = self.cfg.cooldown.wait(lambda: read_thermal(self.device), self.stop)
            # A host without thermal sensors (a VM) never gets any: stop asking every batch.
            self._thermal_source = thermal.status is not None or bool(thermal.temperatures_c)
        if self.taskset_refused and runner.taskset_refused is None:
            runner.unpin(self.taskset_refused)  # refused once: every runner runs unpinned
        start = time.perf_counter()
        runner.prepare(list(items) + ([canary] if canary else []))
        self.timings["prepare_s"] = self.timings.get("prepare_s", 0.0) + time.perf_counter() - start
        outcome = measure_batch(runner, items, protocol or self.cfg.protocol, canary, self.stop, progress)
        # Runs of 0 ms read from result files, all runners together (profile_overhead's zero_runs; 0 on a sound parse).
        self.timings["zero_runs"] = sum(r.zero_runs for r in self._all_runners())
        # What the kept samples took to run (wall clock): the least a table build can cost.
        self.timings["timed_wall_s"] = self.timings.get("timed_wall_s", 0.0) + sum(outcome.timed_wall_ms.values()) / 1e3
        self.timings["bursts"] = self.timings.get("bursts", 0) + outcome.bursts_run
        if "burst_ms" in outcome.state["protocol"]:
            self.timings["burst_ms"] = outcome.state["protocol"]["burst_ms"]
        state: dict[str, Any] = {
            "thermal_before": {"status": thermal.status, "temperatures_c": thermal.temperatures_c},
            "cooled_down_s": round(waited, 1),
            "device": {
                k: v
                for k, v in (self.facts.device_info().model_dump() if self.facts else {}).items()
                if k in ("model", "soc", "abi", "os_version", "cpu_max_freqs_khz")
            },
            "governors": self.facts.governors if self.facts else [],
            **runner.state(),
            **outcome.state,
        }
        if runner.runtime == "torchscript":
            state["bytecode_version"] = self.cache.torchscript_bytecode()  # what the phone's runtime was given
        return outcome, state

    def measure_keys(
        self,
        keys: Sequence[str],
        runtime: str,
        threads: int,
        job_id: int | None = None,
        upload: bool = True,
        on_batch: Callable[[BatchOutcome, dict[str, Any]], None] | None = None,
        lost: threading.Event | None = None,
    ) -> dict[str, MeasurementResult]:
        """Measure ``keys`` batch by batch, uploading each batch; returns every result (and ``__overhead__``)."""
        from device_agent.progress import Progress

        check_runtime(runtime)
        run_id = uuid.uuid4()
        results: dict[str, MeasurementResult] = {}
        failed: dict[str, str] = {}
        wanted = [k for k in dict.fromkeys(keys) if k != OVERHEAD_KEY]
        with Progress(f"building {runtime} models") as bar:
            items, build_failures = self.build_items(wanted, runtime, bar.update)
        for key, reason in build_failures.items():
            self.fail_key(job_id, key, reason, failed)
        by_key = {it.key: it for it in items}
        overhead: Item | None = None
        if self.cfg.measure_overhead:
            try:
                overhead = self.cache.overhead(runtime)
            except BenchmarkError as exc:
                log.warning("no empty-model overhead this run: %s", exc.reason)
        canary = pick_canary(items)
        runner = self.runner(runtime, threads)
        # All files of the job in one go: one MD5 round trip, pushes only what the device lacks.
        start = time.perf_counter()
        self.with_reconnect(lambda: runner.stage(items + ([overhead] if overhead else [])), first=True)
        self.timings["stage_s"] = self.timings.get("stage_s", 0.0) + time.perf_counter() - start
        faults = 0  # batches in a row in which the program could not run
        with Progress(f"measuring on {self.name or self.device.serial}", total=len(items)) as bar:
            while not self.stop.is_set() and not (lost is not None and lost.is_set()):
                pending = [by_key[k] for k in by_key if k not in results and k not in failed]
                if not pending:
                    break
                batch = pending[: self.cfg.batch_size]
                if overhead is not None and OVERHEAD_KEY not in results:
                    batch = [overhead] + batch
                try:
                    outcome, state = self.measure(batch, runner, canary, bar.burst)
                except DeviceUnreachable as exc:
                    log.warning("lost %s during a batch: %s", self.device.serial, exc)
                    self.with_reconnect(lambda: None)
                    runner.forget_files()
                    log.info("reconnected to %s; resuming with %d pending key(s)", self.device.serial, len(pending))
                    continue
                outcome.failures, device_faults = split_failures(outcome.failures)
                faults = self.handle_device_faults(device_faults, runner, faults)
                if outcome.failures.pop(OVERHEAD_KEY, None) is not None or (
                    overhead is not None and OVERHEAD_KEY in outcome.unfinished and not outcome.stopped
                ):
                    log.warning("the empty-model overhead could not be measured this run")
                    overhead = None
                for key, reason in outcome.failures.items():
                    self.fail_key(job_id, key, reason, failed)
                if outcome.results and upload:
                    self.upload_batch(run_id, runtime, threads, job_id, outcome.results, state, runner)
                for r in outcome.results:
                    results[r.key] = r
                bar.advance(len([r for r in outcome.results if r.key != OVERHEAD_KEY]))
                if on_batch is not None:
                    on_batch(outcome, state)
                runner.forget([it for it in batch if it.key in results and it is not canary])
        return results

    def preflight(self) -> None:
        """Before any claim: every ``--benchmark-binary`` runs on the phone as the jobs will run it (preflight.py)."""
        run_preflight(self)

    # The first error of a refused taskset, once one was (then every runner of this agent measures unpinned).
    taskset_refused: str | None = None

    def unpin(self, runner: Runner, reason: str) -> None:
        """``taskset`` refused the mask: ``runner`` and every later one measure unpinned, logged once."""
        if self.taskset_refused is None:
            log.warning(
                "taskset was refused on %s (%s): measuring unpinned from now on, recorded with every batch",
                self.device.serial,
                reason[:300],
            )
        self.taskset_refused = reason
        runner.unpin(reason)

    def handle_device_faults(self, device_faults: dict[str, str], runner: Runner, faults: int) -> int:
        """After a batch: handle the keys whose bursts failed for a reason not theirs (faults.classify); they stay
        pending. Returns the new count of batches in a row that needed the files pushed again.

        * ``SETUP`` (a flag or model format the build refuses): ``SetupFault`` at once, with the build to make.
        * a bytecode the phone does not read: ``DeviceFault`` at once, with the ``--bytecode-version`` that works.
        * ``PINNING`` (taskset refused): the runner measures unpinned from now on; no re-staging.
        * ``STORAGE`` (EPERM / EROFS): the files pushed again once; ``DeviceFault`` when it happens again.
        * ``DEVICE``: the files pushed again; ``DeviceFault`` after ``device_fault_retries`` such batches in a row.
        """
        if not device_faults:
            return 0
        kinds = {key: classify(reason) for key, reason in device_faults.items()}
        setup = next((r for k, r in device_faults.items() if kinds[k] == SETUP), None)
        if setup is not None:  # every key would fail alike, and no push cures it
            raise SetupFault(f"{self.device.serial}: {setup_fix(setup)} (it said: {setup[:400]})")
        key, reason = next(iter(device_faults.items()))
        fix = fix_for(reason)
        if fix:  # pushing the files again cannot cure it (a bytecode the phone does not read): say what does
            raise DeviceFault(f"{self.device.serial}: {reason[:300]} — {fix}")
        pinning = next((r for k, r in device_faults.items() if kinds[k] == PINNING), None)
        if pinning is not None:
            self.unpin(runner, pinning)
            if all(kind == PINNING for kind in kinds.values()):
                return faults  # the program never ran: its keys run again, unpinned
        others = {k: r for k, r in device_faults.items() if kinds[k] != PINNING}
        key, reason = next(iter(others.items()))
        storage = any(kinds[k] == STORAGE for k in others)
        if storage and faults >= 1:
            raise DeviceFault(
                f"{self.device.serial} refuses writes in {self.device.workdir} even after pushing the "
                f"files again: {reason[:300]} — check the folder's permissions and free space "
                "(`adb shell ls -ld` it), then run the agent again"
            )
        if faults >= self.cfg.device_fault_retries:
            raise DeviceFault(
                f"{self.device.serial}: the benchmark program still cannot run after pushing its files "
                f"again {faults} time(s): {reason}"
            )
        log.warning(
            "the benchmark program could not run on %s (%s); pushing its files again, %d key(s) stay pending",
            self.device.serial,
            reason,
            len(others),
        )
        runner.forget_files()
        return faults + 1

    def fail_key(self, job_id: int | None, key: str, reason: str, failed: dict[str, str]) -> None:
        failed[key] = reason
        log.error("cannot measure %s: %s", key, reason)
        if job_id is not None and self.client is not None:
            try:
                self.client.fail_key(job_id, JobFail(key=key, error=reason[:4000] or "failed"))
            except ProfilerError as exc:
                log.warning("could not report the failure of %s: %s", key, exc)

    def upload_batch(
        self,
        run_id: uuid.UUID,
        runtime: str,
        threads: int,
        job_id: int | None,
        results: Sequence[MeasurementResult] | Sequence[NetworkResult],
        state: dict[str, Any],
        runner: Runner,
    ) -> None:
        """Upload one batch of operator results or of whole-network results (one path for both).

        A server that is down or failing (5xx) is retried with back-off for ``--upload-deadline-s``,
        then the batch waits in the spool and the agent measures on; a batch the server refuses
        (4xx) is spooled too and stops the job (``ServerError``).
        """
        assert self.name is not None
        head = dict(
            device=self.name,
            runtime=runtime,
            runtime_version=runner.runtime_version,
            threads=threads,
            agent=self.agent_id,
            run_id=run_id,
            job_id=job_id,
            device_state=state,
        )
        if results and isinstance(results[0], NetworkResult):
            self.uploads.post(NetworkMeasurementBatch(**head, results=list(results)))
        else:
            self.uploads.post(MeasurementBatch(**head, results=list(results)))

    def spooled(self) -> list[Path]:
        """Batches waiting for the server (operators and whole networks), oldest first."""
        return self.uploads.spooled()

    def flush_spool(self) -> int:
        """Upload the batches the server did not take before; the number sent (uploads.py)."""
        return self.uploads.flush()

    # -- jobs --------------------------------------------------------------------------------
    def _require_client(self) -> ProfilerClient:
        if self.client is None:
            raise ConfigError("no server: give --server URL (or HWNAS_SERVER) and --token (or HWNAS_TOKEN)")
        return self.client

    def give_back(self, job_id: int) -> None:
        """Release the lease now (a heartbeat with a lease that ends at once), so another agent can claim."""
        try:
            self._require_client().heartbeat(job_id, JobHeartbeat(agent=self.agent_id, lease_s=0.001))
        except ConflictError:
            pass  # finished, or someone else holds it already
        except ProfilerError as exc:
            log.warning("could not give job %d back (its lease will run out): %s", job_id, exc)

    def process(self, job: JobClaimed) -> bool:
        """Measure one claimed job; True when it was worked off, False when given back."""
        log.info(
            "claimed job %d: %d key(s)%s, %s, %d thread(s)",
            job.id,
            len(job.keys),
            f", {len(job.networks)} network(s)" if job.networks else "",
            job.runtime,
            job.threads,
        )
        factory = self.make_client or (lambda: ProfilerClient(self._require_client().base_url))
        with Heartbeat(factory, job.id, self.agent_id, self.cfg.lease_s) as hb:
            try:
                if job.networks:
                    # Networks and the job's keys in the same interleaved rounds (device_agent/networks.py).
                    measure_job_with_networks(self, job.keys, job.networks, job.runtime, job.threads, job_id=job.id, lost=hb.lost)
                else:
                    self.measure_keys(job.keys, job.runtime, job.threads, job_id=job.id, lost=hb.lost)
            except DeviceUnreachable as exc:
                log.error("giving job %d back: %s", job.id, exc)
                self.give_back(job.id)
                raise
            except ConfigError as exc:
                log.error("giving job %d back: %s", job.id, exc)
                self.give_back(job.id)
                self._skipped_jobs.add(job.id)
                return False
            except AgentError as exc:
                log.error("giving job %d back: %s", job.id, exc)
                self.give_back(job.id)
                raise
        if hb.lost.is_set():
            return False
        if self.stop.is_set():
            log.info("stopped: giving job %d back", job.id)
            self.give_back(job.id)
            return False
        return True

    def serve(self) -> int:
        """Claim and measure until stopped (``once``: until no job is waiting). Returns jobs worked off."""
        client = self._require_client()
        assert self.name is not None
        done = 0
        backoff = self.cfg.poll_s
        while not self.stop.is_set():
            if self.spooled():
                sent = self.flush_spool()
                if sent:
                    log.info("uploaded %d spooled batch(es)", sent)
            try:
                job = client.claim_job(JobClaim(device=self.name, agent=self.agent_id, lease_s=self.cfg.lease_s))
            except ServerUnreachable as exc:
                if self.cfg.once:
                    raise
                log.warning("server unreachable (%s); trying again in %.0f s", exc, backoff)
                self.stop.wait(backoff)
                backoff = min(60.0, backoff * 2)
                continue
            backoff = self.cfg.poll_s
            unfit = job is not None and (
                job.runtime not in self.cfg.runtimes or (self.cfg.threads is not None and job.threads != self.cfg.threads)
            )
            if job is not None and (job.id in self._skipped_jobs or unfit):
                if unfit:
                    log.warning(
                        "job %d wants %s with %d thread(s), this agent serves %s%s: giving it back",
                        job.id,
                        job.runtime,
                        job.threads,
                        "/".join(self.cfg.runtimes),
                        f" with {self.cfg.threads} thread(s)" if self.cfg.threads else "",
                    )
                self._skipped_jobs.add(job.id)
                self.give_back(job.id)
                job = None
                if self.cfg.once:
                    break
            if job is None:
                if self.cfg.once:
                    break
                self.stop.wait(self.cfg.poll_s * (0.8 + 0.4 * random.random()))
                continue
            if self.process(job):
                done += 1
        return done

    def close(self) -> None:
        for runner in self._all_runners():
            runner.close()
        self.device.close()
        waiting = self.spooled() if self.client is not None else []
        if waiting:  # nothing is lost, but the user should know the server lacks them until the next start
            log.warning(
                "%d batch(es) the server did not take wait in %s: they are uploaded at the next start",
                len(waiting),
                waiting[0].parent,
            )


def pick_canary(items: Sequence[Item]) -> Item | None:
    """The job's canary: the item of median model size, a typical operator.

    Not the smallest (a few microseconds are mostly timer and cache noise, which reads as
    drift) and not the biggest (measured every few operators, it would cost the most).
    """
    if not items:
        return None
    ordered = sorted(items, key=lambda it: (it.model.stat().st_size, it.key))
    return ordered[len(ordered) // 2]


__all__ = ["Agent", "AgentError"]
