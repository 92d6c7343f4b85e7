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
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

STATIC = Path(__file__).with_name("static")
# Every page is the same shell (static/page.html); the script draws the page its <body data-page> names.
PAGES = {
    "index": "Device lab",
    "job": "Job",
    "table": "Latency table",
    "compare": "Compare two devices",
    "validation": "Predicted vs measured",
}
_SHELL = (STATIC / "page.html").read_text(encoding="utf-8")
_RENDERED = {page: _SHELL.replace("{page}", page).replace("{title}", title) for page, title in PAGES.items()}
# The pages run only their own script and talk only to this server: what an agent wrote can never run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def root(request: Request) -> Response:
    """A browser gets the dashboard; an API client a pointer to the API's documents."""
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/ui/", status_code=307)
    return JSONResponse({"dashboard": "/ui/", "openapi": "/openapi.json", "docs": "/docs"})


@router.get("/ui/")
def index() -> HTMLResponse:
    return HTMLResponse(_RENDERED["index"], headers=SECURITY_HEADERS)


@router.get("/ui/{page}.html")
def page(page: str) -> HTMLResponse:
    if page not in _RENDERED:
        raise HTTPException(404, f"no dashboard page {page!r}; pages: {', '.join(PAGES)}")
    return HTMLResponse(_RENDERED[page], headers=SECURITY_HEADERS)


class _Assets(StaticFiles):
    """The pages' script, style and icon, with the same headers (set here, not by a middleware on every request)."""

    async def get_response(self, path: str, scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount(app) -> None:  # app: a FastAPI app
    """Serve the pages and their script and style under /ui/."""
    app.include_router(router)
    app.mount("/ui", _Assets(directory=STATIC), name="ui")
