"""Fixtures of the server tests: a live server per database kind, and the clients and device every test uses.

Tests that need a real process or socket (the CLI, slow clients, concurrency through uvicorn, agents, a browser) live
here; handler tests live in inprocess/, whose conftest makes ``server`` the app in-process (the fixtures below then
use it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from hwnas.client import ProfilerClient
from hwnas.schemas import DeviceInfo
from tests.support.app_server import AppServer
from tests.support.databases import postgres_base_url
from tests.support.live_server import LiveServer, live_server_on

DB_KINDS = ["sqlite"] + (["postgresql"] if postgres_base_url() else [])


@pytest.fixture(scope="module", params=DB_KINDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server on SQLite, and on a fresh PostgreSQL database when TEST_DATABASE_URL is set."""
    with live_server_on(request.param, tmp_path_factory.mktemp(f"srv_{request.param}")) as srv:
        yield srv


@pytest.fixture
def agent(server: LiveServer | AppServer) -> Iterator[ProfilerClient]:
    with server.client("agent") as c:
        yield c


@pytest.fixture
def client(server: LiveServer | AppServer) -> Iterator[ProfilerClient]:
    with server.client("client") as c:
        yield c


@pytest.fixture
def device(agent: ProfilerClient) -> str:
    """A freshly registered device with a unique name."""
    name = f"dev-{uuid.uuid4().hex[:8]}"
    agent.put_device(name, DeviceInfo(manufacturer="Google", model="Pixel 7", soc="gs201", abi="arm64-v8a", cpu_cores=8))
    return name
