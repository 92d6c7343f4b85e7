"""Every endpoint through ProfilerClient against the app (SQLite, and PostgreSQL in CI)."""

from __future__ import annotations

import csv
import io
import uuid

import pytest

from hwnas.client import ConflictError, NotFoundError, ProfilerClient
from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import DeviceInfo, JobClaim, JobCreate, JobFail, JobHeartbeat, JobState
from tests.support.app_server import AppServer
from tests.support.measurements import batch, key, result


def test_health(client: ProfilerClient) -> None:
    health = client.health()
    assert health.status == "ok" and health.database is True


def test_device_register_update_list(agent: ProfilerClient, client: ProfilerClient) -> None:
    name = f"dev-{uuid.uuid4().hex[:8]}"
    created = agent.put_device(
        name, DeviceInfo(model="Pixel 7", cpu_cores=8, cpu_max_freqs_khz=[1800000, 2850000], props={"thermal": "ok"})
    )
    assert created.name == name and created.cpu_max_freqs_khz == [1800000, 2850000] and created.tables == []
    updated = agent.put_device(name, DeviceInfo(model="Pixel 7", os_version="14", cpu_cores=8))
    assert updated.os_version == "14" and updated.created_at == created.created_at and updated.updated_at >= created.updated_at
    assert client.get_device(name).os_version == "14"
    assert name in [d.name for d in client.list_devices()]
    with pytest.raises(NotFoundError) as err:
        client.get_device("no-such-device")
    assert "no-such-device" in err.value.detail


def test_put_device_answers_201_then_200(server: AppServer) -> None:
    name = f"dev-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {server.agent_token}"}
    assert server.http.put(f"/devices/{name}", json={"model": "a"}, headers=auth).status_code == 201
    again = server.http.put(f"/devices/{name}", json={"model": "b"}, headers=auth)
    assert again.status_code == 200 and again.json()["model"] == "b"


def test_lut_view_latest_overhead_and_tables(agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    first = agent.post_measurements(
        batch(device, [result(key(0), 2.0), result(key(1), 3.0), result(OVERHEAD_KEY, 0.5)], runtime_version="1.16")
    )
    assert (first.stored, first.duplicates) == (3, 0)
    # A later run re-measures key 0: the table shows the latest value and the latest runtime version.
    agent.post_measurements(batch(device, [result(key(0), 1.5), result(OVERHEAD_KEY, 0.4)], runtime_version="1.17"))
    lut = client.get_lut(device).lut
    assert lut is not None
    assert (lut.device, lut.runtime, lut.threads, lut.unit, lut.runtime_version) == (device, "ort", 1, "ms", "1.17")
    assert lut.overhead_ms == pytest.approx(0.4)
    assert set(lut.entries) == {key(0), key(1)}  # the overhead is not an entry
    assert lut.entries[key(0)].median_ms == pytest.approx(1.5)
    assert lut.entries[key(1)].p90_ms == pytest.approx(3.6) and lut.entries[key(1)].n == 50
    tables = client.get_device(device).tables
    assert [(t.runtime, t.threads, t.entries, t.runtime_version) for t in tables] == [("ort", 1, 2, "1.17")]


def test_etag_and_304(agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    agent.post_measurements(batch(device, [result(key(0))]))
    first = client.get_lut(device, runtime="ort", threads=1)
    assert first.etag and first.etag.startswith('"') and not first.not_modified
    again = client.get_lut(device, runtime="ort", threads=1, etag=first.etag)
    assert again.not_modified and again.lut is None and again.etag == first.etag
    agent.post_measurements(batch(device, [result(key(1))]))  # the table changes: the ETag must too
    changed = client.get_lut(device, runtime="ort", threads=1, etag=first.etag)
    assert not changed.not_modified and changed.etag != first.etag and changed.lut is not None and key(1) in changed.lut.entries


def test_csv_by_param_and_accept(server: AppServer, agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    agent.post_measurements(batch(device, [result(key(0), 2.0), result(key(1), 1.0), result(OVERHEAD_KEY, 0.25)]))
    text = client.get_lut_csv(device)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["key"] == OVERHEAD_KEY and float(rows[0]["median_ms"]) == 0.25
    by_key = {r["key"]: r for r in rows[1:]}
    assert set(by_key) == {key(0), key(1)} and float(by_key[key(0)]["median_ms"]) == 2.0 and by_key[key(0)]["n"] == "50"
    response = server.http.get(f"/lut/{device}", headers={"Accept": "text/csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv") and response.text == text
    not_modified = server.http.get(
        f"/lut/{device}", params={"format": "csv"}, headers={"If-None-Match": response.headers["etag"]}
    )
    assert not_modified.status_code == 304


def test_idempotent_reupload(agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    b = batch(device, [result(key(0)), result(key(1))])
    assert agent.post_measurements(b).stored == 2
    etag = client.get_lut(device).etag
    again = agent.post_measurements(b)
    assert (again.stored, again.duplicates) == (0, 2)
    assert client.get_lut(device, etag=etag).not_modified  # nothing changed
    # The same run extended by one key stores only that key.
    grown = b.model_copy(update={"results": [*b.results, result(key(2))]})
    assert (agent.post_measurements(grown).stored, agent.post_measurements(grown).duplicates) == (1, 3)


def test_ambiguous_and_missing_tables(agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    with pytest.raises(NotFoundError) as none_yet:
        client.get_lut(device)
    assert device in none_yet.value.detail
    agent.post_measurements(batch(device, [result(key(0))], runtime="ort", threads=1))
    agent.post_measurements(batch(device, [result(key(0))], runtime="ort", threads=4))
    agent.post_measurements(batch(device, [result(key(0))], runtime="torchscript", threads=1))
    with pytest.raises(ConflictError) as err:
        client.get_lut(device)
    assert "runtime=ort&threads=4" in err.value.detail and "runtime=torchscript&threads=1" in err.value.detail
    assert {e["field"] for e in err.value.errors} == {"runtime", "threads"}
    with pytest.raises(ConflictError):
        client.get_lut(device, runtime="ort")
    assert client.get_lut(device, runtime="ort", threads=4).lut.threads == 4  # type: ignore[union-attr]
    assert client.get_lut(device, runtime="torchscript").lut.runtime == "torchscript"  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        client.get_lut(device, runtime="tflite")
    with pytest.raises(NotFoundError) as unknown:
        client.get_lut("no-such-device")
    assert "no-such-device" in unknown.value.detail


def test_query_present_missing(agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    assert client.query_lut(device, [key(0)], runtime="ort", threads=1).missing == [key(0)]  # no table yet
    agent.post_measurements(batch(device, [result(key(0)), result(OVERHEAD_KEY, 0.1)]))
    answer = client.query_lut(device, [key(0), key(1), OVERHEAD_KEY, key(0)], runtime="ort", threads=1)
    assert answer.present == [key(0), OVERHEAD_KEY] and answer.missing == [key(1)]
    with pytest.raises(NotFoundError):
        client.query_lut("no-such-device", [key(0)])


def test_job_lifecycle(agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    agent.post_measurements(batch(device, [result(key(0))]))
    created = client.create_job(JobCreate(device=device, runtime="ort", threads=1, keys=[key(0), key(1), key(2), key(1)]))
    assert (created.total, created.already_present, created.pending, created.state) == (2, 1, 2, JobState.queued)
    claimed = agent.claim_job(JobClaim(device=device, agent="a1", lease_s=60))
    assert claimed is not None and claimed.id == created.id and claimed.keys == [key(1), key(2)]
    assert agent.claim_job(JobClaim(device=device, agent="a2", lease_s=60)) is None  # leased: nothing else to claim
    job = client.get_job(created.id)
    assert job.state == JobState.running and job.agent == "a1" and job.pending_keys == [key(1), key(2)]
    beat = agent.heartbeat(created.id, JobHeartbeat(agent="a1", lease_s=120))
    assert beat.lease_expires_at is not None and job.lease_expires_at is not None and beat.lease_expires_at > job.lease_expires_at
    with pytest.raises(ConflictError):
        agent.heartbeat(created.id, JobHeartbeat(agent="a2"))
    agent.post_measurements(batch(device, [result(key(1))], job_id=created.id))
    assert client.get_job(created.id).pending_keys == [key(2)]
    failed = agent.fail_key(created.id, JobFail(key=key(2), error="runtime crashed"))
    assert (failed.state, failed.done, failed.failed, failed.pending) == (JobState.done, 1, 1, 0)
    assert failed.errors == {key(2): "runtime crashed"}
    with pytest.raises(ConflictError):
        agent.heartbeat(created.id, JobHeartbeat(agent="a1"))  # finished jobs have no lease
    with pytest.raises(ConflictError):
        agent.fail_key(created.id, JobFail(key=key(9), error="x"))  # a finished job's items can no longer fail
    with pytest.raises(NotFoundError):
        client.get_job(10**9)


def test_job_force_and_nothing_to_do(agent: ProfilerClient, client: ProfilerClient, device: str) -> None:
    agent.post_measurements(batch(device, [result(key(0))]))
    nothing = client.create_job(JobCreate(device=device, runtime="ort", threads=1, keys=[key(0)]))
    assert (nothing.total, nothing.already_present, nothing.state) == (0, 1, JobState.done)
    forced = client.create_job(JobCreate(device=device, runtime="ort", threads=1, keys=[key(0)], force=True))
    assert (forced.total, forced.already_present, forced.pending, forced.state) == (1, 1, 1, JobState.queued)
    claimed = agent.claim_job(JobClaim(device=device, agent="a1"))
    assert claimed is not None and claimed.id == forced.id and claimed.keys == [key(0)]


def test_openapi_docs(server: AppServer) -> None:
    spec = server.http.get("/openapi.json").json()
    for path in (
        "/healthz",
        "/devices/{name}",
        "/lut/{device}",
        "/lut/{device}/query",
        "/measurements",
        "/jobs",
        "/jobs/claim",
        "/jobs/{job_id}/heartbeat",
        "/jobs/{job_id}/fail",
    ):
        assert path in spec["paths"]
    assert server.http.get("/docs").status_code == 200
