"""Profiling jobs: create (client), read, claim / heartbeat / fail (agent)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from hwnas import schemas
from profiler_server.api.deps import AgentDep, ClientDep, ReaderDep, SessionDep, run_write
from profiler_server.services import jobs

router = APIRouter(tags=["jobs"])
ERRORS = {404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}}


@router.post("/jobs", status_code=status.HTTP_201_CREATED, response_model=schemas.JobCreated, responses=ERRORS)
def create_job(body: schemas.JobCreate, session: SessionDep, caller: ClientDep) -> schemas.JobCreated:
    """Queue the keys the table lacks (every key with ``force``)."""
    return run_write(session, lambda: jobs.create_job(session, body, created_by=caller.name))


@router.post("/jobs/claim", response_model=schemas.JobClaimed, responses={204: {"description": "No job to claim"}, **ERRORS})
def claim_job(body: schemas.JobClaim, session: SessionDep, _: AgentDep) -> schemas.JobClaimed | Response:
    """Lease the oldest open job of a device to an agent; 204 when there is none."""
    claimed = run_write(session, lambda: jobs.claim_job(session, body))
    return claimed if claimed is not None else Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/jobs/{job_id}", response_model=schemas.Job, responses=ERRORS)
def get_job(job_id: int, session: SessionDep, _: ReaderDep) -> schemas.Job:
    """Status, counts and pending keys of a job."""
    return jobs.to_schema(session, jobs.find_job(session, job_id))


@router.post("/jobs/{job_id}/heartbeat", response_model=schemas.Job, responses=ERRORS)
def heartbeat(job_id: int, body: schemas.JobHeartbeat, session: SessionDep, _: AgentDep) -> schemas.Job:
    """Extend the caller's lease on a job."""
    return run_write(session, lambda: jobs.to_schema(session, jobs.heartbeat(session, job_id, body)))


@router.post("/jobs/{job_id}/fail", response_model=schemas.Job, responses=ERRORS)
def fail_key(job_id: int, body: schemas.JobFail, session: SessionDep, _: AgentDep) -> schemas.Job:
    """Record that one key of a job could not be measured."""
    return run_write(session, lambda: jobs.to_schema(session, jobs.fail_key(session, job_id, body)))
