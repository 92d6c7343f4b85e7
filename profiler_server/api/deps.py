"""Request dependencies: the database session, the caller's token, and write transactions."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from hwnas import schemas
from profiler_server.auth import authenticate, bearer_token
from profiler_server.db import write_lock
from profiler_server.errors import Conflict, ServiceError
from profiler_server.services.ownership import check_token_devices
from profiler_server.services.luts import LutCache
from profiler_server.write_queue import BULK, SMALL, queue_of

T = TypeVar("T")
# Declares the bearer scheme in OpenAPI (the Authorize button of /docs); the header itself is parsed by
# auth.bearer_token, whose errors say what is wrong with it.
BEARER = HTTPBearer(auto_error=False, description="a token from `profiler-server token create`")
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
WRITE_ATTEMPTS = 3
# PostgreSQL codes worth a retry: serialization failure, deadlock detected.
RETRY_SQLSTATES = {"40001", "40P01"}


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, closed afterwards."""
    session: Session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


def get_lut_cache(request: Request) -> LutCache:
    return request.app.state.lut_cache


SessionDep = Annotated[Session, Depends(get_session)]
LutCacheDep = Annotated[LutCache, Depends(get_lut_cache)]


@dataclass(frozen=True)
class Caller:
    """Who made the request (None name: anonymous read); ``devices``: the only devices an agent token may act for."""

    name: str | None
    role: str | None
    devices: frozenset[str] | None = None

    def check_device(self, device: str, field: str = "device") -> None:
        """403 unless this caller may act for ``device`` (an agent token limited to other devices may not).

        Checked before the write transaction, from the token alone; the rest of the owner rule needs the device's
        row and is checked inside it (services.ownership).
        """
        check_token_devices(self, device, field)

    @property
    def agent_token(self) -> str | None:
        """The agent identity this caller acts as — the lease holder of its claims, the owner of the devices it
        registers: an agent token's name; None for an admin, who acts for anyone."""
        return self.name if self.role == "agent" else None


def require(*roles: str) -> Callable[..., Caller]:
    """A dependency that admits a token of one of ``roles`` (or admin); 401/403 otherwise."""
    wanted = frozenset(roles)

    def dependency(session: SessionDep, request: Request, _: BearerDoc) -> Caller:
        checked = getattr(request.state, "caller", None)
        if isinstance(checked, Caller):  # gate.TokenGate checked this token against these roles before the body was read
            return checked
        row = authenticate(session, bearer_token(request.headers.get("authorization")), wanted)
        caller = Caller(name=row.name, role=row.role, devices=frozenset(row.devices) if row.devices is not None else None)
        session.rollback()  # end the read so the write can begin its own (locking) transaction
        return caller

    dependency.required_roles = wanted  # type: ignore[attr-defined]  # how gate.TokenGate finds a route's roles
    return dependency


def check_write_token(state: Any, authorization: str | None, roles: frozenset[str]) -> Caller:
    """``require(*roles)`` from the Authorization header alone (gate.TokenGate, before the body is read): 401/403."""
    with state.sessions() as session:
        row = authenticate(session, bearer_token(authorization), roles)
        return Caller(name=row.name, role=row.role, devices=frozenset(row.devices) if row.devices is not None else None)


READ_ROLES = frozenset({"agent", "client"})


def read_access(request: Request, session: SessionDep) -> Caller:
    """Reads are open unless READ_REQUIRES_TOKEN is set; then any valid token will do.

    An open read with a valid token still knows its caller (who may then see serials and addresses). No
    ``BearerDoc`` here: OpenAPI declares the bearer scheme only where a token is required (app.declare_security).
    """
    checked = getattr(request.state, "caller", None)
    if isinstance(checked, Caller):  # gate.TokenGate checked it before the body (a read with a body, reads closed)
        return checked
    authorization = request.headers.get("authorization")
    if not request.app.state.settings.read_requires_token:
        if not authorization:
            return Caller(name=None, role=None)
        try:
            row = authenticate(session, bearer_token(authorization), READ_ROLES)
        except ServiceError:
            return Caller(name=None, role=None)  # a bad token on an open read: served as anonymous
        return Caller(name=row.name, role=row.role)
    row = authenticate(session, bearer_token(authorization), READ_ROLES)
    return Caller(name=row.name, role=row.role)


read_access.read_roles = READ_ROLES  # type: ignore[attr-defined]  # how gate.route_roles finds a read


def read_route(endpoint: T) -> T:
    """Mark a read handler that checks the token itself (no dependencies: GET /lut) for gate.route_roles."""
    endpoint.read_roles = READ_ROLES  # type: ignore[attr-defined]
    return endpoint


def check_read_token(state: Any, authorization: str | None) -> Caller:
    """read_access for handlers that take no dependencies (the GET /lut hot path)."""
    with state.sessions() as session:
        row = authenticate(session, bearer_token(authorization), READ_ROLES)
        return Caller(name=row.name, role=row.role)


AgentDep = Annotated[Caller, Depends(require("agent"))]
ClientDep = Annotated[Caller, Depends(require("client"))]
ReaderDep = Annotated[Caller, Depends(read_access)]
AdminDep = Annotated[Caller, Depends(require("admin"))]
DeviceName = Annotated[str, Path(pattern=schemas.NAME_PATTERN, description="device name, e.g. pixel7 or host")]


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True  # a concurrent insert of the same unique row: the retry will find it
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, DBAPIError) and code in RETRY_SQLSTATES


# How long the last write transactions of this process held their lock (seconds, from BEGIN to COMMIT): on SQLite the
# whole database's write lock, so every other writer waits this long. Read by tests and benchmarks/server_load.py.
WRITE_HOLDS: deque[float] = deque(maxlen=10_000)


def run_write(session: Session, work: Callable[[], T], bulk: bool = False) -> T:
    """Run ``work`` in one write transaction and commit; nothing is stored when it raises.

    On SQLite the transaction waits its turn in this process's write queue first (write_queue): ``bulk`` writes
    (uploads, imports, job creation: up to ~1 s of lock each) go after the small ones waiting with them.
    """
    queue = queue_of(session.get_bind())  # type: ignore[arg-type]
    if queue is None:
        return _run_write(session, work)
    if session.in_transaction():
        session.rollback()  # no read snapshot kept open while waiting in the queue
    with queue.turn(BULK if bulk else SMALL):
        return _run_write(session, work)


def _run_write(session: Session, work: Callable[[], T]) -> T:
    for attempt in range(WRITE_ATTEMPTS):
        if session.in_transaction():
            session.rollback()
        try:
            with write_lock(session):
                began = time.perf_counter()  # the lock is ours from here (BEGIN IMMEDIATE waited for it on SQLite)
                result = work()
            session.commit()
            WRITE_HOLDS.append(time.perf_counter() - began)
            return result
        except DBAPIError as exc:
            session.rollback()
            if not _retryable(exc) or attempt == WRITE_ATTEMPTS - 1:
                if isinstance(exc, IntegrityError):
                    raise Conflict("the request conflicts with data stored concurrently; retry it") from exc
                raise
        except BaseException:
            session.rollback()
            raise
    raise AssertionError("unreachable")
