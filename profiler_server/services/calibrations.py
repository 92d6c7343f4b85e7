"""Calibrations: a fitted correction of a table's network predictions, served inside GET /lut.

``hwnas validate --calibrate`` fits ``measured ≈ scale · predicted + offset_ms`` on measured
whole networks and stores it here; the latest record of a (device, runtime, threads) table is
part of that table's document, so every search that pulls the table applies it. Storing one
bumps the table's version: cached copies (ETag) are refreshed.
"""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from hwnas import schemas
from profiler_server.errors import InvalidInput, NotFound, field_error
from profiler_server.models import Calibration, Device, utcnow
from profiler_server.services.luts import bump_version, latest_calibration, resolve_table
from profiler_server.services.ownership import Actor, check_calibration_write
from profiler_server.services.provenance import imported_row

# What a calibration may say. Every search that pulls the table multiplies its predictions by ``scale``: a fit
# outside these bounds is a broken fit (or a hostile one), not a runtime that is 1000x slower than its operators.
SCALE_RANGE = (0.01, 100.0)
MAX_ABS_OFFSET_MS = 60_000.0  # a minute per network
MAX_MAPE_PCT = 1e6


def check_bounds(body: schemas.Calibration) -> None:
    """422 naming each value of ``body`` outside what a calibration may hold (schemas.Calibration checks finiteness)."""
    errors = []
    lo, hi = SCALE_RANGE
    if not (math.isfinite(body.scale) and lo <= body.scale <= hi):
        errors.append(field_error("scale", f"must be between {lo} and {hi}, got {body.scale:.6g}"))
    if not (math.isfinite(body.offset_ms) and abs(body.offset_ms) <= MAX_ABS_OFFSET_MS):
        errors.append(
            field_error(
                "offset_ms", f"must be finite and at most {MAX_ABS_OFFSET_MS:g} ms in magnitude, got {body.offset_ms:.6g}"
            )
        )
    for name in ("mape_before", "mape_after"):
        value = getattr(body, name)
        if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_MAPE_PCT):
            errors.append(field_error(name, f"a MAPE is a finite percentage from 0 to {MAX_MAPE_PCT:g}, got {value:.6g}"))
    if errors:
        raise InvalidInput("invalid calibration: " + "; ".join(f"{e['field']}: {e['reason']}" for e in errors), errors)


def store_calibration(
    session: Session, device: str, body: schemas.Calibration, created_by: str | None = None, actor: Actor | None = None
) -> schemas.LutCalibration:
    """Record ``body`` for the table (device, body.runtime, body.threads), which must exist (404 otherwise).

    ``actor``: only the device's owner or an admin may (an imported table: an admin only), since every search that
    pulls the table applies what is stored here.
    """
    check_bounds(body)
    ref = resolve_table(session, device, body.runtime, body.threads)
    row = session.get(Device, ref.device_id)
    assert row is not None
    check_calibration_write(actor, row, imported=imported_row(session, ref.device_id, ref.runtime, ref.threads) is not None)
    now = utcnow()
    session.add(
        Calibration(
            device_id=ref.device_id,
            runtime=ref.runtime,
            threads=ref.threads,
            scale=body.scale,
            offset_ms=body.offset_ms,
            networks=body.networks,
            method=body.method,
            mape_before=body.mape_before,
            mape_after=body.mape_after,
            points=[p.model_dump() for p in body.points],
            created_by=created_by,
            created_at=now,
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
        raise NotFound(
            f"table {device} ({ref.runtime}, {ref.threads} thread(s)) has no calibration",
            [field_error("device", "no calibration: run hwnas validate --calibrate")],
        )
    return schemas.CalibrationDetail(
        device=device,
        runtime=ref.runtime,
        threads=ref.threads,
        scale=row.scale,
        offset_ms=row.offset_ms,
        networks=row.networks,
        method=row.method,
        mape_before=row.mape_before,
        mape_after=row.mape_after,
        created_at=row.created_at,
        points=[schemas.CalibrationPoint(**p) for p in row.points or []],
    )
