"""Measurement upload, of operators and of whole networks: one batch per run, idempotent on (run_id, key or arch_id)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from hwnas import schemas
from profiler_server.bulk_cpu import BULK_ITEMS, bulk_turn
from profiler_server.errors import reject_bad_keys
from profiler_server.errors import NotFound, field_error
from profiler_server.models import Measurement, NetworkMeasurement
from profiler_server.services import jobs, networks
from profiler_server.services.devices import find_device
from profiler_server.services.ownership import Actor, check_device_write
from profiler_server.services.provenance import refuse_imported
from profiler_server.services.history import PreparedRows, check_repeats, prepare_rows, run_for, run_rows, store_new_results
from profiler_server.services.luts import bump_version
from profiler_server.services.operators import ensure_operators, prepare_operators


def check_batch(batch: schemas.MeasurementBatch) -> None:
    """The checks of ``batch`` that need no database (key grammar, repeats): 422s, run before any transaction."""
    reject_bad_keys([r.key for r in batch.results], "results", "key")
    check_repeats((r.key for r in batch.results), "key", "key")


@dataclass(frozen=True)
class PreparedBatch:
    """What an upload's transaction needs, made before it: operator ids and the rows in the driver's form."""

    operators: dict[str, int]
    rows: PreparedRows


def prepare_batch(
    session: Session, batch: schemas.MeasurementBatch, write: Callable[[Callable[[], None]], None]
) -> PreparedBatch:
    """Check ``batch``, create its operators (short transactions of their own, through ``write``) and convert its rows:
    everything of an upload that needs no write lock. A 20,000-result upload then holds the lock ~0.1-0.3 s, not 4-8 s."""
    large = len(batch.results) >= BULK_ITEMS  # CPU work of large batches one at a time (bulk_cpu), never under a lock
    with bulk_turn(large):
        check_batch(batch)
    ops = prepare_operators(session, (r.key for r in batch.results), write)
    with bulk_turn(large):
        return PreparedBatch(ops, prepare_rows(session, Measurement.operator_id, [(ops[r.key], r) for r in batch.results]))


def store_batch(
    session: Session, batch: schemas.MeasurementBatch, actor: Actor | None = None, prepared: PreparedBatch | None = None
) -> schemas.MeasurementBatchResult:
    """Store the new results of ``batch``; results of keys this run already has count as duplicates.

    ``actor``: who uploads (the owner rule: an agent token uploads only for its own or granted devices).
    ``prepared``: ``prepare_batch(batch)``, made before this transaction — what the API does, so that the write lock
    is held for the writes only.
    """
    if prepared is None:
        check_batch(batch)
    device = find_device(session, batch.device)
    # An imported table refuses everyone (409, whatever the token); then the owner rule (403).
    refuse_imported(session, batch.device, device.id, batch.runtime, batch.threads)
    check_device_write(actor, device, "upload measurements")
    if batch.job_id is not None:
        jobs.find_job(session, batch.job_id)  # 404 before anything is written
    run = run_for(session, batch, device.id)
    ops = prepared.operators if prepared is not None else ensure_operators(session, (r.key for r in batch.results))
    stored = store_new_results(
        session,
        Measurement.operator_id,
        run.id,
        [(ops[r.key], r) for r in batch.results],
        prepared.rows if prepared is not None else None,
    )
    if stored:
        bump_version(session, device.id, batch.runtime, batch.threads)
    if batch.job_id is not None:
        measured = run_rows(session, Measurement.operator_id, run.id, list(ops.values()))
        jobs.complete_keys(session, batch.job_id, device.id, batch.runtime, batch.threads, measured)
    return schemas.MeasurementBatchResult(run_id=batch.run_id, stored=stored, duplicates=len(batch.results) - stored)


def store_network_batch(
    session: Session, batch: schemas.NetworkMeasurementBatch, actor: Actor | None = None
) -> schemas.MeasurementBatchResult:
    """Store the new results of ``batch``; networks this run already has count as duplicates (``actor``: as store_batch)."""
    check_repeats((r.arch_id for r in batch.results), "network", "arch_id")
    device = find_device(session, batch.device)
    refuse_imported(session, batch.device, device.id, batch.runtime, batch.threads)
    check_device_write(actor, device, "upload network results")
    if batch.job_id is not None:
        jobs.find_job(session, batch.job_id)  # 404 before anything is written
    ids = networks.network_ids(session, [r.arch_id for r in batch.results])
    for i, r in enumerate(batch.results):
        if r.arch_id not in ids:
            raise NotFound(
                f"unknown network {r.arch_id!r}: networks are registered by the job that asks for them",
                [field_error(f"results[{i}].arch_id", "no network with this id")],
            )
    run = run_for(session, batch, device.id)
    stored = store_new_results(
        session,
        NetworkMeasurement.network_id,
        run.id,
        [(ids[r.arch_id], r) for r in batch.results],
        extra=("operator_breakdown",),
    )
    if batch.job_id is not None:
        measured = run_rows(session, NetworkMeasurement.network_id, run.id, list(ids.values()))
        jobs.complete_networks(session, batch.job_id, device.id, batch.runtime, batch.threads, measured)
    return schemas.MeasurementBatchResult(run_id=batch.run_id, stored=stored, duplicates=len(batch.results) - stored)
