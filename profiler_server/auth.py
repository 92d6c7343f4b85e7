"""API tokens: random bearer strings stored only as SHA-256 hashes, each with one role."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from profiler_server.errors import Forbidden, InvalidInput, Unauthorized, field_error
from profiler_server.models import ApiToken, Role

TOKEN_PREFIX = "hwnas_"


def hash_token(token: str) -> str:
    """The stored form of a token (tokens are 256 random bits, so a plain hash is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str) -> str:
    """Store a new token for ``role`` under ``name`` and return it; it is not retrievable later."""
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"unknown role {role!r}", [field_error("role", "must be one of agent, client, admin")])
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=role, token_hash=hash_token(token)))
    session.flush()
    return token


def revoke_tokens(session: Session, name: str) -> int:
    """Revoke every token called ``name``; return how many."""
    rows = session.scalars(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked.is_(False))).all()
    for row in rows:
        row.revoked = True
    return len(rows)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return value.strip()


def authenticate(session: Session, token: str | None, roles: frozenset[str]) -> ApiToken:
    """The token's row when it is valid and has one of ``roles`` (admin always passes); else 401/403."""
    if token is None:
        raise Unauthorized("this endpoint needs a bearer token (profiler-server token create)")
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked:
        raise Unauthorized("the bearer token is unknown or revoked")
    if row.role != Role.admin.value and row.role not in roles:
        need = " or ".join(sorted(roles | {Role.admin.value}))
        raise Forbidden(f"token {row.name!r} has role {row.role!r}; this endpoint needs {need}")
    return row
