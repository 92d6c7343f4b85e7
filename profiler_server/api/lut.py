"""Latency tables: GET /lut/{device} (JSON or CSV, ETag) and POST /lut/{device}/query."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from hwnas import schemas
from profiler_server.api.deps import LutCacheDep, ReaderDep, SessionDep, check_read_token
from profiler_server.services.luts import LutCache, Rendered, TableRef, query_keys, resolve_table

router = APIRouter(tags=["latency tables"])
ERRORS = {404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}}


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: weak comparison against any listed tag, or ``*``."""
    if not if_none_match:
        return False
    bare = etag.removeprefix("W/")
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == bare:
            return True
    return False


@router.get(
    "/lut/{device}",
    response_model=schemas.Lut,
    responses={200: {"content": {"text/csv": {}}}, 304: {"description": "Not modified (If-None-Match)"}, **ERRORS},
)
async def get_lut(
    device: str,
    request: Request,
    runtime: str | None = None,
    threads: Annotated[int | None, Query(ge=1)] = None,
    format: Literal["json", "csv"] | None = None,
) -> Response:
    """The latest valid measurement per key of one (device, runtime, threads) table."""
    # The hot path of every search job: async, no thread hand-offs, one small query for the
    # table's version; the table itself is rebuilt (in the thread pool) only when it changed.
    state = request.app.state
    if state.settings.read_requires_token:
        check_read_token(state, request.headers.get("authorization"))
    with state.engine.connect() as conn:
        ref = resolve_table(conn, device, runtime, threads)
    want_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    cache: LutCache = state.lut_cache
    rendered = cache.peek(ref, want_csv) or await run_in_threadpool(_render, state.sessions, cache, ref, want_csv)
    headers = {"ETag": rendered.etag, "Cache-Control": "no-cache", "Vary": "Accept"}
    if etag_matches(request.headers.get("if-none-match"), rendered.etag):
        return Response(status_code=304, headers=headers)
    media = "text/csv; charset=utf-8" if want_csv else "application/json"
    return Response(rendered.body, media_type=media, headers=headers)


def _render(sessions: sessionmaker[Session], cache: LutCache, ref: TableRef, want_csv: bool) -> Rendered:
    with sessions() as session:
        return cache.render(session, ref, want_csv)


@router.post("/lut/{device}/query", response_model=schemas.LutQueryResult, responses=ERRORS)
def query_lut(device: str, query: schemas.LutQuery, session: SessionDep, cache: LutCacheDep, _: ReaderDep) -> schemas.LutQueryResult:
    """Which of ``keys`` the table has (present) and which it lacks (missing)."""
    return query_keys(session, cache, device, query)
