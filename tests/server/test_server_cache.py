"""The serialized-table cache is per process; the table version in the database keeps every
server process (worker) fresh."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest

from hwnas.client import ProfilerClient
from tests.support.live_server import LiveServer
from tests.support.ports import free_port
from tests.support.measurements import batch, key, result


@pytest.fixture
def second(server: LiveServer) -> Iterator[LiveServer]:
    """Another server process on the same database (as a second uvicorn worker would be)."""
    port = free_port()
    other = dataclasses.replace(server, url=f"http://127.0.0.1:{port}", port=port, _proc=None)
    other.start()
    yield other
    other.stop()


def test_cache_follows_writes_made_through_another_process(second: LiveServer, agent: ProfilerClient, device: str) -> None:
    agent.post_measurements(batch(device, [result(key(0), 1.0)]))
    with second.client("client") as reader:
        first = reader.get_lut(device)  # cached in the second process now
        assert first.lut is not None and set(first.lut.entries) == {key(0)}
        assert reader.get_lut(device, etag=first.etag).not_modified
        agent.post_measurements(batch(device, [result(key(0), 2.0), result(key(1), 3.0)]))  # through the first process
        fresh = reader.get_lut(device, etag=first.etag)
    assert not fresh.not_modified and fresh.lut is not None
    assert fresh.lut.entries[key(0)].median_ms == 2.0 and key(1) in fresh.lut.entries
    csv_text = httpx.get(f"{second.url}/lut/{device}", params={"format": "csv"}).text
    assert f"{key(0)},2.0" in csv_text
