"""Devices: PUT /devices/{name} (agent), GET /devices, GET /devices/{name}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from hwnas import schemas
from profiler_server.api.deps import AgentDep, ReaderDep, SessionDep, run_write
from profiler_server.services import devices

router = APIRouter(tags=["devices"])
DeviceName = Annotated[str, Path(pattern=schemas.NAME_PATTERN, description="device name, e.g. pixel7 or host")]


@router.put("/devices/{name}", response_model=schemas.Device, responses={201: {"model": schemas.Device}})
def put_device(name: DeviceName, info: schemas.DeviceInfo, session: SessionDep, _: AgentDep, response: Response) -> schemas.Device:
    """Register a device or update what it is (201 when new)."""

    def work() -> schemas.Device:
        device, created = devices.put_device(session, name, info)
        response.status_code = 201 if created else 200
        return devices.to_schema(device, devices.tables_of(session, [device.id]).get(device.id, []))

    return run_write(session, work)


@router.get("/devices", response_model=list[schemas.Device])
def list_devices(session: SessionDep, _: ReaderDep) -> list[schemas.Device]:
    """Every device with its latency tables."""
    rows = devices.list_devices(session)
    tables = devices.tables_of(session, [d.id for d in rows])
    return [devices.to_schema(d, tables.get(d.id, [])) for d in rows]


@router.get("/devices/{name}", response_model=schemas.Device, responses={404: {"model": schemas.ErrorBody}})
def get_device(name: str, session: SessionDep, _: ReaderDep) -> schemas.Device:
    """One device with its (runtime, threads) tables and their entry counts."""
    device = devices.find_device(session, name, field="name")
    return devices.to_schema(device, devices.tables_of(session, [device.id]).get(device.id, []))
