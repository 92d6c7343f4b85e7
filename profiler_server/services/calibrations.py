"""Calibrations: a fitted correction of a table's network predictions, served inside GET /lut.

``hwnas validate --calibrate`` fits ``measured ≈ scale · predicted + offset_ms`` on measured
whole networks and stores it here; the latest record of a (device, runtime, threads) table is
part of that table's document, so every search that pulls the table applies it. Storing one
bumps the table's version: cached copies (ETag) are refreshed.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from hwnas import schemas
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
            created_by=created_by, created_at=now,
        )
    )
    session.flush()
    bump_version(session, ref.device_id, ref.runtime, ref.threads)
    found = latest_calibration(session, ref.device_id, ref.runtime, ref.threads)
    assert found is not None
    return found
