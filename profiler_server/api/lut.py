"""Latency tables: GET /lut/{device} (JSON or CSV, ETag; OFA / ProxylessNAS YAML), GET /lut/{device}/entries (one page),
POST /lut/{device}/query, POST /lut/import."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from hwnas import schemas
from profiler_server.api.bodies import json_body
from profiler_server.api.deps import (
    AdminDep,
    DeviceName,
    LutCacheDep,
    ReaderDep,
    SessionDep,
    check_read_token,
    read_route,
    run_write,
)
from profiler_server.errors import InvalidInput, field_error
from profiler_server.services.imports import export_table, import_table, read_import
from profiler_server.services.lut_pages import PageQuery, table_page
from profiler_server.services.luts import LutCache, Rendered, TableRef, query_keys, resolve_table

router = APIRouter(tags=["latency tables"])
_NAME = re.compile(schemas.NAME_PATTERN)
EXPORT_FORMATS = ("ofa-yaml", "proxyless-yaml")
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}}


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


# Declared for the OpenAPI page only: the handler reads them itself (see get_lut).
_LUT_PARAMS = [
    {
        "name": "runtime",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": 64},
        "description": "e.g. ort, torchscript",
    },
    {
        "name": "threads",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": schemas.MAX_THREADS},
    },
    {
        "name": "format",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["json", "csv", *EXPORT_FORMATS]},
        "description": "or Accept: text/csv; ofa-yaml / proxyless-yaml: the Once-for-All / ProxylessNAS latency-table layout (text/yaml)",
    },
    {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "an ETag: 304 when unchanged",
    },
]


def _table_query(request: Request) -> tuple[str | None, int | None, str | None]:
    """runtime, threads and format from the query string, with 422s that name the parameter."""
    q = request.query_params
    runtime, threads_text, fmt = q.get("runtime") or None, q.get("threads"), q.get("format")
    if runtime is not None and (len(runtime) > 64 or "\x00" in runtime):
        raise InvalidInput(
            "runtime must be at most 64 characters, without NUL", [field_error("runtime", "at most 64 characters, no NUL")]
        )
    threads: int | None = None
    if threads_text is not None:
        if not threads_text.isdigit() or len(threads_text) > 4 or not 1 <= int(threads_text) <= schemas.MAX_THREADS:
            raise InvalidInput(
                f"threads must be an integer from 1 to {schemas.MAX_THREADS}, got {threads_text[:20]!r}",
                [field_error("threads", f"must be an integer from 1 to {schemas.MAX_THREADS}")],
            )
        threads = int(threads_text)
    if fmt not in (None, "json", "csv", *EXPORT_FORMATS):
        raise InvalidInput(
            f"format must be json, csv, {' or '.join(EXPORT_FORMATS)}, got {fmt!r}",
            [field_error("format", f"must be 'json', 'csv', {' or '.join(repr(f) for f in EXPORT_FORMATS)}")],
        )
    return runtime, threads, fmt


@router.get(
    "/lut/{device}",
    response_model=schemas.Lut,
    responses={200: {"content": {"text/csv": {}}}, 304: {"description": "Not modified (If-None-Match)"}, **ERRORS},
    openapi_extra={"parameters": _LUT_PARAMS},
)
@read_route
async def get_lut(device: str, request: Request) -> Response:
    """The latest valid measurement per key of one (device, runtime, threads) table.

    Query: ``runtime``, ``threads`` (needed when the device has several tables), ``format=csv``, or
    ``format=ofa-yaml`` / ``proxyless-yaml``: the table in the Once-for-All / ProxylessNAS layout, with the
    keys that layout cannot express listed in a comment header.
    """
    # The hot path of every search job. It is async and declares no query parameters or
    # dependencies (FastAPI's per-parameter work costs more than the rest of the request):
    # one precompiled query reads the table's version; the table itself is rebuilt (in the
    # thread pool) only when that version changed.
    runtime, threads, fmt = _table_query(request)
    if not _NAME.fullmatch(device):
        raise InvalidInput(f"invalid device name {device[:64]!r}", [field_error("device", f"must match {schemas.NAME_PATTERN}")])
    state = request.app.state
    # The token check and the version probe read the database: in the thread pool, so that a slow or locked
    # database stalls this request only, never the event loop that serves everyone else.
    if state.settings.read_requires_token:
        await run_in_threadpool(check_read_token, state, request.headers.get("authorization"))
    if fmt in EXPORT_FORMATS:  # rare and cheap enough to render per request, off the event loop
        text = await run_in_threadpool(_export, state.sessions, device, runtime, threads, fmt)
        return Response(text, media_type="text/yaml; charset=utf-8", headers={"Cache-Control": "no-cache"})
    ref = await run_in_threadpool(state.table_probe.resolve, device, runtime, threads)
    want_csv = fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))
    cache: LutCache = state.lut_cache
    rendered = cache.peek(ref, want_csv) or await run_in_threadpool(_render, state.sessions, cache, ref, want_csv)
    assert rendered is not None  # _render always renders
    headers = {"ETag": rendered.etag, "Cache-Control": "no-cache", "Vary": "Accept"}
    if etag_matches(request.headers.get("if-none-match"), rendered.etag):
        return Response(status_code=304, headers=headers)
    media = "text/csv; charset=utf-8" if want_csv else "application/json"
    return Response(rendered.body, media_type=media, headers=headers)


def _export(sessions: sessionmaker[Session], device: str, runtime: str | None, threads: int | None, fmt: str) -> str:
    with sessions() as session:
        return export_table(session, device, runtime, threads, fmt)


def _render(sessions: sessionmaker[Session], cache: LutCache, ref: TableRef, want_csv: bool) -> Rendered:
    with sessions() as session:
        return cache.render(session, ref, want_csv)


@router.get("/lut/{device}/entries", response_model=schemas.LutPage, responses=ERRORS)
def get_lut_entries(
    device: DeviceName,
    session: SessionDep,
    _: ReaderDep,
    runtime: Annotated[str | None, Query(max_length=64, pattern=schemas.NO_NUL, description="e.g. ort, torchscript")] = None,
    threads: Annotated[int | None, Query(ge=1, le=schemas.MAX_THREADS)] = None,
    sort: Annotated[schemas.LutSort, Query(description="column to sort by; ties in key order")] = "median_ms",
    order: Literal["asc", "desc"] = "asc",
    type: Annotated[
        str | None,
        Query(max_length=128, pattern=schemas.NO_NUL, description="only this operator type (the key's block, e.g. ir)"),
    ] = None,
    key: Annotated[
        str | None, Query(max_length=256, pattern=schemas.NO_NUL, description="only keys containing this text")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=schemas.LUT_PAGE_MAX)] = 100,
) -> schemas.LutPage:
    """One page of a table's entries, sorted and filtered by the database, with the table's header and counts.

    What the dashboard's table page shows: a page of a 100,000-entry table costs what a page of a small one does.
    Empty values (``std_ms`` of an imported table) sort last in either order.
    """
    ref = resolve_table(session, device, runtime, threads)
    return table_page(
        session, ref, PageQuery(sort=sort, order=order, type=type or None, key=key or None, offset=offset, limit=limit)
    )


@router.post("/lut/{device}/query", response_model=schemas.LutQueryResult, responses=ERRORS)
def query_lut(
    device: DeviceName,
    _: ReaderDep,
    query: Annotated[schemas.LutQuery, Depends(json_body(schemas.LutQuery))],
    session: SessionDep,
    cache: LutCacheDep,
) -> schemas.LutQueryResult:
    """Which of ``keys`` the table has (present) and which it lacks (missing)."""
    return query_keys(session, cache, device, query)


@router.post(
    "/lut/import",
    response_model=schemas.LutImportResult,
    responses={**ERRORS, 403: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}},
)
def post_import(body: schemas.LutImport, session: SessionDep, caller: AdminDep) -> schemas.LutImportResult:
    """Import a published latency table (admin): OFA / ProxylessNAS YAML or HW-NAS-Bench JSON, with its provenance;
    or ``hwnas-fit``, a table ``hwnas lut fit`` fitted from whole-network timings, whose fit quality is kept in ``source.fit``.

    Entries are mapped to operator keys where the grammar says exactly the same block; the others are
    listed in ``unmappable`` with the reason. The table is read-only (uploads and jobs for it get a 409).
    The same content again is ``unchanged``; other content into the same table needs ``replace``.
    """
    table = read_import(body)  # parsed and checked before the write transaction: never under the write lock
    return run_write(session, lambda: import_table(session, body, caller.name, table), bulk=True)
