"""One page of a latency table, sorted and filtered by the database (GET /lut/{device}/entries).

The dashboard's table page used to fetch the whole table and sort it in the browser: 14 s in Chromium for 20,000
entries, 106 s for 100,000 (issue 25, D8). A page asks for what it shows; the database picks the latest valid row per
key, filters, sorts and cuts the page, so the bytes and the work in the browser do not grow with the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from hwnas import schemas
from hwnas.opkey import OVERHEAD_KEY
from profiler_server.models import Measurement, MeasurementRun, Operator
from profiler_server.services.history import latest_valid_ids
from profiler_server.services.luts import TableRef, latest_calibration
from profiler_server.services.provenance import source_of
from profiler_server.services.sql import is_postgres


@dataclass(frozen=True)
class PageQuery:
    """What one page shows: sort column and order, the filter (operator type, key substring), the slice."""

    sort: str = "median_ms"
    order: str = "asc"
    type: str | None = None
    key: str | None = None
    offset: int = 0
    limit: int = 100


def _sort_column(session: Session, name: str) -> ColumnElement[object]:
    key = Operator.key.collate("C") if is_postgres(session) else Operator.key  # byte order on both databases
    columns: dict[str, Any] = {  # columns of several types
        "key": key,
        "type": Operator.block,
        "median_ms": Measurement.median_ms,
        "min_ms": Measurement.min_ms,
        "p10_ms": Measurement.p10_ms,
        "p90_ms": Measurement.p90_ms,
        "std_ms": Measurement.std_ms,
        "n": Measurement.iterations,
        "measured_at": Measurement.measured_at,
    }
    return columns[name]


def _latest_rows(ref: TableRef) -> Select[tuple[object, ...]]:
    """FROM the table's latest valid row per key, joined to its operator (the overhead key left out)."""
    latest = latest_valid_ids(Measurement.operator_id, ref.device_id, ref.runtime, ref.threads)
    return (
        select()
        .select_from(latest)
        .join(Measurement, Measurement.id == latest.c.mid)
        .join(Operator, Operator.id == Measurement.operator_id)
        .where(Operator.block != OVERHEAD_KEY)
    )


def table_page(session: Session, ref: TableRef, query: PageQuery) -> schemas.LutPage:
    """Rows ``offset .. offset+limit`` of table ``ref`` under ``query``, with the counts and the table's header."""
    base = _latest_rows(ref)
    types = {
        str(block): int(n)
        for block, n in session.execute(
            base.add_columns(Operator.block, func.count()).group_by(Operator.block).order_by(Operator.block)
        ).all()
    }
    total = sum(types.values())
    filtered = base
    if query.type:
        filtered = filtered.where(Operator.block == query.type)
    if query.key:
        filtered = filtered.where(Operator.key.contains(query.key, autoescape=True))
    if query.key:
        matched = int(session.scalar(filtered.add_columns(func.count())) or 0)
    else:  # the per-type counts have it already
        matched = types.get(query.type, 0) if query.type else total
    column = _sort_column(session, query.sort)
    ordered = column.desc() if query.order == "desc" else column.asc()
    tie = _sort_column(session, "key").asc()  # equal values in key order: pages never overlap or skip a row
    rows = session.execute(
        filtered.add_columns(
            Operator.key,
            Operator.block,
            Measurement.median_ms,
            Measurement.min_ms,
            Measurement.p10_ms,
            Measurement.p90_ms,
            Measurement.std_ms,
            Measurement.iterations,
            Measurement.measured_at,
        )
        .order_by(ordered.nulls_last(), tie)  # NULLs last on both databases (their defaults differ)
        .offset(query.offset)
        .limit(query.limit)
    ).all()
    return schemas.LutPage(
        device=ref.device,
        runtime=ref.runtime,
        runtime_version=_runtime_version(session, ref),
        threads=ref.threads,
        overhead_ms=_overhead(session, ref),
        calibration=latest_calibration(session, ref.device_id, ref.runtime, ref.threads),
        source=source_of(session, ref.device_id, ref.runtime, ref.threads),
        entries=total,
        matched=matched,
        types=types,
        sort=query.sort,
        order=query.order,
        offset=query.offset,
        limit=query.limit,
        rows=[
            schemas.LutRow(key=k, type=t, median_ms=med, min_ms=mn, p10_ms=p10, p90_ms=p90, std_ms=std, n=n, measured_at=at)
            for k, t, med, mn, p10, p90, std, n, at in rows
        ],
    )


def _runtime_version(session: Session, ref: TableRef) -> str | None:
    return session.scalar(
        select(MeasurementRun.runtime_version)
        .where(
            MeasurementRun.device_id == ref.device_id,
            MeasurementRun.runtime == ref.runtime,
            MeasurementRun.threads == ref.threads,
        )
        .order_by(MeasurementRun.id.desc())
        .limit(1)
    )


def _overhead(session: Session, ref: TableRef) -> float | None:
    """The latest valid ``__overhead__`` measurement of the table."""
    return session.scalar(
        select(Measurement.median_ms)
        .join(MeasurementRun, MeasurementRun.id == Measurement.run_id)
        .join(Operator, Operator.id == Measurement.operator_id)
        .where(
            MeasurementRun.device_id == ref.device_id,
            MeasurementRun.runtime == ref.runtime,
            MeasurementRun.threads == ref.threads,
            Measurement.valid.is_(True),
            Operator.key == OVERHEAD_KEY,
        )
        .order_by(Measurement.id.desc())
        .limit(1)
    )
