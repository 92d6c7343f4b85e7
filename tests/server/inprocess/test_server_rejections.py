"""Bad input: a 4xx whose body names the field and the reason, and nothing stored."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from hwnas.client import ApiError, AuthError, ConflictError, NotFoundError, ProfilerClient
from hwnas.schemas import DeviceInfo, JobClaim, JobCreate
from tests.support.app_server import AppServer, app_server_on
from tests.support.measurements import batch, key, result


def snapshot(server: AppServer, device: str) -> tuple[object, ...]:
    """What a reader can see of ``device``: its tables and each table's ETag."""
    devices = server.http.get("/devices").json()
    mine = [d for d in devices if d["name"] == device]
    tables = mine[0]["tables"] if mine else None
    etags = []
    for t in tables or []:
        r = server.http.get(f"/lut/{device}", params={"runtime": t["runtime"], "threads": t["threads"]})
        etags.append(r.headers.get("etag"))
    return (len(mine), json.dumps(tables, sort_keys=True), tuple(etags))


def raw_post(server: AppServer, path: str, body: object, role: str | None = "agent") -> httpx.Response:
    token = server.token(role)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return server.http.post(
        path, content=json.dumps(body, allow_nan=True), headers={**headers, "Content-Type": "application/json"}
    )


def good_body(device: str, **result_fields: object) -> dict[str, object]:
    r = {"key": key(0), "median_ms": 1.0, "p10_ms": 0.9, "p90_ms": 1.2, "iterations": 10}
    r.update(result_fields)
    return {
        "device": device,
        "runtime": "ort",
        "runtime_version": "1",
        "threads": 1,
        "agent": "a",
        "run_id": str(uuid.uuid4()),
        "results": [r],
    }


@pytest.fixture
def seeded(agent: ProfilerClient, device: str) -> str:
    """A device that already has one table, so 'nothing changed' is checked against real content."""
    agent.post_measurements(batch(device, [result(key(5))]))
    return device


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"key": "ir_k3_e6_g1_s2_o24@1x16x56"}, "results[0].key", "NxCxHxW"),
        ({"key": "ir_e6_k3_g1_s2_o24@1x16x56x56"}, "results[0].key", "not canonical"),
        ({"key": "IR_k3@1x16x56x56"}, "results[0].key", "type word"),
        ({"median_ms": float("nan")}, "results[0].median_ms", "finite"),
        ({"median_ms": float("inf"), "p90_ms": None}, "results[0].median_ms", "finite"),
        ({"median_ms": -1.0, "p10_ms": None, "p90_ms": None}, "results[0].median_ms", "negative"),
        ({"p10_ms": 1.5}, "results[0]", "p10_ms"),
        ({"p90_ms": 0.5}, "results[0]", "p90_ms"),
        ({"iterations": 0}, "results[0].iterations", "greater than or equal"),
        ({"surprise": 1}, "results[0].surprise", "not permitted"),
    ],
)
def test_bad_results_rejected_and_nothing_stored(
    server: AppServer, seeded: str, fields: dict[str, object], field: str, reason: str
) -> None:
    before = snapshot(server, seeded)
    body = good_body(seeded, **fields)
    body["results"].append({"key": key(1), "median_ms": 2.0, "iterations": 10})  # type: ignore[union-attr]
    response = raw_post(server, "/measurements", body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert any(e["field"] == field and reason in e["reason"] for e in payload["errors"]), payload
    assert field in payload["detail"]
    assert snapshot(server, seeded) == before


def test_unknown_device_rejected(server: AppServer, agent: ProfilerClient) -> None:
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    with pytest.raises(NotFoundError) as err:
        agent.post_measurements(batch(ghost, [result(key(0))]))
    assert err.value.errors[0]["field"] == "device" and ghost in err.value.detail
    assert snapshot(server, ghost) == (0, "null", ())
    with pytest.raises(NotFoundError):
        agent.claim_job(JobClaim(device=ghost, agent="a"))


def test_unknown_job_rejected_and_nothing_stored(server: AppServer, agent: ProfilerClient, seeded: str) -> None:
    before = snapshot(server, seeded)
    with pytest.raises(NotFoundError) as err:
        agent.post_measurements(batch(seeded, [result(key(0))], job_id=10**9))
    assert err.value.errors[0]["field"] == "job_id"
    assert snapshot(server, seeded) == before


def test_job_of_other_table_rejected_and_nothing_stored(
    server: AppServer, agent: ProfilerClient, client: ProfilerClient, seeded: str
) -> None:
    job = client.create_job(JobCreate(device=seeded, runtime="ort", threads=4, keys=[key(0)]))
    before = snapshot(server, seeded)
    with pytest.raises(ConflictError) as err:
        agent.post_measurements(batch(seeded, [result(key(0))], threads=1, job_id=job.id))
    assert err.value.errors[0]["field"] == "job_id"
    assert snapshot(server, seeded) == before and client.get_job(job.id).pending == 1


def test_run_id_reused_for_another_table_rejected(server: AppServer, agent: ProfilerClient, seeded: str) -> None:
    first = batch(seeded, [result(key(0))])
    agent.post_measurements(first)
    before = snapshot(server, seeded)
    with pytest.raises(ConflictError) as err:
        agent.post_measurements(batch(seeded, [result(key(1))], run_id=first.run_id, runtime="torchscript"))
    assert err.value.errors[0]["field"] == "runtime"
    assert snapshot(server, seeded) == before


def test_repeated_key_in_batch_rejected(server: AppServer, seeded: str) -> None:
    before = snapshot(server, seeded)
    body = good_body(seeded)
    body["results"] = [body["results"][0], body["results"][0]]  # type: ignore[index]
    response = raw_post(server, "/measurements", body)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "results[1].key"
    assert snapshot(server, seeded) == before


def test_bad_job_keys_rejected(server: AppServer, seeded: str) -> None:
    response = raw_post(
        server, "/jobs", {"device": seeded, "runtime": "ort", "threads": 1, "keys": [key(0), "conv_k3@1x3"]}, role="client"
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "keys[1]"
    assert "conv_k3@1x3" in response.json()["errors"][0]["reason"]


def test_bad_device_name_and_fields(server: AppServer) -> None:
    response = server.http.put(
        "/devices/bad name!", json={"cpu_cores": 0}, headers={"Authorization": f"Bearer {server.agent_token}"}
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"name", "cpu_cores"}
    assert "bad name!" not in [d["name"] for d in server.http.get("/devices").json()]


def test_invalid_json_names_body(server: AppServer) -> None:
    response = server.http.post(
        "/measurements",
        content=b"{not json",
        headers={"Authorization": f"Bearer {server.agent_token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422 and response.json()["errors"][0]["field"].startswith("body")


def test_writes_need_a_token_of_the_right_role(server: AppServer, seeded: str) -> None:
    before = snapshot(server, seeded)
    body = good_body(seeded)
    no_token = raw_post(server, "/measurements", body, role=None)
    assert no_token.status_code == 401 and no_token.headers["www-authenticate"] == "Bearer"
    wrong_role = raw_post(server, "/measurements", body, role="client")
    assert wrong_role.status_code == 403 and "agent" in wrong_role.json()["detail"]
    bogus = server.http.post("/measurements", json=body, headers={"Authorization": "Bearer hwnas_nope"})
    assert bogus.status_code == 401
    assert snapshot(server, seeded) == before
    assert (
        raw_post(server, "/jobs", {"device": seeded, "runtime": "ort", "threads": 1, "keys": [key(0)]}, role="agent").status_code
        == 403
    )
    assert raw_post(server, "/jobs/claim", {"device": seeded, "agent": "x"}, role="client").status_code == 403
    assert raw_post(server, "/measurements", body, role="admin").status_code == 200  # admin may do everything
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    with server.client(None) as anonymous, pytest.raises(AuthError) as err:
        anonymous.put_device(ghost, DeviceInfo())
    assert err.value.status == 401
    with server.client("client") as client_role, pytest.raises(AuthError) as err:
        client_role.put_device(ghost, DeviceInfo())
    assert err.value.status == 403
    assert snapshot(server, ghost)[0] == 0


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """A server with a 4 KiB body limit and token-protected reads."""
    with app_server_on("sqlite", tmp_path_factory.mktemp("small"), max_request_bytes=4096, read_requires_token=True) as srv:
        yield srv


def test_oversize_body_is_413_and_nothing_stored(small_server: AppServer) -> None:
    with small_server.client("agent") as agent:
        agent.put_device("big", DeviceInfo())
        big = batch("big", [result(key(i)) for i in range(60)])
        with pytest.raises(ApiError) as err:
            agent.post_measurements(big)
        assert err.value.status == 413 and err.value.errors[0]["field"] == "body"
        # Without Content-Length (chunked), the limit holds as well.
        chunked = small_server.http.post(
            "/measurements",
            content=iter([big.model_dump_json().encode()]),
            headers={"Authorization": f"Bearer {small_server.agent_token}", "Content-Type": "application/json"},
        )
        assert chunked.status_code == 413
        assert agent.get_device("big").tables == []
        small = batch("big", [result(key(0))])
        assert agent.post_measurements(small).stored == 1  # a body under the limit still goes through


def test_read_requires_token(small_server: AppServer) -> None:
    anonymous = small_server.http.get("/devices")
    assert anonymous.status_code == 401
    with small_server.client("client") as reader:
        assert isinstance(reader.list_devices(), list)
    assert small_server.http.get("/healthz").status_code == 200  # health stays open


def test_bad_lut_query_parameters_name_the_parameter(server: AppServer, seeded: str) -> None:
    bad_threads = server.http.get(f"/lut/{seeded}", params={"threads": "0"})
    assert bad_threads.status_code == 422 and bad_threads.json()["errors"][0]["field"] == "threads"
    bad_format = server.http.get(f"/lut/{seeded}", params={"format": "xml"})
    assert bad_format.status_code == 422 and bad_format.json()["errors"][0]["field"] == "format"
