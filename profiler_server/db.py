"""One engine factory for SQLite and PostgreSQL: the two differ only in the URL string."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` / ``postgres://`` URLs (psycopg2 is not a dependency)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url_or_engine: str | Engine) -> bool:
    """True for a SQLite URL or engine."""
    name = (
        url_or_engine.dialect.name
        if isinstance(url_or_engine, Engine)
        else make_url(normalize_url(url_or_engine)).get_backend_name()
    )
    return name == "sqlite"


def make_engine(url: str, statement_timeout_ms: int | None = None, **kwargs: Any) -> Engine:
    """Create the engine for ``url``; SQLite gets WAL, foreign keys, a busy timeout and real BEGINs.

    ``statement_timeout_ms`` (PostgreSQL): no statement of a request may hold a connection and its
    locks longer than this; one stuck query must not stall every other request.
    """
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    connect_args = kwargs.setdefault("connect_args", {})
    # psycopg prepares a statement on the server after its fifth run, and PostgreSQL may then plan it generically:
    # the chunked IN lists of 400 bound keys (operators, items) became sequential scans that compare every row with
    # every key, 0.3 s a chunk (a 20,000-key job's operators took 18 s to look up and create, 4 s planned with their
    # values).
    connect_args.setdefault("prepare_threshold", None)
    if statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={int(statement_timeout_ms)}"
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot do BEGIN IMMEDIATE; take it
    # over (SQLAlchemy's documented recipe) so that claims can lock the database up front.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (handlers serialize after committing)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def write_lock(session: Session) -> Iterator[None]:
    """Begin the session's transaction so that competing writers serialize.

    On SQLite this issues ``BEGIN IMMEDIATE`` (the database write lock, taken up front); on
    PostgreSQL it is a plain transaction and callers use ``FOR UPDATE SKIP LOCKED`` rows.
    """
    if session.get_bind().dialect.name == "sqlite" and not session.in_transaction():
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    yield
