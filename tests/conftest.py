"""Fixtures shared by every test suite: a live profiler server and database URLs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import fresh_postgres_database, postgres_base_url, sqlite_url
from tests.support.live_server import LiveServer, start_live_server

_DB_PARAMS = ["sqlite"] + (["postgresql"] if postgres_base_url() else [])


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real profiler server on SQLite, shared by the tests of one module."""
    srv = start_live_server(tmp_path=tmp_path_factory.mktemp("live_server"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=_DB_PARAMS)
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, and (when TEST_DATABASE_URL is set) a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with fresh_postgres_database() as url:
            yield url


def pytest_sessionstart(session: pytest.Session) -> None:
    """Ctrl-C reaches the programs the tests start, even when the suite itself was started in the background.

    A shell without job control starts `cmd &` with SIGINT ignored; Python then keeps it ignored and every child
    inherits that across exec, so the tests that Ctrl-C a search, a demo or an agent would wait for nothing. A Python
    handler here is reset to the default in each child instead.
    """
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line when the published-table tests could not run, so such a run never passes for a full one."""
    from tests.support.reference_data import SKIP_REASON

    skipped = [r for r in terminalreporter.stats.get("skipped", []) if SKIP_REASON in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"WARNING: {len(skipped)} tests of the published tables skipped: {SKIP_REASON}", yellow=True, bold=True
        )
