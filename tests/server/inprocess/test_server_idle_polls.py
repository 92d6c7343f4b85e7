"""Issue 27: an idle agent's polls keep its device's "last seen" moving. A claim that finds no job leaves no job row
behind, so the server records it on the device (``polled_at``), at most once per ``POLL_MARK_S`` per device so that
polling does not write on every call; on SQLite and PostgreSQL. (The dashboard showing it: test_dashboard_lab_facts.)
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hwnas.client import AuthError, ProfilerClient
from hwnas.schemas import JobClaim, JobCreate
from profiler_server.services.device_activity import POLL_MARK_S
from tests.support.app_server import AppServer
from tests.support.measurements import key
from tests.support.server_database import polled_at, rewind_poll


def test_a_claim_that_finds_no_job_moves_last_seen(server: AppServer, agent: ProfilerClient, device: str) -> None:
    registered = agent.get_device(device)
    assert registered.last_seen_at == registered.updated_at  # nothing but the registration yet

    before_poll = datetime.now(timezone.utc)
    assert agent.claim_job(JobClaim(device=device, agent="idle-agent")) is None
    polled = agent.get_device(device)
    assert polled.updated_at == registered.updated_at  # the registration did not change...
    assert polled.last_seen_at is not None and polled.last_seen_at >= before_poll > registered.updated_at  # ...last seen did
    assert polled.last_seen_at == polled_at(server.database_url, device)
    listed = next(d for d in agent.list_devices() if d.name == device)
    assert listed.last_seen_at == polled.last_seen_at  # GET /devices computes the same


def test_polls_are_recorded_at_most_once_per_interval(server: AppServer, agent: ProfilerClient, device: str) -> None:
    claim = JobClaim(device=device, agent="idle-agent")
    assert agent.claim_job(claim) is None
    first = polled_at(server.database_url, device)
    assert first is not None
    assert agent.claim_job(claim) is None
    assert polled_at(server.database_url, device) == first  # a poll within POLL_MARK_S of the last writes nothing

    rewind_poll(server.database_url, device, POLL_MARK_S + 1)  # as if the last recorded poll were that long ago
    before_poll = datetime.now(timezone.utc)
    assert agent.claim_job(claim) is None
    again = polled_at(server.database_url, device)
    assert again is not None and again >= before_poll
    assert agent.get_device(device).last_seen_at == again


def test_a_claim_that_finds_a_job_is_seen_through_the_job_only(
    server: AppServer, agent: ProfilerClient, client: ProfilerClient, device: str
) -> None:
    job = client.create_job(JobCreate(device=device, runtime="ort", threads=1, keys=[key(0)]))
    before_claim = datetime.now(timezone.utc)
    claimed = agent.claim_job(JobClaim(device=device, agent="busy-agent"))
    assert claimed is not None and claimed.id == job.id
    assert polled_at(server.database_url, device) is None  # the claimed job's row records this claim
    seen = agent.get_device(device).last_seen_at
    assert seen is not None and seen >= before_claim


def test_another_tokens_poll_is_refused_and_not_recorded(server: AppServer, device: str) -> None:
    stranger = server.new_token(f"stranger-{device}", "agent")
    with server.client_holding(stranger) as other, pytest.raises(AuthError) as refused:
        other.claim_job(JobClaim(device=device, agent="stranger"))
    assert refused.value.status == 403
    assert polled_at(server.database_url, device) is None
