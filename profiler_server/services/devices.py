"""Devices: registration by the agent, and what latency tables each one has."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from hwnas import schemas
from hwnas.opkey import OVERHEAD_KEY
from profiler_server.errors import UnknownDevice
from profiler_server.models import Device, LutVersion, Measurement, MeasurementRun, Operator, utcnow
from profiler_server.services.device_activity import is_loopback
from profiler_server.services.ownership import IMPORT_OWNER, Actor, check_device_write
from profiler_server.services.provenance import sources_of
from profiler_server.services.sql import insert_ignore

__all__ = ["IMPORT_OWNER", "find_device", "put_device"]  # IMPORT_OWNER: imported from here by older callers


def find_device(session: Session, name: str, field: str = "device") -> Device:
    """The device called ``name``, or a 404 naming it."""
    device = session.scalar(select(Device).where(Device.name == name))
    if device is None:
        raise UnknownDevice(name, field)
    return device


def put_device(
    session: Session, name: str, info: schemas.DeviceInfo, owner: str | None = None, actor: Actor | None = None
) -> tuple[Device, bool]:
    """Create or update device ``name`` from ``info``; True when it was created.

    ``owner``: the agent token acting (None: an admin), recorded as the owner of a new device; ``actor``: who
    asks (None: the server itself). The first agent token to register a device owns it; another may not change
    it (403, the owner rule of ``services.ownership``), so one agent cannot rewrite a phone another agent drives.
    """
    now = utcnow()
    values = info.model_dump()
    # Insert-or-skip first, so two agents registering the same name at once never collide.
    row = {"name": name, **values, "owner": owner, "created_at": now, "updated_at": now}
    insert_ignore(session, cast(Table, Device.__table__), [row], ["name"])
    device = session.scalars(select(Device).where(Device.name == name).execution_options(populate_existing=True)).one()
    created = device.created_at == now
    if not created:
        if device.owner is None and owner is not None:
            device.owner = owner  # an unowned device (an admin's, or from before owners) is taken by its first registering agent
        else:
            check_device_write(actor, device, "change the device", field="name")
        for attr, value in values.items():
            setattr(device, attr, value)
        device.updated_at = now
    session.flush()
    return device, created


def list_devices(session: Session) -> list[Device]:
    """All devices, by name."""
    return list(session.scalars(select(Device).order_by(Device.name)))


def tables_of(session: Session, device_ids: list[int]) -> dict[int, list[schemas.TableInfo]]:
    """Per device id: each (runtime, threads) table with its runtime version and entry count."""
    if not device_ids:
        return {}
    counts = dict(
        (
            ((d, r, t), n)
            for d, r, t, n in session.execute(
                select(
                    MeasurementRun.device_id,
                    MeasurementRun.runtime,
                    MeasurementRun.threads,
                    func.count(func.distinct(Measurement.operator_id)),
                )
                .join(Measurement, Measurement.run_id == MeasurementRun.id)
                .join(Operator, Operator.id == Measurement.operator_id)
                .where(MeasurementRun.device_id.in_(device_ids), Measurement.valid.is_(True), Operator.key != OVERHEAD_KEY)
                .group_by(MeasurementRun.device_id, MeasurementRun.runtime, MeasurementRun.threads)
            )
        )
    )
    latest_run = (
        select(MeasurementRun.device_id, MeasurementRun.runtime, MeasurementRun.threads, func.max(MeasurementRun.id).label("rid"))
        .where(MeasurementRun.device_id.in_(device_ids))
        .group_by(MeasurementRun.device_id, MeasurementRun.runtime, MeasurementRun.threads)
        .subquery()
    )
    versions = {
        (d, r, t): v
        for d, r, t, v in session.execute(
            select(latest_run.c.device_id, latest_run.c.runtime, latest_run.c.threads, MeasurementRun.runtime_version).join(
                MeasurementRun, MeasurementRun.id == latest_run.c.rid
            )
        )
    }

    sources = sources_of(session, device_ids)
    out: dict[int, list[schemas.TableInfo]] = defaultdict(list)
    for d, r, t in session.execute(
        select(LutVersion.device_id, LutVersion.runtime, LutVersion.threads)
        .where(LutVersion.device_id.in_(device_ids))
        .order_by(LutVersion.runtime, LutVersion.threads)
    ):
        out[d].append(
            schemas.TableInfo(
                runtime=r,
                threads=t,
                runtime_version=versions.get((d, r, t)),
                entries=counts.get((d, r, t), 0),
                source=sources.get((d, r, t)),
            )
        )
    return out


def thermal_of(session: Session, device_ids: list[int]) -> dict[int, schemas.DeviceThermal]:
    """Per device id: the thermal reading stored with its latest measurement run (none when it never measured)."""
    if not device_ids:
        return {}
    latest = (
        select(func.max(MeasurementRun.id).label("rid"))
        .where(MeasurementRun.device_id.in_(device_ids))
        .group_by(MeasurementRun.device_id)
        .subquery()
    )
    out: dict[int, schemas.DeviceThermal] = {}
    for run in session.scalars(select(MeasurementRun).join(latest, MeasurementRun.id == latest.c.rid)):
        before = (run.device_state or {}).get("thermal_before")
        if not isinstance(before, dict):
            continue
        status = before.get("status")
        temps = [t for t in (before.get("temperatures_c") or {}).values() if isinstance(t, (int, float))]
        out[run.device_id] = schemas.DeviceThermal(
            status=status if isinstance(status, int) else None, max_temp_c=max(temps) if temps else None, at=run.started_at
        )
    return out


def to_schema(
    device: Device,
    tables: list[schemas.TableInfo],
    thermal: schemas.DeviceThermal | None = None,
    last_seen_at: datetime | None = None,
) -> schemas.Device:
    """The REST shape of a device row; ``last_seen_at``: its latest activity (``device_activity.last_seen_of``)."""
    return schemas.Device(
        name=device.name,
        serial=device.serial,
        manufacturer=device.manufacturer,
        model=device.model,
        soc=device.soc,
        abi=device.abi,
        os_version=device.os_version,
        cpu_cores=device.cpu_cores,
        cpu_max_freqs_khz=list(device.cpu_max_freqs_khz or []),
        props=dict(device.props or {}),
        owner=device.owner,
        thermal=thermal,
        created_at=device.created_at,
        updated_at=device.updated_at,
        last_seen_at=last_seen_at or device.updated_at,
        loopback=is_loopback(device.props),
        tables=tables,
    )


def delete_device(session: Session, name: str) -> None:
    """Delete device ``name`` and everything measured on it (the foreign keys cascade)."""
    device = find_device(session, name, field="name")
    session.execute(delete(Device).where(Device.id == device.id).execution_options(synchronize_session=False))
