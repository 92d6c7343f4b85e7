"""POST /measurements (agent): one batch of results of one run; idempotent on (run_id, key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from hwnas import schemas
from profiler_server.api.bodies import json_body
from profiler_server.api.deps import AgentDep, SessionDep, run_write
from profiler_server.services.measurements import prepare_batch, store_batch

router = APIRouter(tags=["measurements"])


@router.post(
    "/measurements",
    response_model=schemas.MeasurementBatchResult,
    responses={404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}, 413: {"model": schemas.ErrorBody}},
)
def post_measurements(
    caller: AgentDep,
    batch: Annotated[schemas.MeasurementBatch, Depends(json_body(schemas.MeasurementBatch))],
    session: SessionDep,
) -> schemas.MeasurementBatchResult:
    """Store a run's results; a retry stores nothing twice and reports the duplicates."""
    caller.check_device(batch.device)
    # Everything that needs no write lock happens first: the key grammar (~0.35 s for 20,000 keys), the operator
    # dictionary (created in short transactions of its own), the rows' conversion for the driver. The upload's
    # transaction then only checks ownership and writes its rows.
    prepared = prepare_batch(session, batch, lambda work: run_write(session, work, bulk=True))
    return run_write(session, lambda: store_batch(session, batch, caller, prepared), bulk=True)
