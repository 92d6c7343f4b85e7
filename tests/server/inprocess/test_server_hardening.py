"""A server shared by a device lab: bounded inputs answered with ErrorBody 4xx on both databases,
identity from the token, jobs that cannot loop for ever, and the API conventions of issue 12."""

from __future__ import annotations

import uuid

import httpx
import pytest

from hwnas.schemas import MAX_KEYS, DeviceInfo, JobClaim, JobCreate, JobFail
from tests.support.app_server import AppServer
from tests.support.measurements import batch, key, result


def call(
    server: AppServer, method: str, path: str, role: str | None = "agent", token: str | None = None, **kwargs: object
) -> httpx.Response:
    token = token or server.token(role)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))  # type: ignore[arg-type]
    return server.http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]


def assert_error(response: httpx.Response, status: int, field: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"detail", "errors"} and isinstance(body["detail"], str)
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def upload(device: str, **overrides: object) -> dict[str, object]:
    body = {
        "device": device,
        "runtime": "ort",
        "runtime_version": "1",
        "threads": 1,
        "agent": "a",
        "run_id": str(uuid.uuid4()),
        "results": [{"key": key(1), "median_ms": 1.0, "iterations": 10}],
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    ("info", "field"),
    [
        ({"serial": "s" * 257}, "serial"),
        ({"model": "m\x00x"}, "model"),
        ({"cpu_cores": 2**31}, "cpu_cores"),
        ({"cpu_max_freqs_khz": [2**31]}, "cpu_max_freqs_khz[0]"),
        ({"props": {"x": float("inf")}}, "props"),
    ],
)
def test_device_fields_beyond_the_columns_are_422(server: AppServer, info: dict[str, object], field: str) -> None:
    import json

    r = call(
        server,
        "PUT",
        f"/devices/dev-{uuid.uuid4().hex[:6]}",
        content=json.dumps(info, allow_nan=True),
        headers={"Content-Type": "application/json"},
    )
    assert_error(r, 422, field)


def test_deeply_nested_props_are_refused_and_device_reads_keep_working(server: AppServer, device: str) -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(800):
        node["a"] = {}
        node = node["a"]  # type: ignore[assignment]
    import json

    r = call(
        server, "PUT", f"/devices/{device}", content=json.dumps({"props": deep}), headers={"Content-Type": "application/json"}
    )
    assert_error(r, 422)
    nine = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}
    assert_error(call(server, "PUT", f"/devices/{device}", json={"props": nine}), 422, "props")
    assert call(server, "GET", "/devices", role=None).status_code == 200
    assert call(server, "GET", f"/devices/{device}", role=None).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"runtime_version": "v" * 65}, "runtime_version"),
        ({"threads": 2**31}, "threads"),
        ({"job_id": 2**31}, "job_id"),
        ({"agent": "a\x00b"}, "agent"),
        ({"results": [{"key": key(1), "median_ms": 1.0, "iterations": 2**63}]}, "results[0].iterations"),
        ({"results": [{"key": "ir_k3@1x" + "9" * 300 + "x8x8", "median_ms": 1.0, "iterations": 1}]}, "results[0].key"),
        ({"device_state": {"t": "\x00"}}, "device_state"),
    ],
)
def test_uploads_beyond_the_columns_are_422_and_nothing_is_stored(
    server: AppServer, device: str, overrides: dict[str, object], field: str
) -> None:
    r = call(server, "POST", "/measurements", json=upload(device, **overrides))
    assert_error(r, 422, field)
    assert server.http.get(f"/devices/{device}").json()["tables"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/2147483648",
        "/jobs/99999999999999999999999",
        "/jobs/0",
        "/devices/%00",
        "/lut/%00",
        "/devices/%00/networks",
        "/lut/x?threads=99999999999999999999",
    ],
)
def test_path_and_query_values_no_column_holds_are_422(server: AppServer, path: str) -> None:
    assert_error(call(server, "GET", path, role=None), 422)


def test_key_lists_are_bounded_and_a_maximal_legal_one_works(server: AppServer, device: str) -> None:
    keys = [key(1000 + i) for i in range(MAX_KEYS)]
    too_many = call(server, "POST", f"/lut/{device}/query", json={"keys": keys + [key(999)]}, role=None)
    assert_error(too_many, 422, "keys")
    ok = call(server, "POST", f"/lut/{device}/query", json={"keys": keys}, role=None)
    assert ok.status_code == 200 and len(ok.json()["missing"]) == MAX_KEYS
    bad = call(server, "POST", f"/lut/{device}/query", json={"keys": [keys[0], "IR@1x1x1x1"]}, role=None)
    assert_error(bad, 422, "keys[1]")
    # A maximal job: every IN list is chunked (psycopg refuses 65,535 parameters in one statement).
    job = call(server, "POST", "/jobs", role="client", json={"device": device, "runtime": "ort", "threads": 1, "keys": keys})
    assert job.status_code == 201, job.text[:300]
    shown = call(server, "GET", f"/jobs/{job.json()['id']}", role=None).json()
    assert shown["pending"] == MAX_KEYS and len(shown["pending_keys"]) == 1000


def _job(server: AppServer, device: str, keys: list[str]) -> int:
    with server.client("client") as c:
        return c.create_job(JobCreate(device=device, runtime="ort", threads=1, keys=keys)).id


def test_only_the_token_holding_the_lease_may_renew_it_or_fail_items(server: AppServer, device: str) -> None:
    job_id = _job(server, device, [key(11), key(12)])
    other = server.new_token(f"other-{uuid.uuid4().hex[:6]}", "agent")
    claimed = call(server, "POST", "/jobs/claim", json={"device": device, "agent": "A", "lease_s": 60})
    assert claimed.status_code == 200 and claimed.json()["id"] == job_id
    # B's token, saying it is A: refused, A's lease untouched.
    assert_error(call(server, "POST", f"/jobs/{job_id}/heartbeat", token=other, json={"agent": "A"}), 403, "job_id")
    assert_error(call(server, "POST", f"/jobs/{job_id}/fail", token=other, json={"key": key(11), "error": "x"}), 403)
    job = call(server, "GET", f"/jobs/{job_id}", role=None).json()
    assert job["failed"] == 0 and job["holder"] == "test-agent"
    # The holder may.
    assert call(server, "POST", f"/jobs/{job_id}/fail", json={"key": key(11), "error": "boom"}).json()["failed"] == 1


def test_only_the_agent_token_that_registered_a_device_may_change_it(server: AppServer, device: str) -> None:
    other = server.new_token(f"other-{uuid.uuid4().hex[:6]}", "agent")
    r = call(server, "PUT", f"/devices/{device}", token=other, json={"model": "Pixel 9"})
    assert_error(r, 403, "name")
    assert "test-agent" in r.json()["detail"]
    shown = call(server, "GET", f"/devices/{device}", role="client").json()
    assert shown["model"] == "Pixel 7" and shown["owner"] == "test-agent"  # nothing changed
    assert call(server, "GET", f"/devices/{device}", role=None).json()["owner"] is None  # anonymous: not shown
    assert call(server, "PUT", f"/devices/{device}", json={"model": "Pixel 7a"}).status_code == 200  # the owner may
    assert call(server, "PUT", f"/devices/{device}", role="admin", json={"model": "Pixel 8"}).status_code == 200
    after = call(server, "GET", f"/devices/{device}", role="client").json()
    assert after["model"] == "Pixel 8" and after["owner"] == "test-agent"  # an admin's change keeps the owner
    # A device nobody registered yet becomes the registering token's.
    new = f"dev-{uuid.uuid4().hex[:6]}"
    assert call(server, "PUT", f"/devices/{new}", token=other, json={}).status_code == 201
    assert_error(call(server, "PUT", f"/devices/{new}", json={}), 403, "name")


def test_an_agent_token_limited_to_devices_acts_for_those_only(server: AppServer) -> None:
    mine, theirs = f"dev-{uuid.uuid4().hex[:6]}", f"dev-{uuid.uuid4().hex[:6]}"
    limited = server.new_token(f"lim-{uuid.uuid4().hex[:6]}", "agent", devices=[mine])
    assert call(server, "PUT", f"/devices/{theirs}", json={}).status_code == 201  # registered by test-agent
    assert_error(call(server, "PUT", f"/devices/{theirs}", token=limited, json={}), 403, "name")
    assert_error(call(server, "POST", "/measurements", token=limited, json=upload(theirs)), 403, "device")
    assert_error(call(server, "POST", "/jobs/claim", token=limited, json={"device": theirs, "agent": "x"}), 403, "device")
    net = {
        "device": theirs,
        "runtime": "ort",
        "runtime_version": "1",
        "threads": 1,
        "agent": "a",
        "run_id": str(uuid.uuid4()),
        "results": [{"arch_id": "a" * 16, "median_ms": 1.0, "iterations": 10}],
    }
    assert_error(call(server, "POST", "/networks/measurements", token=limited, json=net), 403, "device")
    # Its own device: everything as usual.
    assert call(server, "PUT", f"/devices/{mine}", token=limited, json={}).status_code == 201
    assert call(server, "POST", "/measurements", token=limited, json=upload(mine)).status_code == 200
    assert call(server, "POST", "/jobs/claim", token=limited, json={"device": mine, "agent": "x"}).status_code == 204


def test_device_limits_are_for_agent_tokens_with_valid_names(server: AppServer) -> None:
    from profiler_server.errors import InvalidInput

    with pytest.raises(InvalidInput, match="only agent tokens"):
        server.new_token("c", "client", devices=["pixel7"])
    with pytest.raises(InvalidInput, match="device names"):
        server.new_token("a", "agent", devices=["bad name"])
    with pytest.raises(InvalidInput, match="device names"):
        server.new_token("a", "agent", devices=[])


def test_a_job_that_keeps_losing_its_agents_is_failed_with_a_reason(server: AppServer, device: str) -> None:
    job_id = _job(server, device, [key(21)])
    with server.client("agent") as agent:
        for _ in range(5):  # MAX_CLAIMS: leases that run out at once, as if each agent died on the job
            assert agent.claim_job(JobClaim(device=device, agent="crashy", lease_s=0.001)).id == job_id
        assert agent.claim_job(JobClaim(device=device, agent="crashy", lease_s=0.001)) is None
    job = call(server, "GET", f"/jobs/{job_id}", role=None).json()
    assert job["state"] == "failed" and "claimed 5 times" in job["reason"]
    # One of those agents' results arrives after all: the job's work is done, and it says so.
    assert (
        call(
            server,
            "POST",
            "/measurements",
            json=upload(device, job_id=job_id, results=[{"key": key(21), "median_ms": 1.0, "iterations": 10}]),
        ).status_code
        == 200
    )
    job = call(server, "GET", f"/jobs/{job_id}", role=None).json()
    assert job["state"] == "done" and job["reason"] is None and job["done"] == 1


def test_a_late_result_turns_a_job_whose_items_all_failed_into_done(server: AppServer, device: str) -> None:
    job_id = _job(server, device, [key(31)])
    with server.client("agent") as agent:
        agent.claim_job(JobClaim(device=device, agent="a", lease_s=60))
        assert agent.fail_key(job_id, JobFail(key=key(31), error="timeout")).state.value == "failed"
        agent.post_measurements(batch(device, [result(key(31))], job_id=job_id))
    job = call(server, "GET", f"/jobs/{job_id}", role=None).json()
    assert (job["state"], job["done"]) == ("done", 1)


def test_jobs_are_listed_and_cancelled_with_a_client_token_only(server: AppServer, device: str) -> None:
    job_id = _job(server, device, [key(41)])
    listed = call(server, "GET", "/jobs", role=None, params={"device": device, "state": "queued"}).json()
    assert [j["id"] for j in listed] == [job_id]
    assert_error(call(server, "DELETE", f"/jobs/{job_id}", role=None), 401)
    assert_error(call(server, "DELETE", f"/jobs/{job_id}", role="agent"), 403)
    cancelled = call(server, "DELETE", f"/jobs/{job_id}", role="client")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    with server.client("agent") as agent:
        assert agent.claim_job(JobClaim(device=device, agent="a", lease_s=60)) is None
    assert_error(call(server, "DELETE", f"/jobs/{job_id}", role="client"), 409)


def test_anonymous_reads_do_not_show_where_a_phone_is(server: AppServer) -> None:
    name = f"dev-{uuid.uuid4().hex[:6]}"
    with server.client("agent") as agent:
        agent.put_device(
            name, DeviceInfo(serial="10.0.0.7:5555", props={"connection": {"kind": "adb", "serial": "10.0.0.7:5555"}})
        )
    anonymous = call(server, "GET", f"/devices/{name}", role=None).json()
    assert anonymous["serial"] is None and anonymous["props"]["connection"] == {"kind": "adb"}
    assert "10.0.0.7" not in call(server, "GET", "/devices", role=None).text
    assert call(server, "GET", f"/devices/{name}", role="client").json()["serial"] == "10.0.0.7:5555"


def test_devices_are_deleted_by_an_admin_only(server: AppServer, device: str) -> None:
    assert_error(call(server, "DELETE", f"/devices/{device}", role="agent"), 403)
    assert call(server, "DELETE", f"/devices/{device}", role="admin").status_code == 204
    assert_error(call(server, "GET", f"/devices/{device}", role=None), 404)


def test_an_expired_token_is_refused(server: AppServer, device: str) -> None:
    token = server.new_token("short-lived", "agent", expires_days=1e-9)
    body = assert_error(call(server, "PUT", f"/devices/{device}", token=token, json={}), 401)
    assert "expired" in str(body["detail"])


def test_openapi_documents_bearer_auth_errorbody_and_named_operations(server: AppServer) -> None:
    doc = server.http.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    ops = {op["operationId"]: op for path in doc["paths"].values() for op in path.values()}
    assert "latency_tables_get_lut" in ops and "jobs_cancel_job" in ops
    for op in ops.values():
        for code in ("422", "500"):
            assert op["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "HTTPValidationError" not in doc["components"]["schemas"]
