"""Fresh, throw-away databases for tests: a SQLite file, or a new PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

TEST_DATABASE_ENV = "TEST_DATABASE_URL"


def postgres_base_url() -> str | None:
    """The PostgreSQL URL tests may create databases from, or None when PG tests are off."""
    url = os.environ.get(TEST_DATABASE_ENV, "").strip()
    return url or None


def sqlite_url(tmp_path: Path, name: str = "hwnas.db") -> str:
    """A SQLite URL for a file in ``tmp_path``."""
    return f"sqlite:///{Path(tmp_path) / name}"


def _admin_url(base_url: str) -> str:
    # psycopg speaks libpq URLs; drop SQLAlchemy's "+driver" part.
    scheme, rest = base_url.split("://", 1)
    return "postgresql://" + rest


def _with_database(base_url: str, dbname: str) -> str:
    head, _, tail = base_url.rpartition("/")
    query = ""
    if "?" in tail:
        query = "?" + tail.split("?", 1)[1]
    return f"{head}/{dbname}{query}"


@contextlib.contextmanager
def fresh_postgres_database(base_url: str | None = None) -> Iterator[str]:
    """Create an empty database ``hwnas_t_<uuid8>`` next to TEST_DATABASE_URL, yield its URL, drop it."""
    import psycopg

    base = base_url or postgres_base_url()
    if not base:
        raise RuntimeError(f"{TEST_DATABASE_ENV} is not set")
    dbname = f"hwnas_t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_admin_url(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield _with_database(base, dbname)
    finally:
        with psycopg.connect(_admin_url(base), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
