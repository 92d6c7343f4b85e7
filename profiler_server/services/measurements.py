"""Measurement upload: one batch per run, idempotent on (run_id, key)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hwnas import schemas
from profiler_server.errors import InvalidInput, Conflict, field_error
from profiler_server.models import Measurement, MeasurementRun, utcnow
from profiler_server.services import jobs
from profiler_server.services.devices import find_device
from profiler_server.services.luts import bump_version
from profiler_server.services.operators import ensure_operators


def _check_repeats(batch: schemas.MeasurementBatch) -> None:
    seen: dict[str, int] = {}
    for i, r in enumerate(batch.results):
        if r.key in seen:
            raise InvalidInput(
                f"key {r.key!r} appears twice in one batch (results[{seen[r.key]}] and results[{i}])",
                [field_error(f"results[{i}].key", "repeated in this batch")],
            )
        seen[r.key] = i


def run_for(session: Session, batch: schemas.MeasurementBatch | schemas.NetworkMeasurementBatch, device_id: int) -> MeasurementRun:
    """The run of ``batch`` (created on its first upload); 409 when a later upload contradicts it."""
    run = session.scalar(select(MeasurementRun).where(MeasurementRun.run_uuid == batch.run_id))
    now = utcnow()
    if run is None:
        run = MeasurementRun(
            run_uuid=batch.run_id,
            device_id=device_id,
            runtime=batch.runtime,
            runtime_version=batch.runtime_version,
            threads=batch.threads,
            agent=batch.agent,
            device_state=batch.device_state,
            started_at=now,
            finished_at=now,
        )
        session.add(run)
        session.flush()
        return run
    for name, stored, sent in (("device", run.device_id, device_id), ("runtime", run.runtime, batch.runtime), ("threads", run.threads, batch.threads)):
        if stored != sent:
            raise Conflict(
                f"run {batch.run_id} was uploaded before with another {name}",
                [field_error(name, "differs from the earlier upload of this run_id")],
            )
    run.finished_at = now
    return run


def store_batch(session: Session, batch: schemas.MeasurementBatch) -> schemas.MeasurementBatchResult:
    """Store the new results of ``batch``; results of keys this run already has count as duplicates."""
    _check_repeats(batch)
    device = find_device(session, batch.device)
    if batch.job_id is not None:
        jobs.find_job(session, batch.job_id)  # 404 before anything is written
    run = run_for(session, batch, device.id)
    ops = ensure_operators(session, (r.key for r in batch.results))
    have = dict(session.execute(select(Measurement.operator_id, Measurement.id).where(Measurement.run_id == run.id)).tuples().all())
    now = utcnow()
    new_rows = [
        {
            "run_id": run.id,
            "operator_id": ops[r.key],
            "median_ms": r.median_ms,
            "p10_ms": r.p10_ms,
            "p90_ms": r.p90_ms,
            "mean_ms": r.mean_ms,
            "std_ms": r.std_ms,
            "min_ms": r.min_ms,
            "iterations": r.iterations,
            "warmup": r.warmup,
            "samples_ms": r.samples_ms,
            "valid": True,
            "measured_at": now,
        }
        for r in batch.results
        if ops[r.key] not in have
    ]
    if new_rows:
        session.execute(Measurement.__table__.insert(), new_rows)  # type: ignore[attr-defined]
        bump_version(session, device.id, batch.runtime, batch.threads)
    if batch.job_id is not None:
        measured = dict(
            session.execute(
                select(Measurement.operator_id, Measurement.id).where(Measurement.run_id == run.id, Measurement.operator_id.in_(list(ops.values())))
            ).tuples().all()
        )
        jobs.complete_keys(session, batch.job_id, device.id, batch.runtime, batch.threads, measured)
    return schemas.MeasurementBatchResult(run_id=batch.run_id, stored=len(new_rows), duplicates=len(batch.results) - len(new_rows))
