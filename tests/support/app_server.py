"""The profiler app in this test process behind Starlette's TestClient: the handler-test tier.

    with app_server_on("sqlite", tmp_path) as srv:          # or "postgresql": a fresh database
        srv.http.get("/devices")                             # raw requests, no token
        with srv.client("agent") as agent: ...               # ProfilerClient over the same app

The database is migrated with alembic and gets one token per role, as for a live server (tests/support/live_server.py);
no socket and no process: a module saves the live server's start (8-11 s per database). The TestClient is entered,
so the app's lifespan runs as under uvicorn. Tests that need a real process or socket (the CLI, slow clients, several
workers, concurrency through uvicorn, agents, a browser) stay on the live server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hwnas.client import ProfilerClient
from tests.support import server_database
from tests.support.databases import fresh_postgres_database, sqlite_url

BASE_URL = "http://testserver"


class AppTransport(httpx.BaseTransport):
    """httpx's transport over a TestClient, for ProfilerClient: Starlette's TestClient speaks httpx2, whose transports
    and responses httpx does not take, so each request is handed over by its parts."""

    def __init__(self, http: TestClient) -> None:
        self.http = http

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.http.request(
            request.method, str(request.url), headers=request.headers.multi_items(), content=request.read()
        )
        return httpx.Response(answer.status_code, headers=answer.headers.multi_items(), content=answer.content)


@dataclass
class AppServer:
    """The app, the TestClient that serves it, its database and one token per role."""

    app: FastAPI
    http: TestClient
    database_url: str
    admin_token: str
    agent_token: str
    client_token: str
    url: str = BASE_URL

    def token(self, role: str | None) -> str | None:
        """The token for ``role`` ("admin", "agent", "client") or None for no token."""
        return {None: None, "admin": self.admin_token, "agent": self.agent_token, "client": self.client_token}[role]

    def auth(self, role: str | None) -> dict[str, str]:
        """The Authorization header of ``role`` (none for None)."""
        token = self.token(role)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def client(self, role: str | None = "client", **kwargs: Any) -> ProfilerClient:
        """A ProfilerClient holding the token of ``role`` (None: no token), its requests served by this app."""
        return self.client_holding(self.token(role), **kwargs)

    def client_holding(self, token: str | None, **kwargs: Any) -> ProfilerClient:
        """A ProfilerClient holding ``token`` (one of ``new_token``'s, say), its requests served by this app."""
        return ProfilerClient(self.url, token=token, transport=AppTransport(self.http), **kwargs)

    def new_token(self, name: str, role: str, expires_days: float | None = None, devices: list[str] | None = None) -> str:
        return server_database.new_token(self.database_url, name, role, expires_days=expires_days, devices=devices)

    def end_lease(self, job_id: int) -> None:
        server_database.end_lease(self.database_url, job_id)


@contextlib.contextmanager
def app_server(database_url: str, **settings: Any) -> Iterator[AppServer]:
    """Migrate ``database_url``, make the tokens, build the app with ``settings`` and run its lifespan."""
    from profiler_server.app import create_app
    from profiler_server.settings import Settings

    tokens = server_database.prepare_database(database_url)
    app = create_app(Settings(database_url=database_url, **settings))
    # raise_server_exceptions=False: an unhandled error is the 500 ErrorBody a caller of uvicorn gets, not a raise in
    # the test; follow_redirects=False: as httpx and ProfilerClient.
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as http:
        yield AppServer(
            app=app,
            http=http,
            database_url=database_url,
            admin_token=tokens["admin"],
            agent_token=tokens["agent"],
            client_token=tokens["client"],
        )


@contextlib.contextmanager
def app_server_on(kind: str, tmp_path: Path, **settings: Any) -> Iterator[AppServer]:
    """The app on a new SQLite file in ``tmp_path`` (``kind="sqlite"``) or a fresh PostgreSQL database."""
    with contextlib.ExitStack() as stack:
        url = sqlite_url(tmp_path) if kind == "sqlite" else stack.enter_context(fresh_postgres_database())
        yield stack.enter_context(app_server(url, **settings))
