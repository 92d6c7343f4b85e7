"""Devices: PUT /devices/{name} (agent), GET /devices, GET /devices/{name}, DELETE /devices/{name} (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from hwnas import schemas
from profiler_server.api.deps import AdminDep, AgentDep, Caller, DeviceName, ReaderDep, SessionDep, run_write
from profiler_server.services import devices
from profiler_server.services.device_activity import last_seen_of

router = APIRouter(tags=["devices"])


@router.put("/devices/{name}", response_model=schemas.Device, responses={201: {"model": schemas.Device}})
def put_device(
    name: DeviceName, info: schemas.DeviceInfo, session: SessionDep, caller: AgentDep, response: Response
) -> schemas.Device:
    """Register a device or update what it is (201 when new). The agent token that registered it owns it: another
    agent token may not change it (403); an admin may."""
    caller.check_device(name, "name")

    def work() -> schemas.Device:
        device, created = devices.put_device(session, name, info, owner=caller.agent_token, actor=caller)
        response.status_code = 201 if created else 200
        return devices.to_schema(device, devices.tables_of(session, [device.id]).get(device.id, []))

    return run_write(session, work)


def shown_to(caller: Caller, device: schemas.Device) -> schemas.Device:
    """Anonymous readers (READ_REQUIRES_TOKEN off) do not see where a phone is: its serial and ADB address."""
    if caller.name is not None:
        return device
    props = dict(device.props)
    if isinstance(props.get("connection"), dict):
        props["connection"] = {k: v for k, v in props["connection"].items() if k != "serial"}
    return device.model_copy(update={"serial": None, "props": props, "owner": None})


@router.get("/devices", response_model=list[schemas.Device])
def list_devices(session: SessionDep, caller: ReaderDep) -> list[schemas.Device]:
    """Every device with its latency tables (serials and addresses only for callers with a token)."""
    rows = devices.list_devices(session)
    tables = devices.tables_of(session, [d.id for d in rows])
    thermal = devices.thermal_of(session, [d.id for d in rows])
    seen = last_seen_of(session, rows)
    return [shown_to(caller, devices.to_schema(d, tables.get(d.id, []), thermal.get(d.id), seen[d.id])) for d in rows]


@router.delete("/devices/{name}", status_code=204, responses={204: {"description": "Deleted"}, 404: {"model": schemas.ErrorBody}})
def delete_device(name: DeviceName, session: SessionDep, _: AdminDep) -> Response:
    """Delete a device with its measurements, tables and jobs (admin only)."""
    run_write(session, lambda: devices.delete_device(session, name))
    return Response(status_code=204)


@router.get("/devices/{name}", response_model=schemas.Device, responses={404: {"model": schemas.ErrorBody}})
def get_device(name: DeviceName, session: SessionDep, caller: ReaderDep) -> schemas.Device:
    """One device with its (runtime, threads) tables and their entry counts."""
    device = devices.find_device(session, name, field="name")
    return shown_to(
        caller,
        devices.to_schema(
            device,
            devices.tables_of(session, [device.id]).get(device.id, []),
            devices.thermal_of(session, [device.id]).get(device.id),
            last_seen_of(session, [device])[device.id],
        ),
    )
