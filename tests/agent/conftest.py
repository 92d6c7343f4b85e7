"""Fixtures of the device-agent tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.adb.loopback import LoopbackAdbd
from device_agent.fakephone import load_phone


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[LoopbackAdbd]:
    """An in-process loopback ADB device (Pixel 7) on a free port, sandbox in tmp_path/phone."""
    daemon = LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7")).start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole session (exports are the slow part)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
