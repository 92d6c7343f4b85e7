"""The FastAPI application: routes, error bodies that name the field, and the body-size limit."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import logging

from profiler_server import __version__
from profiler_server.api import routers
from profiler_server.api.bodies import FASTAPI_BODY_ERROR
from profiler_server.api.deps import RETRY_SQLSTATES, check_write_token
from profiler_server.gate import BodyMeter, GateCounters, TokenGate
from profiler_server.db import make_engine, session_factory
from hwnas.schemas import ErrorBody
from profiler_server.errors import ServiceError
from profiler_server.routing import allowed_methods, declare_security
from profiler_server.services.luts import LutCache, TableProbe
from profiler_server.settings import Settings


logger = logging.getLogger("profiler_server")


def error_response(
    status: int, detail: str, errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An ErrorBody response."""
    return JSONResponse({"detail": detail, "errors": errors or []}, status_code=status, headers=headers)


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "results", 0, "median_ms")`` -> ``results[0].median_ms``."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """One (field, reason) per pydantic error, reasons without pydantic's 'Value error, ' prefix."""
    out = []
    for err in exc.errors():
        reason = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        loc = err.get("loc", ())
        if err.get("type") == "json_invalid":  # loc is ("body", <character position>)
            reason, loc = f"{reason} at character {loc[-1]}" if len(loc) > 1 else reason, ("body",)
        out.append({"field": field_path(loc), "reason": reason})
    return out


class BodySizeLimit:
    """Answer 413 to bodies over ``max_bytes`` (by Content-Length, or while a chunked body streams)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # No length given: read the body up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            f"request body is larger than the limit of {self.max_bytes} bytes",
            [{"field": "body", "reason": f"larger than {self.max_bytes} bytes (MAX_REQUEST_BYTES)"}],
        )
        await response(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return error_response(422, f"invalid request: {summary}{more}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_ERROR:
            # FastAPI's bare 400 for a body json.loads raised on with anything but a syntax error: bad input, so a 422
            # like every other, naming the body and the three ways to get here.
            return error_response(
                422, f"the body is not JSON this server reads: {UNREADABLE_BODY}", [{"field": "body", "reason": UNREADABLE_BODY}]
            )
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette's Allow names one route's methods; the path may have several routes
            allow = allowed_methods(request.app, request.scope)
            if allow:
                headers = {**(headers or {}), "Allow": ", ".join(allow)}
                detail = f"method {request.method} not allowed here; allowed: {', '.join(allow)}"
        return error_response(exc.status_code, detail, headers=headers)

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        # A value the schema let through but the database cannot hold: the request's fault, not the server's.
        reason = str(exc.orig).splitlines()[0][:300] if exc.orig else "value out of range"
        return error_response(422, f"a value does not fit the database: {reason}", [{"field": "body", "reason": reason}])

    @app.exception_handler(OperationalError)
    async def _operational(_: Request, exc: OperationalError) -> JSONResponse:
        kind = database_fault(exc)
        if kind == "unavailable":
            return error_response(503, "database unavailable; retry later", headers={"Retry-After": str(RETRY_AFTER_S)})
        if kind == "busy":
            return error_response(
                503, "database busy (a lock or the statement timeout); retry later", headers={"Retry-After": str(RETRY_AFTER_S)}
            )
        return _internal(exc)

    @app.exception_handler(DBAPIError)
    async def _dbapi(_: Request, exc: DBAPIError) -> JSONResponse:
        return _internal(exc)

    @app.exception_handler(Exception)
    async def _any(_: Request, exc: Exception) -> JSONResponse:
        return _internal(exc)


RETRY_AFTER_S = 2
UNREADABLE_BODY = "not UTF-8, nested past the parser's recursion limit, or an integer of more than 4,300 digits"
# PostgreSQL SQLSTATEs of a statement cut short rather than a bad request or a dead server: the ones
# run_write retries (serialization failure, deadlock), query_canceled (statement_timeout), lock_not_available.
BUSY_SQLSTATES = RETRY_SQLSTATES | {"57014", "55P03"}


def database_fault(exc: DBAPIError) -> str:
    """``unavailable`` (the connection is gone), ``busy`` (locked or timed out: retry), or ``error``."""
    if exc.connection_invalidated:
        return "unavailable"
    orig = exc.orig
    code = getattr(orig, "sqlstate", None)
    if code is not None:
        if code.startswith("08") or code in {"57P01", "57P02", "57P03"}:  # connection exception, shutdown
            return "unavailable"
        return "busy" if code in BUSY_SQLSTATES else "error"
    text = str(orig).lower()
    if "locked" in text or "busy" in text:  # SQLite: database is locked / busy
        return "busy"
    if "unable to open" in text or "disk i/o" in text or "connection" in text:
        return "unavailable"
    return "error"


def _internal(exc: BaseException) -> JSONResponse:
    """A 500 that is still an ErrorBody; the traceback goes to the server log, not to the caller."""
    logger.error("unhandled error", exc_info=exc)
    return error_response(500, f"internal server error ({type(exc).__name__}); the server log has the details")


ERROR_BODY = {"model": ErrorBody}
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**ERROR_BODY, "description": "No token, or an unknown, revoked or expired one"},
    403: {**ERROR_BODY, "description": "The token's role (or identity) may not do this"},
    422: {**ERROR_BODY, "description": "Invalid input: `errors` names each field and why"},
    500: {**ERROR_BODY, "description": "Internal error (details in the server log)"},
    503: {**ERROR_BODY, "description": "Database unavailable or busy; retry after Retry-After seconds"},
}


def operation_id(route: APIRoute) -> str:
    """``<tag>_<handler>`` (e.g. ``latency_tables_get_lut``), stable names for generated clients."""
    tag = str(route.tags[0]) if route.tags else "default"
    return f"{tag.replace(' ', '_')}_{route.name}"


# How long a thread may hold the GIL before another may take it (Python's default is 5 ms). Database work and large
# queries run in the threadpool and are CPU-bound; each time the event loop needs the GIL back to answer a small
# request it would wait up to the whole interval, and a request needs it several times.
GIL_SWITCH_INTERVAL_S = 0.0005


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: from the environment)."""
    settings = settings or Settings()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.upgrade_on_start:
            from profiler_server.migrate import upgrade

            upgrade(settings.database_url)
        yield
        app.state.engine.dispose()

    app = FastAPI(
        title="hwnas profiler server",
        version=__version__,
        description="Devices, measurements, profiling jobs and on-device latency tables (LUTs) for hardware-aware NAS.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    engine = make_engine(settings.database_url, statement_timeout_ms=settings.statement_timeout_ms)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.lut_cache = LutCache()
    app.state.table_probe = TableProbe(engine)
    for module_router in routers:
        app.include_router(module_router, responses=COMMON_ERRORS)
    from profiler_server import dashboard

    dashboard.mount(app)  # the pages at /ui/ (and / for browsers): static files over this same API
    declare_security(app, settings.read_requires_token)
    _install_error_handlers(app)
    # Outermost last: BodyMeter sees what the app reads, TokenGate answers 401/403 before any of it, BodySizeLimit 413s.
    app.state.gate = GateCounters()
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(TokenGate, check_token=check_write_token, max_large_bodies=settings.max_large_bodies)
    app.add_middleware(BodyMeter)
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (each worker process reads the environment)."""
    return create_app(Settings())
