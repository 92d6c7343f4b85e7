"""Large request bodies parsed and validated in the threadpool, not on the event loop.

FastAPI parses a JSON body (``json.loads``) and validates it against the route's model on the event loop, before a
sync handler is sent to the threadpool. For a 20,000-result upload (3.4 MB) that is ~0.2 s of CPU, and with seven
uploads at once and the threadpool busy with their writes, the loop stalled for up to 1 s at a time (8.7 s in all
in one run of ``benchmarks/server_load.py``): every other request, a 1-row ``PUT /devices`` included, waited for
it (issue 25: p99 4.1 s). A route takes such a body as ``Annotated[Model, Depends(json_body(Model))]``: the bytes
are read on the loop, parsed and validated in a worker thread (which gives the GIL up every
``GIL_SWITCH_INTERVAL_S``), with FastAPI's own errors — 422s naming the field, and the bare 400 of an unreadable
body, which the app turns into a 422 — and the model is declared as the request body in OpenAPI
(``routing.declare_security``).
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from profiler_server.bulk_cpu import BULK_BYTES, bulk_turn

M = TypeVar("M", bound=BaseModel)
# FastAPI's words for a body json.loads raised on with anything but a syntax error (app.py answers it with a 422).
FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _is_json(content_type: str | None) -> bool:
    """As FastAPI decides (its default strict_content_type): application/json or application/*+json; a body without
    a Content-Type is not read as JSON (and so fails validation)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def parse_body(model: type[M], raw: bytes, content_type: str | None) -> M:
    """``raw`` as ``model``, raising what FastAPI raises for the same body (run in a worker thread)."""
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    data: Any = raw
    if _is_json(content_type):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": exc.msg},
                    }
                ]
            ) from exc
        except Exception as exc:  # not UTF-8, nested past the recursion limit, an integer of more than 4,300 digits
            raise HTTPException(400, FASTAPI_BODY_ERROR) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]) from exc


def _parse_in_turn(model: type[M], raw: bytes, content_type: str | None) -> M:
    with bulk_turn(len(raw) >= BULK_BYTES):  # large bodies one at a time (bulk_cpu)
        return parse_body(model, raw, content_type)


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency giving the request's body as ``model``, parsed and validated off the event loop."""

    async def dependency(request: Request) -> M:
        raw = await request.body()
        return await run_in_threadpool(_parse_in_turn, model, raw, request.headers.get("content-type"))

    dependency.body_model = model  # type: ignore[attr-defined]  # routing.declare_security declares it in OpenAPI
    return dependency
