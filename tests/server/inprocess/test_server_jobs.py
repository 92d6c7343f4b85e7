"""The job queue: concurrent claimers never share a job (here straight on the database; through the real server in
test_server_claim_race.py); an expired lease is claimed again; a heartbeat keeps a job; claims take the oldest job."""

from __future__ import annotations

import threading
from datetime import timedelta
from concurrent.futures import ThreadPoolExecutor

import pytest

from hwnas.client import ConflictError, ProfilerClient
from hwnas.schemas import DeviceInfo, JobClaim, JobCreate, JobHeartbeat, JobState
from profiler_server.db import make_engine, session_factory, write_lock
from profiler_server.services import jobs
from tests.support.app_server import AppServer
from tests.support.measurements import batch, key, result

CLAIMERS = 8
JOBS = 20


def _queue_jobs(client: ProfilerClient, device: str, n: int = JOBS) -> list[int]:
    return [client.create_job(JobCreate(device=device, runtime="ort", threads=1, keys=[key(i)])).id for i in range(n)]


def test_concurrent_claimers_on_separate_connections(server: AppServer, client: ProfilerClient, device: str) -> None:
    """The same race straight on the database, one engine (connection pool) per claimer."""
    created = _queue_jobs(client, device)
    start = threading.Barrier(CLAIMERS)

    def claimer(n: int) -> list[int]:
        engine = make_engine(server.database_url)
        sessions = session_factory(engine)
        mine: list[int] = []
        try:
            start.wait()
            while True:
                with sessions() as session:
                    with write_lock(session):
                        claimed = jobs.claim_job(session, JobClaim(device=device, agent=f"db-{n}", lease_s=300))
                    session.commit()
                if claimed is None:
                    return mine
                mine.append(claimed.id)
        finally:
            engine.dispose()

    with ThreadPoolExecutor(CLAIMERS) as pool:
        per_agent = list(pool.map(claimer, range(CLAIMERS)))
    claimed = [j for ids in per_agent for j in ids]
    assert sorted(claimed) == sorted(created)


def test_expired_lease_is_claimed_again(server: AppServer, agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    job_id = _queue_jobs(client, device, 1)[0]
    first = agent.claim_job(JobClaim(device=device, agent="slow", lease_s=600))
    assert first is not None and first.id == job_id
    assert agent.claim_job(JobClaim(device=device, agent="other", lease_s=60)) is None
    assert client.get_job(job_id).state == JobState.running
    server.end_lease(job_id)
    assert client.get_job(job_id).state == JobState.queued  # the lease ran out: back in the queue
    second = agent.claim_job(JobClaim(device=device, agent="other", lease_s=60))
    assert second is not None and second.id == job_id and second.keys == first.keys
    job = client.get_job(job_id)
    assert job.agent == "other" and job.state == JobState.running
    # The first agent lost its lease: its heartbeat is refused, the new holder's is not.
    with pytest.raises(ConflictError) as err:
        agent.heartbeat(job_id, JobHeartbeat(agent="slow"))
    assert "other" in err.value.detail
    assert agent.heartbeat(job_id, JobHeartbeat(agent="other", lease_s=60)).agent == "other"
    # Late results of the first agent still count and finish the job.
    agent.post_measurements(batch(device, [result(k) for k in first.keys], job_id=job_id))
    assert client.get_job(job_id).state == JobState.done
    assert agent.claim_job(JobClaim(device=device, agent="other")) is None


def test_heartbeat_keeps_job_from_others(server: AppServer, agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    job_id = _queue_jobs(client, device, 1)[0]
    assert agent.claim_job(JobClaim(device=device, agent="a", lease_s=60)) is not None
    before = client.get_job(job_id).lease_expires_at
    renewed = agent.heartbeat(job_id, JobHeartbeat(agent="a", lease_s=600))
    assert renewed.lease_expires_at is not None and before is not None
    assert renewed.lease_expires_at - before > timedelta(seconds=500)  # the heartbeat moved the lease's end
    assert agent.claim_job(JobClaim(device=device, agent="b", lease_s=60)) is None
    # A lease that ran out and was renewed by its holder before anyone claimed it is the holder's again.
    server.end_lease(job_id)
    assert agent.heartbeat(job_id, JobHeartbeat(agent="a", lease_s=600)).agent == "a"
    assert agent.claim_job(JobClaim(device=device, agent="b", lease_s=60)) is None
    assert client.get_job(job_id).agent == "a"


def test_claims_take_oldest_job_of_that_device_only(agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    other = device + "-b"
    agent.put_device(other, DeviceInfo())
    mine = _queue_jobs(client, device, 2)
    theirs = client.create_job(JobCreate(device=other, runtime="ort", threads=1, keys=[key(0)])).id
    got = agent.claim_job(JobClaim(device=device, agent="a"))
    assert got is not None and got.id == mine[0]
    got_other = agent.claim_job(JobClaim(device=other, agent="a"))
    assert got_other is not None and got_other.id == theirs
