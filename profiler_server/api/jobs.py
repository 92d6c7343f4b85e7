"""Profiling jobs: create, list, cancel (client), read, claim / heartbeat / fail (agent)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from hwnas import schemas
from profiler_server.api.bodies import json_body
from profiler_server.api.deps import AgentDep, ClientDep, ReaderDep, SessionDep, run_write
from profiler_server.services import jobs

router = APIRouter(tags=["jobs"])
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}}
JobId = Annotated[int, Path(ge=1, le=schemas.INT32_MAX, description="job id")]


@router.post("/jobs", status_code=status.HTTP_201_CREATED, response_model=schemas.JobCreated, responses=ERRORS)
def create_job(
    caller: ClientDep, body: Annotated[schemas.JobCreate, Depends(json_body(schemas.JobCreate))], session: SessionDep
) -> schemas.JobCreated:
    """Queue the keys the table lacks (every key with ``force``); at most 20,000 keys and 1,000 networks."""
    return run_write(session, lambda: jobs.create_job(session, body, created_by=caller.name), bulk=True)


@router.get("/jobs", response_model=list[schemas.Job], responses=ERRORS)
def list_jobs(
    session: SessionDep,
    _: ReaderDep,
    device: Annotated[str | None, Query(pattern=schemas.NAME_PATTERN)] = None,
    state: schemas.JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(ge=1, le=schemas.INT32_MAX, description="ids below this (the next page)")] = None,
) -> list[schemas.Job]:
    """Jobs, newest first; each shows at most 20 pending keys (GET /jobs/{id} shows more)."""
    rows = jobs.list_jobs(session, device, state.value if state else None, limit, before)
    return [jobs.to_schema(session, j, pending_limit=20) for j in rows]


@router.post("/jobs/claim", response_model=schemas.JobClaimed, responses={204: {"description": "No job to claim"}, **ERRORS})
def claim_job(body: schemas.JobClaim, session: SessionDep, caller: AgentDep, request: Request) -> schemas.JobClaimed | Response:
    """Lease the oldest open job of a device to the calling agent token; 204 when there is none."""
    caller.check_device(body.device)
    max_claims = request.app.state.settings.max_claims
    claimed = run_write(session, lambda: jobs.claim_job(session, body, holder=caller.name, max_claims=max_claims, actor=caller))
    return claimed if claimed is not None else Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/jobs/{job_id}", response_model=schemas.Job, responses=ERRORS)
def get_job(job_id: JobId, session: SessionDep, _: ReaderDep) -> schemas.Job:
    """Status, counts and (the first 1,000) pending keys of a job."""
    return jobs.to_schema(session, jobs.find_job(session, job_id))


@router.delete("/jobs/{job_id}", response_model=schemas.Job, responses=ERRORS)
def cancel_job(job_id: JobId, session: SessionDep, caller: ClientDep) -> schemas.Job:
    """Cancel a queued or running job (the client token that created it, or an admin); its agent stops at its next heartbeat."""
    return run_write(session, lambda: jobs.to_schema(session, jobs.cancel_job(session, job_id, caller.name, actor=caller)))


@router.post("/jobs/{job_id}/heartbeat", response_model=schemas.Job, responses=ERRORS)
def heartbeat(job_id: JobId, body: schemas.JobHeartbeat, session: SessionDep, caller: AgentDep) -> schemas.Job:
    """Extend the caller's lease on a job (only the token that claimed it may)."""
    return run_write(
        session, lambda: jobs.to_schema(session, jobs.heartbeat(session, job_id, body, caller.agent_token, actor=caller))
    )


@router.post("/jobs/{job_id}/fail", response_model=schemas.Job, responses=ERRORS)
def fail_key(job_id: JobId, body: schemas.JobFail, session: SessionDep, caller: AgentDep) -> schemas.Job:
    """Record that one key of a job could not be measured (only the lease holder may)."""
    return run_write(
        session, lambda: jobs.to_schema(session, jobs.fail_key(session, job_id, body, caller.agent_token, actor=caller))
    )
