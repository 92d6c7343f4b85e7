"""API tokens: random bearer strings stored only as SHA-256 hashes, each with one role."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from hwnas.schemas import NAME_PATTERN, Role
from profiler_server.errors import Forbidden, InvalidInput, Unauthorized, field_error
from profiler_server.models import ApiToken, utcnow

TOKEN_PREFIX = "hwnas_"


def hash_token(token: str) -> str:
    """The stored form of a token (tokens are 256 random bits, so a plain hash is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, name: str, role: str, expires_days: float | None = None, devices: list[str] | None = None
) -> str:
    """Store a new token for ``role`` under ``name`` and return it; it is not retrievable later.

    ``devices``: an agent token acts for these devices only (register, upload, claim); None: any.
    """
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"unknown role {role!r}", [field_error("role", "must be one of agent, client, admin")])
    if not 1 <= len(name) <= 128:
        raise InvalidInput("a token name has 1 to 128 characters", [field_error("name", "1 to 128 characters")])
    if devices is not None:
        if role != Role.agent.value:
            raise InvalidInput("only agent tokens are limited to devices", [field_error("devices", "agent tokens only")])
        bad = [d for d in devices if not re.fullmatch(NAME_PATTERN, d)]
        if not devices or bad:
            raise InvalidInput(
                f"device names must match {NAME_PATTERN}" + (f": {bad[0]!r}" if bad else ""),
                [field_error("devices", "one or more device names")],
            )
        devices = sorted(set(devices))
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    session.add(ApiToken(name=name, role=role, token_hash=hash_token(token), expires_at=expires, devices=devices))
    session.flush()
    return token


def revoke_tokens(session: Session, name: str | None = None, token_id: int | None = None) -> int:
    """Revoke the token ``token_id``, or every token called ``name``; return how many."""
    stmt = select(ApiToken).where(ApiToken.revoked.is_(False))
    stmt = stmt.where(ApiToken.id == token_id) if token_id is not None else stmt.where(ApiToken.name == name)
    rows = session.scalars(stmt).all()
    for row in rows:
        row.revoked = True
    return len(rows)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool
    expired: bool
    devices: list[str] | None = None


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every token's metadata (the tokens themselves are not stored)."""
    now = utcnow()
    return [
        TokenInfo(
            r.id,
            r.name,
            r.role,
            r.created_at,
            r.expires_at,
            r.revoked,
            r.expires_at is not None and r.expires_at <= now,
            r.devices,
        )
        for r in session.scalars(select(ApiToken).order_by(ApiToken.id))
    ]


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
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise Unauthorized(f"the bearer token {row.name!r} expired at {row.expires_at:%Y-%m-%d %H:%M} UTC")
    if row.role != Role.admin.value and row.role not in roles:
        need = " or ".join(sorted(roles | {Role.admin.value}))
        raise Forbidden(f"token {row.name!r} has role {row.role!r}; this endpoint needs {need}")
    return row
