"""ProfilerClient without a server: connection failures are retried, then reported clearly."""

from __future__ import annotations

import time

import pytest

from hwnas.client import ApiError, ProfilerClient, ServerUnreachable
from tests.support.ports import free_port


def test_unreachable_server_is_retried_then_reported() -> None:
    port = free_port()
    with ProfilerClient(f"http://127.0.0.1:{port}", retries=2, backoff_s=0.05, timeout=2) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnreachable) as err:
            client.health()
    assert f"127.0.0.1:{port}" in str(err.value)
    assert time.monotonic() - started >= 0.05 + 0.1  # two backoffs: it did retry
    assert not isinstance(err.value, ApiError)
