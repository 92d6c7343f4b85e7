"""A real ``profiler-server serve`` subprocess on a free port, for tests of every part.

    srv = start_live_server(tmp_path=tmp_path)              # SQLite file in tmp_path
    srv = start_live_server("postgresql+psycopg://...", tmp_path)
    with srv.client("agent") as c: ...
    srv.stop(); srv.start()                                  # same port, same database

The schema is migrated and three tokens (admin, agent, client) are created in-process with
the server's own functions (the same ones ``profiler-server db upgrade`` and
``profiler-server token create`` call) before the server subprocess starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hwnas.client import ProfilerClient
from tests.support import server_database
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def cli_command() -> list[str]:
    """The profiler-server command of this virtualenv (falls back to ``python -m``)."""
    exe = Path(sys.executable).with_name("profiler-server")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("profiler-server")
    return [found] if found else [sys.executable, "-m", "profiler_server.cli"]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DATABASE_URL", None)
    env.update(extra or {})
    return env


@dataclass
class LiveServer:
    """Handle on a running server subprocess: URL, database and one token per role."""

    url: str
    database_url: str
    port: int
    workdir: Path
    admin_token: str
    agent_token: str
    client_token: str
    env_extra: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"server-{self.port}.log"

    def token(self, role: str | None) -> str | None:
        """The token for ``role`` ("admin", "agent", "client") or None for no token."""
        return {None: None, "admin": self.admin_token, "agent": self.agent_token, "client": self.client_token}[role]

    def new_token(self, name: str, role: str, expires_days: float | None = None, devices: list[str] | None = None) -> str:
        """Another token (a second agent, say), created in the server's database."""
        return server_database.new_token(self.database_url, name, role, expires_days=expires_days, devices=devices)

    def end_lease(self, job_id: int) -> None:
        """Move job ``job_id``'s lease end into the past (``server_database.end_lease``)."""
        server_database.end_lease(self.database_url, job_id)

    def client(self, role: str | None = "client", **kwargs: object) -> ProfilerClient:
        """A ProfilerClient for this server holding the token of ``role`` (None: no token)."""
        return ProfilerClient(self.url, token=self.token(role), **kwargs)  # type: ignore[arg-type]

    def start(self) -> "LiveServer":
        """Start (or restart) the server on the same port and database; wait until /healthz answers."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        log = open(self.log_path, "ab")
        cmd = cli_command() + ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--database-url", self.database_url]
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(self.env_extra), cwd=ROOT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"profiler-server exited with {self._proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"profiler-server did not answer within {START_TIMEOUT_S}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        """Stop the server process (SIGTERM, then SIGKILL after 10 s)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "LiveServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_live_server(
    database_url: str | Path | None = None,
    tmp_path: Path | None = None,
    *,
    env: dict[str, str] | None = None,
) -> LiveServer:
    """Migrate the database, create admin/agent/client tokens, start ``profiler-server serve``.

    ``database_url`` defaults to a SQLite file in ``tmp_path``; ``env`` adds environment
    variables for the server (e.g. ``{"READ_REQUIRES_TOKEN": "true"}``).
    """
    if isinstance(database_url, Path):  # called as start_live_server(tmp_path)
        database_url, tmp_path = None, database_url
    workdir = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(prefix="hwnas-srv-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{workdir / 'hwnas.db'}"
    tokens = server_database.prepare_database(url)
    port = free_port()
    srv = LiveServer(
        url=f"http://127.0.0.1:{port}",
        database_url=url,
        port=port,
        workdir=workdir,
        admin_token=tokens["admin"],
        agent_token=tokens["agent"],
        client_token=tokens["client"],
        env_extra=dict(env or {}),
    )
    return srv.start()


@contextlib.contextmanager
def live_server_on(kind: str, tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """A live server on a new SQLite file (``kind="sqlite"``) or a fresh PostgreSQL database, stopped afterwards."""
    from tests.support.databases import fresh_postgres_database

    with contextlib.ExitStack() as stack:
        url = None if kind == "sqlite" else stack.enter_context(fresh_postgres_database())
        srv = start_live_server(url, tmp_path, env=env) if url else start_live_server(tmp_path=tmp_path, env=env)
        try:
            yield srv
        finally:
            srv.stop()
