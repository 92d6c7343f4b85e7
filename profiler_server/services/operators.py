"""Operators: one row per canonical key, created on first sight, with the parsed spec beside it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hwnas.opkey import OVERHEAD_KEY, OpSpec
from profiler_server.models import Operator
from profiler_server.services.sql import CHUNK, insert_ignore


def _row(key: str) -> dict[str, Any]:
    if key == OVERHEAD_KEY:
        return {"key": key, "block": OVERHEAD_KEY, "params": {}, "n": None, "c": None, "h": None, "w": None, "dtype": None}
    spec = OpSpec.parse(key)
    n, c, h, w = spec.shape
    return {"key": key, "block": spec.block, "params": dict(spec.params), "n": n, "c": c, "h": h, "w": w, "dtype": spec.dtype}


def operator_ids(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """The ids of the operators ``keys`` that exist already (no writes)."""
    keys = list(dict.fromkeys(keys))
    found: dict[str, int] = {}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        found.update(session.execute(select(Operator.key, Operator.id).where(Operator.key.in_(chunk))).tuples().all())
    return found


def ensure_operators(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """Ids of the operators ``keys`` (already validated), creating the missing ones."""
    keys = list(dict.fromkeys(keys))
    found = operator_ids(session, keys)
    # Sorted: concurrent batches then insert shared new keys in one order (no PG deadlock).
    missing = sorted(k for k in keys if k not in found)
    if missing:
        insert_ignore(session, Operator.__table__, [_row(k) for k in missing], ["key"])  # type: ignore[arg-type]
        found.update(operator_ids(session, missing))
    return found
