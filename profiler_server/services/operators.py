"""Operators: one row per canonical key, created on first sight, with the parsed spec beside it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hwnas.opkey import OVERHEAD_KEY, OpSpec
from profiler_server.bulk_cpu import BULK_ITEMS, bulk_turn
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
        found.update(session.execute(select(Operator.key, Operator.id).where(Operator.key.in_(chunk))).all())
    return found


def prepare_operators(
    session: Session, keys: Iterable[str], write: Callable[[Callable[[], None]], None], per_transaction: int = 2_000
) -> dict[str, int]:
    """Ids of the operators ``keys`` (already validated), creating the missing ones *before* the caller's own write.

    Operators are a dictionary shared by every table, never deleted: creating them ahead of the upload that needs them
    is safe, and done here in short transactions of ``per_transaction`` keys each (``write`` runs one, e.g.
    ``lambda work: run_write(session, work)``), with the keys parsed outside them, so that a 20,000-key upload does
    not hold SQLite's write lock while it parses keys and inserts a dictionary.
    """
    keys = list(dict.fromkeys(keys))
    found = operator_ids(session, keys)
    missing = sorted(k for k in keys if k not in found)
    for start in range(0, len(missing), per_transaction):
        chunk = missing[start : start + per_transaction]
        with bulk_turn(len(chunk) >= BULK_ITEMS):  # parsing many keys: one large request at a time (bulk_cpu)
            rows = [_row(k) for k in chunk]
        write(lambda rows=rows: insert_ignore(session, Operator.__table__, rows, ["key"]))  # type: ignore[misc,arg-type]
    if missing:
        found.update(operator_ids(session, missing))
    if session.in_transaction():
        session.rollback()  # end the read, so the caller's write transaction begins afresh
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
