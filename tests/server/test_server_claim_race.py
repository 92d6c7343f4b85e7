"""The job queue under concurrent claimers through the real server (uvicorn's threadpool, separate connections):
no job is handed to two agents. The queue's other rules run in-process: inprocess/test_server_jobs.py."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from hwnas.client import ProfilerClient
from hwnas.schemas import JobClaim, JobCreate
from tests.support.live_server import LiveServer
from tests.support.measurements import key

CLAIMERS = 8
JOBS = 20


def test_concurrent_claimers_over_http_never_share_a_job(server: LiveServer, client: ProfilerClient, device: str) -> None:
    created = [client.create_job(JobCreate(device=device, runtime="ort", threads=1, keys=[key(i)])).id for i in range(JOBS)]
    start = threading.Barrier(CLAIMERS)

    def claimer(n: int) -> list[int]:
        mine: list[int] = []
        with server.client("agent") as agent:
            start.wait()
            while (claimed := agent.claim_job(JobClaim(device=device, agent=f"agent-{n}", lease_s=300))) is not None:
                mine.append(claimed.id)
        return mine

    with ThreadPoolExecutor(CLAIMERS) as pool:
        per_agent = list(pool.map(claimer, range(CLAIMERS)))
    claimed = [j for ids in per_agent for j in ids]
    assert sorted(claimed) == sorted(created)  # every job claimed exactly once
    holders = {j: client.get_job(j).agent for j in created}
    for n, ids in enumerate(per_agent):
        assert all(holders[j] == f"agent-{n}" for j in ids)
