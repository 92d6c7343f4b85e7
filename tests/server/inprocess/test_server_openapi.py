"""Issue 25 (minor): what /openapi.json promises matches what the server does.

* The bearer scheme is declared on exactly the operations that require a token: with reads open, the writes; with
  READ_REQUIRES_TOKEN, every operation but /healthz. Each declared one answers an anonymous call with 401, each
  undeclared one does not.
* A 405's ``Allow`` lists every method the document lists for that path (a path can be served by several routes).
* A body that is not UTF-8, nested past the parser's limit or holding a 4,300-digit integer is a 422 (documented on
  every operation), not FastAPI's undocumented 400.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.databases import postgres_base_url
from tests.support.app_server import AppServer, app_server_on

# The reads: open to anyone unless READ_REQUIRES_TOKEN is on.
READS = {
    ("GET", "/lut/{device}"),
    ("GET", "/lut/{device}/entries"),
    ("POST", "/lut/{device}/query"),
    ("GET", "/devices"),
    ("GET", "/devices/{name}"),
    ("GET", "/jobs"),
    ("GET", "/jobs/{job_id}"),
    ("GET", "/devices/{name}/networks"),
    ("GET", "/lut/{device}/calibration"),
}
ALWAYS_OPEN = {("GET", "/healthz")}


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): op for path, ops in doc["paths"].items() for method, op in ops.items()}


def concrete(path: str, device: str) -> str:
    return path.replace("{device}", device).replace("{name}", device).replace("{job_id}", "1")


def anonymous(server: AppServer, method: str, path: str, device: str) -> httpx.Response:
    body = {"keys": []} if path.endswith("/query") else {}
    return server.http.request(method, concrete(path, device), json=body if method in ("POST", "PUT") else None)


def check_declared_security(server: AppServer, token_required: set[tuple[str, str]], device: str) -> None:
    ops = operations(server.http.get("/openapi.json").json())
    assert READS | ALWAYS_OPEN <= set(ops), set(ops)
    for (method, path), op in ops.items():
        if (method, path) in token_required:
            assert op.get("security") == [{"HTTPBearer": []}], (method, path, op.get("security"))
            assert {"401", "403"} <= set(op["responses"]), (method, path)
            assert anonymous(server, method, path, device).status_code == 401, (method, path)
        else:
            assert "security" not in op, (method, path, op["security"])
            assert not {"401", "403"} & set(op["responses"]), (method, path)
            assert anonymous(server, method, path, device).status_code != 401, (method, path)


@pytest.fixture
def device(server: AppServer) -> str:
    name = f"oa-{uuid.uuid4().hex[:6]}"
    with server.client("agent") as agent:
        from hwnas.schemas import DeviceInfo

        agent.put_device(name, DeviceInfo(model="Pixel 7"))
    return name


def test_bearer_is_declared_on_the_routes_that_require_a_token_only(server: AppServer, device: str) -> None:
    every = set(operations(server.http.get("/openapi.json").json()))
    check_declared_security(server, every - READS - ALWAYS_OPEN, device)


@pytest.fixture(scope="module", params=["sqlite"] + (["postgresql"] if postgres_base_url() else []))
def closed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """A server with READ_REQUIRES_TOKEN on."""
    tmp = tmp_path_factory.mktemp(f"closed_{request.param}")
    with app_server_on(request.param, tmp, read_requires_token=True) as srv:
        yield srv


def test_with_read_requires_token_every_read_declares_the_token_too(closed: AppServer) -> None:
    every = set(operations(closed.http.get("/openapi.json").json()))
    check_declared_security(closed, every - ALWAYS_OPEN, "pixel7")


def test_a_405_allows_every_method_the_path_has(server: AppServer, device: str) -> None:
    doc = server.http.get("/openapi.json").json()
    several = 0
    for path, ops in doc["paths"].items():
        r = server.http.request("PATCH", concrete(path, device))  # no route takes PATCH
        assert r.status_code == 405, (path, r.text[:200])
        allowed = {m.strip() for m in r.headers["allow"].split(",")}
        # Every template the address fits: /lut/import is also /lut/{device} (GET) for a device named "import".
        fits = [other for other in doc["paths"] if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", other), concrete(path, device))]
        assert allowed == {m.upper() for other in fits for m in doc["paths"][other]}, (path, r.headers["allow"])
        assert r.json()["detail"].startswith("method PATCH not allowed")
        several += len(ops) > 1
    assert several >= 3  # /devices/{name}, /jobs, /jobs/{job_id}, /lut/{device}/calibration ...
    # The documents' own routes and the dashboard's files, outside the API document.
    for path, allowed in (("/openapi.json", "GET, HEAD"), ("/ui/dashboard.js", "GET, HEAD")):
        r = server.http.post(path)
        assert (r.status_code, r.headers.get("allow")) == (405, allowed), (path, r.headers)


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("not UTF-8", b'{"model": "\xff\xfe"}'),
        ("a 4,300-digit integer", b'{"cpu_cores": ' + b"9" * 5000 + b"}"),
        ("nested past the parser's limit", b"[" * 100_000 + b"]" * 100_000),
    ],
)
def test_unreadable_bodies_are_documented_422s(server: AppServer, device: str, what: str, body: bytes) -> None:
    doc = server.http.get("/openapi.json").json()
    ops = operations(doc)
    for method, path, headers in (
        ("PUT", "/devices/{name}", {"Authorization": f"Bearer {server.agent_token}"}),
        ("POST", "/lut/{device}/query", {}),
    ):
        r = server.http.request(
            method, concrete(path, device), content=body, headers={"Content-Type": "application/json", **headers}
        )
        assert r.status_code == 422, (what, path, r.status_code, r.text[:200])
        assert r.json()["errors"] == [{"field": "body", "reason": r.json()["errors"][0]["reason"]}]
        assert "not UTF-8" in r.json()["detail"]
        assert "400" not in ops[(method, path)]["responses"] and "422" in ops[(method, path)]["responses"]


def test_bodies_parsed_off_the_event_loop_are_still_documented_request_bodies(server: AppServer) -> None:
    """POST /measurements and the other large bodies are read by api.bodies.json_body (in the threadpool, issue 25),
    not by FastAPI: the document still declares each one's model, and every schema it refers to exists."""
    doc = server.http.get("/openapi.json").json()
    ops, components = operations(doc), doc["components"]["schemas"]
    for (method, path), model in {
        ("POST", "/measurements"): "MeasurementBatch",
        ("POST", "/networks/measurements"): "NetworkMeasurementBatch",
        ("POST", "/jobs"): "JobCreate",
        ("POST", "/lut/{device}/query"): "LutQuery",
    }.items():
        body = ops[(method, path)]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}, (method, path)
    assert components["MeasurementBatch"]["properties"]["results"]["items"] == {"$ref": "#/components/schemas/MeasurementResult"}
    refs = re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc))
    assert refs and set(refs) <= set(components), set(refs) - set(components)
