"""The device lab's dashboard: static pages served by the profiler server, drawing from its own JSON API.

Why this way: the pages are plain HTML with one small script (``static/dashboard.js``) that reads
the same REST routes every client uses and draws tables and SVG itself — nothing to build, no
template engine, no charting library, nothing fetched from a CDN, and the server stays torch-free.
Because every number comes from the API, a page can never disagree with ``curl``; because every
string is put into the page as text (never as HTML), device names, models and error messages
written by agents cannot inject markup. Reads follow ``READ_REQUIRES_TOKEN``: a token typed once
is kept in the browser tab's ``sessionStorage`` and sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")

router = APIRouter(include_in_schema=False)


@router.get("/")
def root(request: Request) -> Response:
    """A browser gets the dashboard; an API client a pointer to the API's documents."""
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/ui/", status_code=307)
    return JSONResponse({"dashboard": "/ui/", "openapi": "/openapi.json", "docs": "/docs"})


@router.get("/ui/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


# The pages run only their own script and talk only to this server: what an agent wrote can never run.
CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; object-src 'none'"


def mount(app) -> None:  # noqa: ANN001 - a FastAPI app
    """Serve the pages and their script and style under /ui/, with a content security policy."""
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")

    @app.middleware("http")
    async def _policy(request: Request, call_next):  # noqa: ANN001, ANN202
        response = await call_next(request)
        if request.url.path.startswith("/ui"):
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response
