"""Schema only through alembic: migrations and models agree, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from profiler_server.db import make_engine
from profiler_server.migrate import current_revision, upgrade
from profiler_server.models import Base
from tests.support.databases import fresh_postgres_database, postgres_base_url, sqlite_url
from tests.support.live_server import cli_command

HEAD = "0009"  # the latest revision in migrations/versions


def _schema(url: str) -> dict[str, object]:
    """Tables, columns (name, nullable), unique constraints and indexes, as reflected."""
    engine = make_engine(url)
    try:
        insp = inspect(engine)
        out: dict[str, object] = {}
        for table in sorted(insp.get_table_names()):
            if table == "alembic_version":
                continue
            out[table] = (
                [(c["name"], c["nullable"]) for c in insp.get_columns(table)],
                sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
                sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(table) if not i.get("unique")),
                sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(table)),
            )
        return out
    finally:
        engine.dispose()


def test_migrations_match_models(any_database_url: str) -> None:
    upgrade(any_database_url)
    assert current_revision(any_database_url) == HEAD
    engine = make_engine(any_database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], diff


def test_cli_upgrade_gives_the_same_schema_everywhere(any_database_url: str) -> None:
    proc = subprocess.run(
        cli_command() + ["db", "upgrade", "--database-url", any_database_url], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert f"revision {HEAD}" in proc.stdout
    schema = _schema(any_database_url)
    expected = {
        "devices",
        "operators",
        "measurement_runs",
        "measurements",
        "lut_versions",
        "jobs",
        "job_items",
        "api_tokens",
        "networks",
        "network_measurements",
        "job_networks",
        "calibrations",
        "imported_tables",
    }
    assert set(schema) == expected
    # Upgrading again is a no-op.
    again = subprocess.run(
        cli_command() + ["db", "upgrade", "--database-url", any_database_url], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and _schema(any_database_url) == schema


@pytest.mark.skipif(not postgres_base_url(), reason="TEST_DATABASE_URL not set")
def test_sqlite_and_postgres_schemas_are_equal(tmp_path: Path) -> None:
    """Both back ends reflect the same tables, columns, keys and indexes."""
    lite = sqlite_url(tmp_path)
    upgrade(lite)
    with fresh_postgres_database() as pg:
        upgrade(pg)
        assert _schema(lite) == _schema(pg)


def test_import_keeps_torch_out() -> None:
    code = (
        "import sys; import profiler_server, profiler_server.app, profiler_server.cli, hwnas.client; "
        "profiler_server.app.create_app; assert 'torch' not in sys.modules, 'torch imported'; print('clean')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr
