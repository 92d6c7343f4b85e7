"""Issue 25, D1/D2: the owner rule on every write, on both databases.

An agent token writes (measurements, network results, claims, heartbeats, failures, calibrations) only for devices
it registered or an admin granted it; a client cancels only its own jobs; a table's calibration is its device
owner's or an admin's, bounded; an imported table is an admin's. Each refusal is a 403 that names the rule.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.app_server import AppServer
from tests.support.measurements import key


def call(
    server: AppServer, method: str, path: str, role: str | None = "agent", token: str | None = None, **kwargs: object
) -> httpx.Response:
    token = token or server.token(role)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return server.http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]


def refused(response: httpx.Response, status: int, field: str, *words: str) -> str:
    """Assert an ErrorBody ``status`` naming ``field`` whose detail says each of ``words``; return the detail."""
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert field in [e["field"] for e in body["errors"]], body
    for word in words:
        assert word in body["detail"], body["detail"]
    return str(body["detail"])


def upload(device: str, value: float = 1.0, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "device": device,
        "runtime": "ort",
        "runtime_version": "1",
        "threads": 1,
        "agent": "a",
        "run_id": str(uuid.uuid4()),
        "results": [{"key": key(1), "median_ms": value, "iterations": 10}],
    }
    body.update(overrides)
    return body


def new_device(server: AppServer, token: str | None = None, role: str = "agent") -> str:
    name = f"dev-{uuid.uuid4().hex[:8]}"
    assert call(server, "PUT", f"/devices/{name}", role=role, token=token, json={"model": "Pixel 7"}).status_code == 201
    return name


def calibration(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "runtime": "ort",
        "threads": 1,
        "scale": 1.1,
        "offset_ms": 0.01,
        "networks": 4,
        "mape_before": 12.0,
        "mape_after": 3.0,
    }
    body.update(overrides)
    return body


def served_calibration(server: AppServer, device: str) -> object:
    return server.http.get(f"/lut/{device}").json()["calibration"]


@pytest.fixture
def other_agent(server: AppServer) -> str:
    """A second agent token (agent B); the fixtures' ``test-agent`` is agent A."""
    return server.new_token(f"agent-b-{uuid.uuid4().hex[:6]}", "agent")


def test_an_agent_uploads_only_into_devices_it_owns(server: AppServer, other_agent: str) -> None:
    a_device = new_device(server)  # registered by test-agent (A)
    assert call(server, "POST", "/measurements", json=upload(a_device, 2.0)).status_code == 200
    # B's token names A's device: refused, and the table still serves A's 2.0 ms.
    detail = refused(
        call(server, "POST", "/measurements", token=other_agent, json=upload(a_device, 0.001)),
        403,
        "device",
        "owner rule",
        "test-agent",
    )
    assert other_agent not in detail  # the token itself is never echoed
    assert server.http.get(f"/lut/{a_device}").json()["entries"][key(1)]["median_ms"] == 2.0
    net = {
        "device": a_device,
        "runtime": "ort",
        "runtime_version": "1",
        "threads": 1,
        "agent": "b",
        "run_id": str(uuid.uuid4()),
        "results": [{"arch_id": "a" * 16, "median_ms": 1.0, "iterations": 10}],
    }
    refused(call(server, "POST", "/networks/measurements", token=other_agent, json=net), 403, "device", "owner rule")


def test_an_agent_claims_renews_and_fails_only_its_own_devices_jobs(server: AppServer, other_agent: str) -> None:
    a_device = new_device(server)
    job = call(
        server,
        "POST",
        "/jobs",
        role="client",
        json={"device": a_device, "runtime": "ort", "threads": 1, "keys": [key(2), key(3)]},
    ).json()
    refused(
        call(server, "POST", "/jobs/claim", token=other_agent, json={"device": a_device, "agent": "b"}),
        403,
        "device",
        "owner rule",
        "test-agent",
    )
    assert call(server, "GET", f"/jobs/{job['id']}", role=None).json()["state"] == "queued"  # B took nothing
    assert call(server, "POST", "/jobs/claim", json={"device": a_device, "agent": "a"}).json()["id"] == job["id"]
    refused(
        call(server, "POST", f"/jobs/{job['id']}/heartbeat", token=other_agent, json={"agent": "a"}), 403, "job_id", "owner rule"
    )
    refused(
        call(server, "POST", f"/jobs/{job['id']}/fail", token=other_agent, json={"key": key(2), "error": "x"}),
        403,
        "job_id",
        "owner rule",
    )
    assert call(server, "GET", f"/jobs/{job['id']}", role=None).json()["failed"] == 0


def test_a_device_an_admin_granted_a_token_may_be_written_by_it(server: AppServer) -> None:
    a_device = new_device(server)
    granted = server.new_token(f"granted-{uuid.uuid4().hex[:6]}", "agent", devices=[a_device])
    assert call(server, "POST", "/measurements", token=granted, json=upload(a_device)).status_code == 200
    assert call(server, "POST", "/jobs/claim", token=granted, json={"device": a_device, "agent": "g"}).status_code == 204


def test_an_unowned_device_is_written_only_after_an_agent_registers_it(server: AppServer) -> None:
    name = new_device(server, role="admin")  # an admin's device has no owner
    refused(call(server, "POST", "/measurements", json=upload(name)), 403, "device", "owner rule", "register it first")
    assert call(server, "PUT", f"/devices/{name}", json={"model": "Pixel 7"}).status_code == 200  # test-agent takes it
    assert call(server, "GET", f"/devices/{name}", role="client").json()["owner"] == "test-agent"
    assert call(server, "POST", "/measurements", json=upload(name)).status_code == 200


def test_a_client_cancels_only_its_own_jobs(server: AppServer) -> None:
    device = new_device(server)
    other_client = server.new_token(f"client-b-{uuid.uuid4().hex[:6]}", "client")
    jobs = [
        call(
            server, "POST", "/jobs", role="client", json={"device": device, "runtime": "ort", "threads": 1, "keys": [key(10 + i)]}
        ).json()["id"]
        for i in range(2)
    ]
    refused(call(server, "DELETE", f"/jobs/{jobs[0]}", token=other_client), 403, "job_id", "owner rule", "test-client")
    assert call(server, "GET", f"/jobs/{jobs[0]}", role=None).json()["state"] == "queued"
    assert call(server, "DELETE", f"/jobs/{jobs[0]}", role="client").json()["state"] == "cancelled"  # its creator
    assert call(server, "DELETE", f"/jobs/{jobs[1]}", role="admin").json()["state"] == "cancelled"  # an admin


def test_a_tables_calibration_is_its_device_owners_or_an_admins(server: AppServer, other_agent: str) -> None:
    device = new_device(server)
    assert call(server, "POST", "/measurements", json=upload(device)).status_code == 200
    path = f"/lut/{device}/calibration"
    refused(call(server, "PUT", path, role="client", json=calibration(scale=9.0)), 403, "device", "owner rule", "test-agent")
    refused(call(server, "PUT", path, token=other_agent, json=calibration(scale=9.0)), 403, "device", "owner rule")
    assert served_calibration(server, device) is None  # nothing every search would apply
    assert call(server, "PUT", path, json=calibration(scale=1.2)).status_code == 200  # the owner
    assert call(server, "PUT", path, role="admin", json=calibration(scale=1.3)).status_code == 200  # an admin
    served = served_calibration(server, device)
    assert isinstance(served, dict) and served["scale"] == 1.3


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"scale": 1e308}, "scale"),
        ({"scale": 1e-9}, "scale"),
        ({"offset_ms": -1e300}, "offset_ms"),
        ({"mape_before": -5.0}, "mape_before"),
        ({"mape_after": -0.1}, "mape_after"),
    ],
)
def test_calibration_values_are_bounded(server: AppServer, values: dict[str, float], field: str) -> None:
    device = new_device(server)
    assert call(server, "POST", "/measurements", json=upload(device)).status_code == 200
    refused(call(server, "PUT", f"/lut/{device}/calibration", role="admin", json=calibration(**values)), 422, field)
    assert served_calibration(server, device) is None


OFA_YAML = "Conv-input:160x160x3-output:80x80x24:\n  count: 498\n  mean: 0.495\n  std: 0.0102\n"


def import_request(device: str, content: str = OFA_YAML, **source: str) -> dict[str, object]:
    return {
        "format": "ofa-yaml",
        "content": content,
        "device": device,
        "runtime": "tflite",
        "threads": 1,
        "source": {
            "project": "mit-han-lab/once-for-all",
            "file": "160_lookup_table.yaml",
            "source_device": "Note10",
            "licence": "MIT",
            **source,
        },
    }


def test_an_imported_tables_calibration_is_an_admins_only(server: AppServer) -> None:
    device = f"imp-{uuid.uuid4().hex[:8]}"
    assert call(server, "POST", "/lut/import", role="admin", json=import_request(device)).status_code == 200
    path = f"/lut/{device}/calibration"
    body = calibration(runtime="tflite")
    refused(call(server, "PUT", path, role="client", json=body), 403, "device", "owner rule")
    refused(call(server, "PUT", path, role="agent", json=body), 403, "device", "read-only for everyone but admins")
    assert served_calibration(server, device) is None
    assert call(server, "PUT", path, role="admin", json=body).status_code == 200
