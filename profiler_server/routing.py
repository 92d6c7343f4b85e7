"""What the app says about its routes: the bearer scheme in OpenAPI exactly where a token is required, the request
bodies parsed off the event loop (api.bodies), and a 405's ``Allow`` header with every method of the path.

FastAPI declares a security scheme on every route whose dependencies mention it, and the open reads shared the
token-reading dependency with the writes: a client generator then sent tokens where none is needed, and a
reader of /docs could not tell an open read from a write. Starlette's 405 names the methods of the first route
whose path matched, while a path such as /devices/{name} is served by three routes (GET, PUT, DELETE).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import Match, Mount, Route
from starlette.types import Scope

from profiler_server.gate import api_routes, route_roles

BEARER = "HTTPBearer"
TOKEN_ERRORS = ("401", "403")
STATIC_METHODS = frozenset({"GET", "HEAD"})


def declare_security(app: FastAPI, read_requires_token: bool) -> None:
    """Make ``app.openapi()`` declare the bearer scheme (and 401/403) on the routes that require a token only, and the
    bodies that routes parse themselves (api.bodies.json_body) as their request bodies.

    Which routes those are is the token gate's own rule (gate.route_roles): a write's roles, and the reads while
    READ_REQUIRES_TOKEN is on. An open read still accepts a token (it then shows serials), so it says so in words.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        paths = schema.get("paths", {})
        for route in api_routes(app.routes):
            for method in route.methods or ():
                op = paths.get(route.path_format, {}).get(method.lower())
                if op is None:
                    continue
                model = _body_model(route)
                if model is not None:
                    _declare_body(schema, op, model)
                if route_roles(route, read_requires_token) is not None:
                    op["security"] = [{BEARER: []}]
                    continue
                op.pop("security", None)
                for code in TOKEN_ERRORS:
                    op.get("responses", {}).pop(code, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(app: Any, scope: Scope) -> list[str]:
    """Every method some route serves at this request's path (the ``Allow`` of its 405), sorted."""
    methods: set[str] = set()
    # A 405 raised inside a mount (StaticFiles) carries the mount's scope: match against the app's own root path.
    scope = {**scope, "root_path": scope.get("app_root_path", scope.get("root_path", ""))}
    plain = [r for r in app.routes if isinstance(r, Route) and not isinstance(r, APIRoute)]  # /openapi.json, /docs
    for route in [*api_routes(app.routes), *plain]:
        match, _ = route.matches({**scope, "method": next(iter(route.methods or {"GET"}))})
        if match != Match.NONE:
            methods |= set(route.methods or ())
    for mount in app.routes:
        if isinstance(mount, Mount) and mount.matches(scope)[0] != Match.NONE:
            methods |= STATIC_METHODS  # the dashboard's files (StaticFiles answers GET and HEAD only)
    return sorted(methods)


def _body_model(route: APIRoute) -> type[BaseModel] | None:
    """The model of a body the route parses off the event loop (api.bodies.json_body marks its dependency)."""
    for dep in route.dependant.dependencies:
        model = getattr(dep.call, "body_model", None)
        if model is not None:
            return model
    return None


def _declare_body(schema: dict[str, Any], op: dict[str, Any], model: type[BaseModel]) -> None:
    """Declare ``model`` as the operation's JSON request body, as FastAPI does for a body parameter."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in body.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(model.__name__, body)
    op["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }
