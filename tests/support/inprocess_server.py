"""A real profiler server in this process (uvicorn in a thread, real sockets), for tests that read the app's own
state afterwards: ``app.state.gate`` counters, ``profiler_server.api.deps.WRITE_HOLDS``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.ports import free_port


@dataclass
class InProcessServer:
    url: str
    app: Any
    tokens: dict[str, str]  # role -> token (agent, client, admin)


@contextmanager
def in_process_server(database_url: str, **settings: Any) -> Iterator[InProcessServer]:
    """Migrate ``database_url``, create one token per role, serve the app with the protocol ``serve`` uses."""
    import uvicorn

    from profiler_server.app import create_app
    from profiler_server.auth import create_token
    from profiler_server.db import make_engine, session_factory
    from profiler_server.gate import http_protocol
    from profiler_server.migrate import upgrade
    from profiler_server.settings import Settings

    upgrade(database_url)
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        tokens = {role: create_token(session, f"inproc-{role}", role) for role in ("agent", "client", "admin")}
        session.commit()
    engine.dispose()
    app = create_app(Settings(database_url=database_url, **settings))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=http_protocol()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.05)
    try:
        yield InProcessServer(f"http://127.0.0.1:{port}", app, tokens)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
