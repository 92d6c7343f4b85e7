"""Issue 25, D4/D5: a published file cannot hurt the server, and both databases give it the same answer.

Aliases, nesting past the limits, numbers no float holds, integers past the INTEGER column: each a short 422
naming ``content`` (values truncated, never repr'd whole), nothing stored, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.support.app_server import AppServer

ENTRY = "Conv-input:160x160x3-output:80x80x24"
SOURCE = {"project": "lab/tables", "file": "t.yaml", "source_device": "Note10", "licence": "MIT"}
# 393 bytes that expand to ~10^9 list items when aliases are followed (issue 25's alias bomb, one level shorter).
ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)
MAX_ERROR_BYTES = 2_000


def post_import(server: AppServer, fmt: str, content: str, column: str | None = None) -> tuple[httpx.Response, str]:
    device = f"imp-{uuid.uuid4().hex[:8]}"
    body = {
        "format": fmt,
        "content": content,
        "device": device,
        "runtime": "tflite",
        "threads": 1,
        "source": SOURCE,
        **({"column": column} if column else {}),
    }
    response = server.http.post("/lut/import", json=body, headers={"Authorization": f"Bearer {server.admin_token}"})
    return response, device


def refused_content(server: AppServer, fmt: str, content: str, *words: str, column: str | None = None) -> None:
    response, device = post_import(server, fmt, content, column)
    assert response.status_code == 422, response.text[:300]
    assert len(response.content) < MAX_ERROR_BYTES, len(response.content)
    body = response.json()
    assert [e["field"] for e in body["errors"]] == ["content"]
    for word in words:
        assert word in body["detail"], body["detail"]
    assert server.http.get(f"/devices/{device}").status_code == 404  # nothing stored


def test_a_yaml_alias_bomb_is_a_short_422_and_the_server_stays_responsive(server: AppServer) -> None:
    assert len(ALIAS_BOMB) < 400
    refused_content(server, "ofa-yaml", ALIAS_BOMB, "aliases")
    started = time.perf_counter()
    assert server.http.get("/healthz").status_code == 200
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("fmt", "content", "column"),
    [
        ("ofa-yaml", "[" * 600 + "]" * 600, None),
        ("proxyless-yaml", f"{ENTRY}: " + "{a: " * 600 + "1" + "}" * 600, None),
        ("hwnasbench-json", "[" * 100_000 + "]" * 100_000, "pixel3"),
        ("hwnas-fit", '{"entries": ' + '{"a":' * 80_000 + "1" + "}" * 80_001, None),
    ],
    ids=["yaml-flow", "yaml-mapping", "hwnasbench", "fit"],
)
def test_deep_nesting_is_a_422(server: AppServer, fmt: str, content: str, column: str | None) -> None:
    refused_content(server, fmt, content, "nested deeper than", column=column)


@pytest.mark.parametrize(
    ("fmt", "content", "words"),
    [
        ("ofa-yaml", f"{ENTRY}: {{count: 1, mean: {'9' * 400}}}", ("mean", "too large")),
        ("ofa-yaml", f"{ENTRY}: {{count: 1, mean: 1, std: {'9' * 400}}}", ("std", "too large")),
        ("ofa-yaml", f"{ENTRY}: {{count: 1, mean: {'9' * 5000}}}", ("4300 digits",)),
        ("ofa-yaml", f"{ENTRY}: {{count: {2**40}, mean: 1}}", ("count", str(2**31 - 1))),
        ("ofa-yaml", f"{ENTRY}: {{count: 1, mean: '{'x' * 400_000}'}}", ("mean",)),
        ("ofa-yaml", f"? '{'k' * 400_000}'\n: {{count: 1}}\n", ("entry",)),
        ("hwnas-fit", json.dumps({"entries": {"x": {"median_ms": 1}}, "unit": "u" * 400_000}), ("unit",)),
        ("ofa-yaml", f"{ENTRY}: {{count: 1, mean: 1}}\x07", ("not YAML",)),
    ],
    ids=[
        "mean-400-digits",
        "std-400-digits",
        "mean-5000-digits",
        "count-2^40",
        "huge-string",
        "huge-key",
        "huge-unit",
        "control-character",
    ],
)
def test_values_no_column_holds_are_short_422s(server: AppServer, fmt: str, content: str, words: tuple[str, ...]) -> None:
    refused_content(server, fmt, content, *words)


def test_hwnasbench_deltas_too_large_for_a_float_are_a_422(server: AppServer) -> None:
    from profiler_server.services.published_files import HWNB_OPS, hwnasbench_layers

    deltas = {f"L{i}": {op: 0.0 for op in HWNB_OPS} for i in range(len(hwnasbench_layers()))}
    doc = {"dataset": "cifar100", "devices": {"pixel3": {"unit": "ms", "all_op0_network_total": 10.0, "delta_vs_op0": deltas}}}
    text = json.dumps(doc).replace('"k3_e3": 0.0', '"k3_e3": ' + "9" * 400, 1)
    refused_content(server, "hwnasbench-json", text, "delta", "too large", column="pixel3")


def test_the_largest_count_the_column_holds_is_stored_on_both_databases(server: AppServer) -> None:
    response, device = post_import(server, "ofa-yaml", f"{ENTRY}: {{count: {2**31 - 1}, mean: 1.5, std: 0.1}}")
    assert response.status_code == 200, response.text[:300]
    entries = server.http.get(f"/lut/{device}").json()["entries"]
    assert [e["n"] for e in entries.values()] == [2**31 - 1]


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "\xff\xfe"}',
        b'{"cpu_cores": ' + b"9" * 5000 + b"}",
        b'{"props": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
    ],
    ids=["not-utf8", "5000-digit-int", "deep"],
)
def test_a_body_the_json_parser_cannot_read_is_a_422_naming_the_body(server: AppServer, body: bytes) -> None:
    name = f"dev-{uuid.uuid4().hex[:8]}"
    response = server.http.put(
        f"/devices/{name}",
        content=body,
        headers={"Authorization": f"Bearer {server.agent_token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text[:300]
    assert [e["field"] for e in response.json()["errors"]] == ["body"]
    assert server.http.get(f"/devices/{name}").status_code == 404
