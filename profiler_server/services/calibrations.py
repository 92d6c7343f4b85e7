"""Calibrations: a fitted correction of a table's network predictions, served inside GET /lut.

``hwnas validate --calibrate`` fits ``measured ≈ scale · predicted + offset_ms`` on measured
whole networks and stores it here; the latest record of a (device, runtime, threads) table is
part of that table's document, so every search that pulls the table applies it. Storing one
bumps the table's version: cached copies (ETag) are refreshed.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from hwnas import schemas
from sqlalchemy import select

from profiler_server.errors import NotFound, field_error
from profiler_server.models import Calibration, utcnow
from profiler_server.services.luts import bump_version, latest_calibration, resolve_table


def store_calibration(session: Session, device: str, body: schemas.Calibration, created_by: str | None = None) -> schemas.LutCalibration:
    """Record ``body`` for the table (device, body.runtime, body.threads), which must exist (404 otherwise)."""
    ref = resolve_table(session, device, body.runtime, body.threads)
    now = utcnow()
    session.add(
        Calibration(
            device_id=ref.device_id, runtime=ref.runtime, threads=ref.threads, scale=body.scale, offset_ms=body.offset_ms,
            networks=body.networks, method=body.method, mape_before=body.mape_before, mape_after=body.mape_after,
            points=[p.model_dump() for p in body.points],
            created_by=created_by, created_at=now,
        )
    )
    session.flush()
    bump_version(session, ref.device_id, ref.runtime, ref.threads)
    found = latest_calibration(session, ref.device_id, ref.runtime, ref.threads)
    assert found is not None
    return found


def calibration_detail(session: Session, device: str, runtime: str | None, threads: int | None) -> schemas.CalibrationDetail:
    """The latest calibration of a table with its networks; 404 when the table has none."""
    ref = resolve_table(session, device, runtime, threads)
    row = session.scalar(
        select(Calibration)
        .where(Calibration.device_id == ref.device_id, Calibration.runtime == ref.runtime, Calibration.threads == ref.threads)
        .order_by(Calibration.id.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound(f"table {device} ({ref.runtime}, {ref.threads} thread(s)) has no calibration",
                       [field_error("device", "no calibration: run hwnas validate --calibrate")])
    return schemas.CalibrationDetail(
        device=device, runtime=ref.runtime, threads=ref.threads, scale=row.scale, offset_ms=row.offset_ms,
        networks=row.networks, method=row.method, mape_before=row.mape_before, mape_after=row.mape_after,
        created_at=row.created_at, points=[schemas.CalibrationPoint(**p) for p in row.points or []])
