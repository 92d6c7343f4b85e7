"""Latency tables: GET /lut/{device} (JSON or CSV, ETag) and POST /lut/{device}/query."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from hwnas import schemas
from profiler_server.api.deps import LutCacheDep, ReaderDep, SessionDep
from profiler_server.services.luts import query_keys, resolve_table

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
def get_lut(
    device: str,
    request: Request,
    session: SessionDep,
    cache: LutCacheDep,
    _: ReaderDep,
    runtime: str | None = None,
    threads: Annotated[int | None, Query(ge=1)] = None,
    format: Literal["json", "csv"] | None = None,
) -> Response:
    """The latest valid measurement per key of one (device, runtime, threads) table."""
    ref = resolve_table(session, device, runtime, threads)
    want_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    rendered = cache.csv(session, ref) if want_csv else cache.get(session, ref).json
    headers = {"ETag": rendered.etag, "Cache-Control": "no-cache", "Vary": "Accept"}
    if etag_matches(request.headers.get("if-none-match"), rendered.etag):
        return Response(status_code=304, headers=headers)
    media = "text/csv; charset=utf-8" if want_csv else "application/json"
    return Response(rendered.body, media_type=media, headers=headers)


@router.post("/lut/{device}/query", response_model=schemas.LutQueryResult, responses=ERRORS)
def query_lut(device: str, query: schemas.LutQuery, session: SessionDep, cache: LutCacheDep, _: ReaderDep) -> schemas.LutQueryResult:
    """Which of ``keys`` the table has (present) and which it lacks (missing)."""
    return query_keys(session, cache, device, query)
