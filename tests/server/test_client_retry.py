"""The client resends a request the server answered 503 (rolled back: database busy or away), after Retry-After."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterator

import pytest

from hwnas.client import ApiError, ProfilerClient


class Flaky(BaseHTTPRequestHandler):
    """Answers 503 (Retry-After: 0) ``failures`` times, then 200 with an empty list."""

    failures = 0
    seen = 0

    def do_GET(self) -> None:  # the stdlib's name
        cls = type(self)
        cls.seen += 1
        if cls.seen <= cls.failures:
            body, status = json.dumps({"detail": "database busy", "errors": []}).encode(), 503
        else:
            body, status = b"[]", 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[Flaky]]]:
    handler = type("FlakyHandler", (Flaky,), {"failures": 0, "seen": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_503_is_retried_until_the_server_answers(flaky: tuple[str, type[Flaky]]) -> None:
    url, handler = flaky
    handler.failures = 2
    with ProfilerClient(url, retries=3, backoff_s=0.0) as c:
        assert c.list_devices() == []
    assert handler.seen == 3


def test_a_503_that_outlasts_the_retries_is_raised(flaky: tuple[str, type[Flaky]]) -> None:
    url, handler = flaky
    handler.failures = 10
    with ProfilerClient(url, retries=2, backoff_s=0.0) as c, pytest.raises(ApiError) as err:
        c.list_devices()
    assert err.value.status == 503 and handler.seen == 3
