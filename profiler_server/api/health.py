"""GET /healthz: is the server up, and can it reach its database."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from hwnas import schemas
from profiler_server import __version__
from profiler_server.api.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=schemas.Health, responses={503: {"model": schemas.Health}})
def healthz(session: SessionDep, response: Response) -> schemas.Health:
    """Status and database reachability (503 when the database does not answer)."""
    try:
        session.execute(text("SELECT 1"))
        ok = True
    except SQLAlchemyError:
        ok = False
    if not ok:
        response.status_code = 503
    return schemas.Health(status="ok" if ok else "degraded", database=ok, version=__version__)
