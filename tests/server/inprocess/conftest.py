"""The handler-test tier: this folder's ``server`` is the app in this process (tests/support/app_server.py), on SQLite
and, when TEST_DATABASE_URL is set, on a fresh PostgreSQL database. The ``agent``, ``client`` and ``device``
fixtures of tests/server/conftest.py use it in place of the live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.app_server import AppServer, app_server_on
from tests.support.databases import postgres_base_url

DB_KINDS = ["sqlite"] + (["postgresql"] if postgres_base_url() else [])


@pytest.fixture(scope="module", params=DB_KINDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app in-process on SQLite, and on a fresh PostgreSQL database when TEST_DATABASE_URL is set."""
    with app_server_on(request.param, tmp_path_factory.mktemp(f"app_{request.param}")) as srv:
        yield srv
