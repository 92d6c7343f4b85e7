"""The measurement history shared by operators and whole networks.

``measurements`` (per operator) and ``network_measurements`` (per network) have one shape: a
run, an item column (``operator_id`` or ``network_id``) and the same statistics. Uploads are
idempotent on (run, item) and a table shows the latest valid row per item; both are written
once here, parameterised by the item column (``Measurement.operator_id`` or
``NetworkMeasurement.network_id``), whose class is the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Subquery, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from hwnas import schemas
from profiler_server.errors import Conflict, InvalidInput, field_error
from profiler_server.models import MeasurementRun, utcnow
from profiler_server.services.sql import chunks

ItemColumn = InstrumentedAttribute[int]

# The columns of LatencyColumns an upload copies from a result (``valid`` and ``measured_at`` are the server's).
_STAT_FIELDS = ("median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "min_ms", "iterations", "warmup", "samples_ms")


def check_repeats(names: Iterable[str], noun: str, field: str) -> None:
    """422 when one batch names an item twice; ``noun``/``field`` word it (``key``/``key``, ``network``/``arch_id``)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise InvalidInput(
                f"{noun} {name!r} appears twice in one batch (results[{seen[name]}] and results[{i}])",
                [field_error(f"results[{i}].{field}", "repeated in this batch")],
            )
        seen[name] = i


def run_for(session: Session, batch: schemas.RunUpload, device_id: int) -> MeasurementRun:
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


def store_new_results(session: Session, item: ItemColumn, run_id: int, results: Sequence[tuple[int, schemas.LatencyStats]]) -> int:
    """Insert the (item id, result) pairs that run ``run_id`` has not stored yet; returns how many were new."""
    model = item.class_
    have = set(session.scalars(select(item).where(model.run_id == run_id)))
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {"run_id": run_id, item.key: item_id, **{f: getattr(r, f) for f in _STAT_FIELDS}, "valid": True, "measured_at": now}
        for item_id, r in results
        if item_id not in have
    ]
    if rows:
        session.execute(model.__table__.insert(), rows)
    return len(rows)


def run_rows(session: Session, item: ItemColumn, run_id: int, item_ids: list[int]) -> dict[int, int]:
    """Item id -> row id of what run ``run_id`` holds for ``item_ids`` (stored now or by an earlier upload)."""
    model = item.class_
    out: dict[int, int] = {}
    for part in chunks(item_ids):
        out.update(session.execute(select(item, model.id).where(model.run_id == run_id, item.in_(part))).tuples().all())
    return out


def _valid_in_table(item: ItemColumn, device_id: int, runtime: str, threads: int) -> tuple[ColumnElement[bool], ...]:
    """Conditions for valid rows of table (device, runtime, threads); the query joins MeasurementRun."""
    return (
        MeasurementRun.device_id == device_id,
        MeasurementRun.runtime == runtime,
        MeasurementRun.threads == threads,
        item.class_.valid.is_(True),
    )


def latest_valid_ids(item: ItemColumn, device_id: int, runtime: str, threads: int) -> Subquery:
    """Subquery with column ``mid``: the latest valid row id per item of table (device, runtime, threads)."""
    model = item.class_
    return (
        select(func.max(model.id).label("mid"))
        .join(MeasurementRun, MeasurementRun.id == model.run_id)
        .where(*_valid_in_table(item, device_id, runtime, threads))
        .group_by(item)
        .subquery()
    )


def present_ids(session: Session, item: ItemColumn, device_id: int, runtime: str, threads: int, item_ids: list[int]) -> set[int]:
    """Which of ``item_ids`` have a valid row in table (device, runtime, threads)."""
    if not item_ids:
        return set()
    model = item.class_
    out: set[int] = set()
    for part in chunks(item_ids):
        out.update(
            session.scalars(
                select(item)
                .join(MeasurementRun, MeasurementRun.id == model.run_id)
                .where(*_valid_in_table(item, device_id, runtime, threads), item.in_(part))
                .distinct()
            )
        )
    return out
