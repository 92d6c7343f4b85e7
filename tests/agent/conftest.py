"""Fixtures of the device-agent tests."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.loopback.adbd import LoopbackAdbd
from device_agent.loopback.fakephone import load_phone
from tests.agent.agent_support import kill, start_loopback
from tests.support.ports import free_port
from tests.support.live_server import LiveServer, start_live_server


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[LoopbackAdbd]:
    """An in-process loopback ADB device (Pixel 7) on a free port, sandbox in tmp_path/phone."""
    daemon = LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7")).start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[tuple[int, Path, subprocess.Popen[bytes]]]:
    """A loopback phone subprocess (Pixel 7): (port, sandbox root, process)."""
    port, root = free_port(), tmp_path / "phone"
    proc = start_loopback(port, root, tmp_path / "loopback.log")
    try:
        yield port, root, proc
    finally:
        kill(proc, signal.SIGTERM)


@pytest.fixture
def server(any_database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on each test database (SQLite, and PostgreSQL when TEST_DATABASE_URL is set)."""
    srv = start_live_server(any_database_url, tmp_path / "srv")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole session (exports are the slow part)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
