"""Whole networks: POST /networks/measurements (agent), GET /devices/{name}/networks, PUT /lut/{device}/calibration (the device's owner or an admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from hwnas import schemas
from profiler_server.api.bodies import json_body
from profiler_server.api.deps import AgentDep, Caller, DeviceName, ReaderDep, SessionDep, require, run_write
from profiler_server.services.calibrations import calibration_detail, store_calibration
from profiler_server.services.measurements import store_network_batch
from profiler_server.services.networks import network_table

router = APIRouter(tags=["networks"])
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}}


@router.post(
    "/networks/measurements",
    response_model=schemas.MeasurementBatchResult,
    responses={**ERRORS, 413: {"model": schemas.ErrorBody}},
)
def post_network_measurements(
    caller: AgentDep,
    batch: Annotated[schemas.NetworkMeasurementBatch, Depends(json_body(schemas.NetworkMeasurementBatch))],
    session: SessionDep,
) -> schemas.MeasurementBatchResult:
    """Store a run's whole-network results; a retry stores nothing twice and reports the duplicates."""
    caller.check_device(batch.device)
    return run_write(session, lambda: store_network_batch(session, batch, caller), bulk=True)


@router.get("/devices/{name}/networks", response_model=schemas.NetworkTable, responses=ERRORS)
def get_networks(
    name: DeviceName,
    session: SessionDep,
    _: ReaderDep,
    runtime: Annotated[str | None, Query(description="e.g. onnxruntime", max_length=64, pattern=schemas.NO_NUL)] = None,
    threads: Annotated[int | None, Query(ge=1, le=schemas.MAX_THREADS)] = None,
) -> schemas.NetworkTable:
    """The latest valid measurement of every network measured on this device (one runtime and thread count)."""
    return network_table(session, name, runtime, threads)


@router.get("/lut/{device}/calibration", response_model=schemas.CalibrationDetail, responses=ERRORS)
def get_calibration(
    device: DeviceName,
    session: SessionDep,
    _: ReaderDep,
    runtime: Annotated[str | None, Query(description="e.g. onnxruntime", max_length=64, pattern=schemas.NO_NUL)] = None,
    threads: Annotated[int | None, Query(ge=1, le=schemas.MAX_THREADS)] = None,
) -> schemas.CalibrationDetail:
    """The calibration in force for a table, with the whole networks it was checked on (predicted and measured)."""
    return calibration_detail(session, device, runtime, threads)


# Role check only: which agent or client may is the owner rule's (services.ownership), whose 403 says why.
CalibratorDep = Annotated[Caller, Depends(require("agent", "client"))]


@router.put("/lut/{device}/calibration", response_model=schemas.LutCalibration, responses=ERRORS)
def put_calibration(
    device: DeviceName, body: schemas.Calibration, session: SessionDep, caller: CalibratorDep
) -> schemas.LutCalibration:
    """Store a correction ``scale · predicted + offset_ms`` for a table; GET /lut serves it from now on.

    The device's owner (its agent token, or one an admin granted it) or an admin only: every search that pulls the
    table applies it. A client token gets 403; an imported table's calibration is an admin's. Values are bounded
    (scale 0.01..100, |offset_ms| <= 60,000, MAPEs >= 0; 422 otherwise).
    """
    return run_write(session, lambda: store_calibration(session, device, body, created_by=caller.name, actor=caller))
