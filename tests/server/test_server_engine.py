"""The PostgreSQL engine plans each statement with its values: no server-side prepared statements, whose generic plans
turned the chunked IN lists of a 20,000-key job into sequential scans (profiler_server/db.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from profiler_server.db import make_engine
from tests.support.databases import fresh_postgres_database, postgres_base_url


@pytest.mark.skipif(not postgres_base_url(), reason="TEST_DATABASE_URL not set")
def test_postgres_statements_are_not_prepared_on_the_server() -> None:
    with fresh_postgres_database() as url:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                for _ in range(10):  # psycopg's default prepares a statement on its fifth run
                    conn.execute(text("SELECT 1 WHERE 'a' IN (:a, :b)"), {"a": "a", "b": "b"}).all()
                assert conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar() == 0
        finally:
            engine.dispose()
