"""The token before the body: ASGI middleware and an HTTP protocol with header and idle timeouts.

FastAPI reads and parses a request's body before it runs the dependencies that check the token, so an anonymous
client could make the server read (and hold) 16 MiB per request. ``TokenGate`` answers a write route's 401/403
from the headers alone, before the body is read (a read with a body too, POST /lut/{device}/query, while
READ_REQUIRES_TOKEN is on); it also bounds how many large bodies are read at once.
``BodyMeter`` counts the body bytes the application read for requests it answered 401/403 (the figure
``unauth_body_bytes_read``: 0 with the gate). ``GuardedHttpToolsProtocol`` closes connections that take too long
to send their headers, or go idle in the middle of a body (uvicorn has only an idle timeout between requests).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A body larger than this counts against MAX_LARGE_BODIES while it is read and handled.
LARGE_BODY_BYTES = 1024 * 1024


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return bytes(value)
    return None


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every APIRoute under ``routes``, through included routers (FastAPI >= 0.165 wraps each include in an object that
    keeps the router as ``original_router``; older ones copy the routes into the app)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
            continue
        inner = getattr(route, "routes", None)
        if inner is None:
            router = getattr(route, "original_router", None) or getattr(route, "router", None)
            inner = getattr(router, "routes", None)
        if inner:
            yield from api_routes(inner)


def _roles_of(dependant: Dependant, mark: str = "required_roles") -> frozenset[str] | None:
    """The roles a dependency of the route marked with ``mark`` admits: ``required_roles`` (deps.require's), or
    ``read_roles`` (deps.read_access's: any valid token); None when no dependency carries the mark."""
    for dep in dependant.dependencies:
        roles = getattr(dep.call, mark, None)
        if roles is not None:
            return frozenset(roles)
        found = _roles_of(dep, mark)
        if found is not None:
            return found
    return None


def route_roles(route: APIRoute, read_requires_token: bool) -> frozenset[str] | None:
    """The roles a token must have for ``route``, or None for a route open to anyone.

    A write's ``require(...)`` roles; a read's (a dependency or an endpoint marked ``read_roles``: deps.read_access,
    GET /lut) only while READ_REQUIRES_TOKEN is on. The gate checks these before the body; OpenAPI declares the
    bearer scheme on exactly these routes (app.declare_security).
    """
    roles = _roles_of(route.dependant)
    if roles is None and read_requires_token:
        roles = _roles_of(route.dependant, "read_roles")
        marked = getattr(route.endpoint, "read_roles", None)
        if roles is None and marked is not None:
            roles = frozenset(marked)
    return roles


@dataclass
class GateCounters:
    """What the gate did, per worker process (benchmarks/server_load.py reads them in-process)."""

    refused: int = 0  # write requests answered 401/403 from their headers
    unauth_body_bytes_read: int = 0  # body bytes the application read for requests it answered 401/403
    large_bodies_refused: int = 0  # 503s for one large body too many
    large_bodies_now: int = 0
    _routes: list[tuple[APIRoute, frozenset[str]]] | None = field(default=None, repr=False)


class TokenGate:
    """Answer 401/403 for a write route from its Authorization header, before the body is read.

    The caller it authenticated is left in ``scope["state"]["caller"]`` for the route's dependency (one token lookup
    per request). A refused request with a body of declared length keeps its connection (uvicorn discards the rest
    of the body as it arrives, without buffering it); a chunked one, whose end nobody knows, is answered with
    ``Connection: close``.
    """

    def __init__(
        self, app: ASGIApp, check_token: Callable[[Any, str | None, frozenset[str]], Any], max_large_bodies: int
    ) -> None:
        self.app = app
        self.check_token = check_token
        self.large = asyncio.Semaphore(max_large_bodies) if max_large_bodies > 0 else None
        self.max_large_bodies = max_large_bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        fastapi_app = scope["app"]
        counters: GateCounters = fastapi_app.state.gate
        roles = self._route_roles(fastapi_app, counters, scope)
        if roles is None:  # an open route (POST /lut/{device}/query while reads are open) or no route: nothing to check
            await self.app(scope, receive, send)
            return
        from profiler_server.errors import ServiceError

        authorization = _header(scope, b"authorization")
        try:
            caller = await run_in_threadpool(
                self.check_token, fastapi_app.state, authorization.decode("latin-1") if authorization else None, roles
            )
        except ServiceError as exc:
            counters.refused += 1
            await self._refuse(scope, receive, send, exc.status, exc.detail, exc.errors, exc.headers)
            return
        scope.setdefault("state", {})["caller"] = caller
        length = _header(scope, b"content-length")
        large = length is None or not length.isdigit() or int(length) > LARGE_BODY_BYTES
        if not large or self.large is None:
            await self.app(scope, receive, send)
            return
        if self.large.locked():  # no waiting: a client told to retry is cheaper than a queue of 16 MiB bodies
            counters.large_bodies_refused += 1
            await self._refuse(
                scope,
                receive,
                send,
                503,
                f"{self.max_large_bodies} large request bodies are being read already (MAX_LARGE_BODIES); retry later",
                [{"field": "body", "reason": "too many large bodies at once"}],
                {"Retry-After": "1"},
            )
            return
        async with self.large:
            counters.large_bodies_now += 1
            try:
                await self.app(scope, receive, send)
            finally:
                counters.large_bodies_now -= 1

    def _route_roles(self, app: Any, counters: GateCounters, scope: Scope) -> frozenset[str] | None:
        if counters._routes is None:  # the routes are all registered by the first request
            reads_need_token = bool(app.state.settings.read_requires_token)
            counters._routes = [
                (r, roles) for r in api_routes(app.routes) for roles in [route_roles(r, reads_need_token)] if roles is not None
            ]
        for route, roles in counters._routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return roles
        return None

    @staticmethod
    async def _refuse(
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        detail: str,
        errors: list[dict[str, str]],
        headers: dict[str, str] | None,
    ) -> None:
        headers = dict(headers or {})
        if _header(scope, b"content-length") is None and _header(scope, b"transfer-encoding") is not None:
            headers["Connection"] = "close"
        await JSONResponse({"detail": detail, "errors": errors}, status_code=status, headers=headers)(scope, receive, send)


class BodyMeter:
    """Count the body bytes the application reads for write requests it answers 401 or 403 (GateCounters)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        read = 0
        status = 0

        async def counting_receive() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
            return message

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, counting_receive, status_send)
        finally:
            if status in (401, 403):
                scope["app"].state.gate.unauth_body_bytes_read += read


@functools.lru_cache(maxsize=1)
def _timeouts() -> tuple[float, float]:
    """(header, body idle) timeouts of this worker, from the environment (``serve`` passes them on to its workers)."""
    from profiler_server.settings import Settings

    settings = Settings()
    return settings.header_timeout_s, settings.body_idle_timeout_s


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # uvicorn without httptools: its h11 protocol, with no header or body timeouts
    HttpToolsProtocol = None  # type: ignore[misc,assignment]


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, closing a connection whose request headers take longer than HEADER_TIMEOUT_S
        (counted from the connection, or from the request's first byte on a kept-alive one), or whose body stops
        arriving for BODY_IDLE_TIMEOUT_S: slow senders cannot hold connections (and their buffers) for ever. uvicorn
        itself times out only the idle wait between two requests (KEEP_ALIVE_TIMEOUT_S)."""

        _guard: asyncio.TimerHandle | None = None
        _in_body = False

        def _arm(self, seconds: float) -> None:
            self._disarm()
            if seconds > 0:
                self._guard = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._guard is not None:
                self._guard.cancel()
                self._guard = None

        def _expire(self) -> None:
            self._guard = None
            if self._in_body and self.flow.read_paused:  # the server is not reading: the wait is ours, not the sender's
                self._arm(_timeouts()[1])
                return
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(_timeouts()[0])

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_body:
                self._arm(_timeouts()[1])
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._guard is None:
                self._arm(_timeouts()[0])

        def on_headers_complete(self) -> None:
            self._in_body = True
            self._arm(_timeouts()[1])
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            self._disarm()
            super().on_message_complete()


def http_protocol() -> Any:
    """What ``uvicorn.run(http=...)`` gets: the guarded protocol, or "auto" where httptools is missing."""
    return GuardedHttpToolsProtocol if HttpToolsProtocol is not None else "auto"
