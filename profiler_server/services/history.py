"""The measurement history shared by operators and whole networks.

``measurements`` (per operator) and ``network_measurements`` (per network) have one shape: a
run, an item column (``operator_id`` or ``network_id``) and the same statistics. Uploads are
idempotent on (run, item) and a table shows the latest valid row per item; both are written
once here, parameterised by the item column (``Measurement.operator_id`` or
``NetworkMeasurement.network_id``), whose class is the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Row, Subquery, func, select
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


def merge_state(stored: Any, sent: Any) -> Any:
    """``stored`` (a run's device state) with what ``sent`` (a later batch's) adds: objects merged key by key, lists
    extended by the items they lack, and for anything else the first upload's value kept.

    An agent sends per batch what holds for that batch's items — ExecuTorch's delegation per key
    (``executorch.delegated``), the keys whose input is set before every run — so a run of many batches
    keeps every batch's keys; what describes the run (thermal state at its start, the program, its flags)
    stays as its first batch said. A retried upload adds nothing.
    """
    if isinstance(stored, dict) and isinstance(sent, dict):
        merged = dict(stored)
        for key, value in sent.items():
            merged[key] = merge_state(stored[key], value) if key in stored else value
        return merged
    if isinstance(stored, list) and isinstance(sent, list):
        return stored + [v for v in sent if v not in stored]
    return stored


def run_for(session: Session, batch: schemas.RunUpload, device_id: int) -> MeasurementRun:
    """The run of ``batch`` (created on its first upload, its device state merged from later ones: ``merge_state``);
    409 when a later upload contradicts it."""
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
    for name, stored, sent in (
        ("device", run.device_id, device_id),
        ("runtime", run.runtime, batch.runtime),
        ("threads", run.threads, batch.threads),
    ):
        if stored != sent:
            raise Conflict(
                f"run {batch.run_id} was uploaded before with another {name}",
                [field_error(name, "differs from the earlier upload of this run_id")],
            )
    merged = merge_state(run.device_state or {}, batch.device_state or {})
    if merged != run.device_state:
        run.device_state = merged  # a new object: the JSON column does not see changes made in place
    run.finished_at = now
    return run


@dataclass(frozen=True)
class PreparedRows:
    """Rows of one upload, converted for the driver before the write transaction (``prepare_rows``)."""

    sql: str  # INSERT of one row, in the driver's parameter style, run_id first and the item id second
    rows: list[tuple[Any, ...]]  # every parameter but run_id, already through the columns' bind processors
    # PostgreSQL: ``COPY table (copy_columns) FROM STDIN`` instead (psycopg's executemany took 1.7 s for 20,000 rows, and
    # a multi-row INSERT of that many parameters 3.4 s, most of it splitting the query in Python); None on SQLite, whose
    # in-process executemany is fastest.
    copy: str | None = None


def prepare_rows(session: Session, item: ItemColumn, results: Sequence[tuple[int, schemas.LatencyStats]]) -> PreparedRows:
    """Convert (item id, result) pairs to driver parameters, outside any transaction.

    SQLAlchemy's per-row parameter processing of an executemany cost ~0.7 s for 20,000 rows, all of it under SQLite's
    write lock; done here with the same bind processors (JSON, UTC timestamps, booleans) the columns declare, the
    transaction only hands the driver ready tuples.
    """
    table = item.class_.__table__
    dialect = session.get_bind().dialect
    columns = ["run_id", item.key, *_STAT_FIELDS, "valid", "measured_at"]
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]  # as an execute would
    now = utcnow()
    rows = []
    for item_id, r in results:
        values = [None, item_id, *(getattr(r, f) for f in _STAT_FIELDS), True, now]
        rows.append(tuple(p(v) if p is not None else v for p, v in zip(processors[1:], values[1:])))
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    copy = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN" if dialect.name == "postgresql" else None
    return PreparedRows(sql, rows, copy)


def store_new_results(
    session: Session,
    item: ItemColumn,
    run_id: int,
    results: Sequence[tuple[int, schemas.LatencyStats]],
    prepared: PreparedRows | None = None,
    extra: Sequence[str] = (),
) -> int:
    """Insert the (item id, result) pairs that run ``run_id`` has not stored yet; returns how many were new.

    ``prepared``: ``prepare_rows`` of the same ``results``, made before the transaction (then only the driver's
    executemany runs here). ``extra``: further result fields stored in columns of the same name (a model field is
    stored as its JSON document); not with ``prepared``.
    """
    model = item.class_
    have = set(session.scalars(select(item).where(model.run_id == run_id)))
    if prepared is not None:
        new = [(run_id, *row) for row in prepared.rows if row[0] not in have]
        if not new:
            return 0
        connection = session.connection()
        if prepared.copy is None:
            connection.exec_driver_sql(prepared.sql, new)
            return len(new)
        driver = connection.connection.dbapi_connection  # psycopg's, inside this session's transaction
        with driver.cursor() as cursor, cursor.copy(prepared.copy) as copy:  # type: ignore[union-attr]
            for row in new:
                copy.write_row(row)
        return len(new)
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "run_id": run_id,
            item.key: item_id,
            **{f: getattr(r, f) for f in _STAT_FIELDS},
            **_extra_values(r, extra),
            "valid": True,
            "measured_at": now,
        }
        for item_id, r in results
        if item_id not in have
    ]
    if rows:
        session.execute(model.__table__.insert(), rows)
    return len(rows)


def _extra_values(result: schemas.LatencyStats, fields: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields:
        v = getattr(result, f)
        values[f] = v.model_dump(mode="json") if isinstance(v, BaseModel) else v
    return values


def run_rows(session: Session, item: ItemColumn, run_id: int, item_ids: list[int]) -> dict[int, int]:
    """Item id -> row id of what run ``run_id`` holds for ``item_ids`` (stored now or by an earlier upload)."""
    model = item.class_
    out: dict[int, int] = {}
    for part in chunks(item_ids):
        out.update(session.execute(select(item, model.id).where(model.run_id == run_id, item.in_(part))).all())
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


# What a table shows of each item's latest valid row, after the item's name (latest_valid_rows).
TABLE_STATS = ("median_ms", "min_ms", "p10_ms", "p90_ms", "std_ms", "iterations", "measured_at")


def latest_valid_rows(
    session: Session,
    item: ItemColumn,
    name: InstrumentedAttribute[str],
    device_id: int,
    runtime: str,
    threads: int,
    extra: Sequence[str] = (),
) -> Sequence[Row[Any]]:
    """The latest valid row of every item of table (device, runtime, threads), ordered by the item's ``name``
    (``Operator.key``, ``Network.arch_id``): rows with the name, then TABLE_STATS, then the ``extra`` columns."""
    model = item.class_
    subject = name.class_
    latest = latest_valid_ids(item, device_id, runtime, threads)
    return session.execute(
        select(name, *(getattr(model, column) for column in (*TABLE_STATS, *extra)))
        .join(latest, model.id == latest.c.mid)
        .join(subject, subject.id == item)
        .order_by(name)
    ).all()


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
