"""Typed errors of the server's services; app.py turns each into a 4xx ErrorBody naming the field."""

from __future__ import annotations

from hwnas.schemas import checked_keys


class ServiceError(Exception):
    """A request the server refuses: HTTP ``status``, a message, and (field, reason) pairs."""

    status = 400

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.headers = headers


def field_error(field: str, reason: str) -> dict[str, str]:
    """One entry of an ErrorBody's ``errors`` list."""
    return {"field": field, "reason": reason}


class InvalidInput(ServiceError):
    status = 422


class NotFound(ServiceError):
    status = 404


class UnknownDevice(NotFound):
    """No device of that name (``field`` says where the name came from)."""

    def __init__(self, name: str, field: str = "device") -> None:
        super().__init__(f"unknown device {name!r}", [field_error(field, f"no device named {name!r} is registered")])


class Conflict(ServiceError):
    status = 409


class Unauthorized(ServiceError):
    status = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status = 403


def reject_bad_keys(keys: list[str], field: str, attribute: str | None = None) -> None:
    """422 naming every key of ``keys`` that breaks the operator-key grammar (``field[i]`` or ``field[i].attribute``)."""
    errors = checked_keys(keys, field)
    if attribute:
        errors = [{**e, "field": f"{e['field']}.{attribute}"} for e in errors]
    if errors:
        summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise InvalidInput(f"invalid operator keys: {summary}{more}", errors)
