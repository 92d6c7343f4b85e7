"""The demo's background processes: a `profiler-server` and a local `device-agent`, and how they always stop.

Each runs in its own session (process group), so a Ctrl-C at the terminal reaches only the demo,
which then stops them in order: the agent first (SIGTERM: it finishes the current burst and gives
its job back), then the server, each with SIGKILL to the whole group after a grace period. On
Linux they also get ``PR_SET_PDEATHSIG``, so even a demo killed with SIGKILL takes them along.
Their PIDs are written to ``<out>/services.json`` (``running`` and ``started``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hwnas.errors import HwnasError


class DemoError(HwnasError, RuntimeError):
    """A demo that cannot go on (a service did not start, a job failed); the message says what to look at."""


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def console_script(name: str, module: str) -> list[str]:
    """The command of one of our console scripts: next to this Python, on PATH, else ``python -m module``."""
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", module]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: SIGKILL this child when the demo dies, even by SIGKILL (where no finally block runs).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no glibc (OSError) or no prctl in it
        pass


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


@dataclass
class Service:
    """One background process, its log file, and how long it may take to stop."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    grace_s: float = 10.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def died(self) -> DemoError:
        """The error to raise when the process exited on its own; carries the end of its log."""
        last = _last_line(self.log)
        return DemoError(f"{self.name} exited with code {self.proc.returncode}{': ' + last if last else ''} (log: {self.log})")

    def stop(self) -> None:
        """SIGTERM the process group, wait ``grace_s``, then SIGKILL the group; always reaps the process."""
        if self.alive:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # also whatever the process started and left behind in its group
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class Services:
    """The server and agent of one demo; a context manager that stops both whatever happens."""

    workdir: Path
    services: list[Service] = field(default_factory=list)
    started: dict[str, int] = field(default_factory=dict)
    url: str | None = None
    database_url: str | None = None

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def __enter__(self) -> "Services":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, cmd: list[str], grace_s: float) -> Service:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        env = dict(os.environ)
        env.pop("DATABASE_URL", None)  # the server gets its database on the command line, nothing else
        env["PYTHONUNBUFFERED"] = "1"
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        service = Service(name, proc, log, grace_s)
        self.services.append(service)
        self.started[name] = proc.pid
        self._write_pids()
        return service

    def _write_pids(self) -> None:
        # running: what is up now; started: every process this demo started (what must be gone at the end)
        doc = {"url": self.url, "running": {s.name: s.pid for s in self.services if s.alive}, "started": self.started}
        (self.workdir / "services.json").write_text(json.dumps(doc, indent=2) + "\n")

    def get(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    # -- the server -------------------------------------------------------------------------
    def start_server(self, port: int | None = None, timeout_s: float = 60.0) -> str:
        """``profiler-server serve`` on SQLite in the work dir (migrates first); returns its URL once /healthz answers."""
        port = port or free_port()
        self.database_url = f"sqlite:///{(self.workdir / 'hwnas.db').resolve()}"
        self.url = f"http://127.0.0.1:{port}"
        server = self._spawn(
            "server",
            console_script("profiler-server", "profiler_server.cli")
            + [
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database-url",
                self.database_url,
                "--log-level",
                "warning",
            ],
            grace_s=10.0,
        )
        self._wait(lambda: _healthy(self.url), server, timeout_s, f"profiler-server on {self.url}")
        return self.url

    def create_token(self, name: str, role: str) -> str:
        """``profiler-server token create`` on the demo's database; returns the token it prints."""
        cmd = console_script("profiler-server", "profiler_server.cli") + [
            "token",
            "create",
            "--name",
            name,
            "--role",
            role,
            "--database-url",
            str(self.database_url),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, start_new_session=True)
        if done.returncode != 0 or not done.stdout.strip():
            raise DemoError(f"`profiler-server token create --role {role}` failed: {done.stderr.strip()[-500:]}")
        return done.stdout.strip().splitlines()[-1]

    # -- the agent --------------------------------------------------------------------------
    def agent_command(self, token: str, device: str, runtime: str, threads: int, extra: list[str] | None = None) -> list[str]:
        """The ``device-agent run --local`` command line for ``device`` against the demo's server."""
        if self.url is None:
            raise DemoError("start the server before the agent")
        return (
            console_script("device-agent", "device_agent.cli")
            + [
                "run",
                "--local",
                "--server",
                self.url,
                "--token",
                token,
                "--name",
                device,
                "--runtime",
                runtime,
                "--threads",
                str(threads),
            ]
            + list(extra or [])
        )

    def start_agent(self, token: str, device: str, runtime: str, threads: int, extra: list[str] | None = None) -> Service:
        """``device-agent run --local`` for ``device`` against the demo's server (serves jobs until stopped)."""
        return self._spawn("agent", self.agent_command(token, device, runtime, threads, extra), grace_s=15.0)

    def wait_for(self, ready: Callable[[], bool], service: str, timeout_s: float, what: str) -> None:
        """Poll ``ready()`` until true; ``DemoError`` when the service dies or the time runs out."""
        self._wait(ready, self.get(service), timeout_s, what)

    def check_alive(self) -> None:
        """``DemoError`` (with the log's end) when a background process has died."""
        for s in self.services:
            if not s.alive:
                raise s.died()

    def _wait(self, ready: Callable[[], bool], service: Service, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not service.alive:
                raise service.died()
            if ready():
                return
            time.sleep(0.1)
        raise DemoError(f"{what} not ready after {timeout_s:.0f} s; see {service.log}")

    # -- stopping ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the agent, then the server (reverse start order); a second Ctrl-C or SIGTERM meanwhile is ignored."""
        if not self.services:
            return
        previous = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[sig] = signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread: cannot touch signal handlers
            pass
        try:
            for service in reversed(self.services):
                service.stop()
            self.services.clear()
            self._write_pids()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _healthy(url: str | None) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def device_registered(url: str, token: str, device: str) -> bool:
    """Whether the server at ``url`` knows ``device`` yet (an agent registers it when it starts)."""
    from hwnas.client import NotFoundError, ProfilerClient

    with ProfilerClient(url, token=token) as client:
        try:
            client.get_device(device)
            return True
        except NotFoundError:
            return False
