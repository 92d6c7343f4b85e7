"""docker-compose.yml and the Dockerfile: services, commands, and where the server's database is."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_images() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "server", "agent"}
    assert services["postgres"]["image"].startswith("postgres:")
    for name, extras in (("server", "server"), ("agent", "agent")):
        build = services[name]["build"]
        assert build["context"] == "." and build["args"]["EXTRAS"] == extras
        assert (ROOT / build["context"] / "Dockerfile").is_file()


def test_server_migrates_then_serves_against_the_postgres_service() -> None:
    services = compose()["services"]
    server = services["server"]
    url = urlsplit(server["environment"]["DATABASE_URL"])
    assert url.scheme.startswith("postgresql") and url.hostname == "postgres" and (url.port or 5432) == 5432
    pg_env = services["postgres"]["environment"]
    assert (
        url.username == pg_env["POSTGRES_USER"]
        and url.password == pg_env["POSTGRES_PASSWORD"]
        and url.path == "/" + pg_env["POSTGRES_DB"]
    )
    command = " ".join(server["command"])
    assert command.index("profiler-server db upgrade") < command.index("profiler-server serve")
    assert "--host 0.0.0.0" in command and "8000:8000" in server["ports"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_agent_talks_adb_over_tcp_to_the_server() -> None:
    agent = compose()["services"]["agent"]
    env = agent["environment"]
    assert env["HWNAS_SERVER"] == "http://server:8000"
    assert "ADB_SERIAL" in env and "HWNAS_TOKEN" in env
    assert "device-agent run --serial" in " ".join(agent["command"])
    assert "server" in agent["depends_on"]


def test_dockerfile_installs_the_extra_and_serves() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG EXTRAS=server" in dockerfile and 'pip install ".[${EXTRAS}]"' in dockerfile
    assert "torch==2.13.0" in dockerfile  # only the agent image installs torch
    assert 'CMD ["profiler-server", "serve"' in dockerfile
    for path in ("hwnas", "profiler_server", "migrations", "device_agent", "search"):
        assert f"COPY {path} ./{path}" in dockerfile


def _env(**extra: str) -> dict[str, str]:
    """This environment with our console scripts on PATH, as the image has them."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **extra}


def _shell_command(service: dict) -> str:  # type: ignore[type-arg]
    command = service["command"]
    assert command[:2] == ["sh", "-c"]
    return command[2].replace("$$", "$")  # compose's escape for a literal $


def test_the_server_services_command_runs_as_written(any_database_url: str, tmp_path: Path) -> None:
    """The compose server's own command line, against a real database, answers its own health check."""
    server = compose()["services"]["server"]
    port = free_port()
    command = _shell_command(server).replace("--host 0.0.0.0", "--host 127.0.0.1").replace("--port 8000", f"--port {port}")
    env = _env(**{**server["environment"], "DATABASE_URL": any_database_url})
    proc = subprocess.Popen(
        ["sh", "-c", command],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "wb"),
        start_new_session=True,
    )
    try:
        deadline, healthy = time.monotonic() + 90, False
        while time.monotonic() < deadline and proc.poll() is None and not healthy:
            try:
                healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        assert healthy, (tmp_path / "server.log").read_text()[-2000:]
        assert httpx.get(f"http://127.0.0.1:{port}/devices", timeout=5).status_code == 200  # migrated: tables exist
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_agent_services_command_names_real_options() -> None:
    """Every option and variable the agent's command uses exists in ``device-agent run``; without a serial it says so."""
    agent = compose()["services"]["agent"]
    command = _shell_command(agent)
    run = command[command.index("device-agent run") :]
    help_text = subprocess.run(
        ["device-agent", "run", "--help"], capture_output=True, text=True, timeout=120, env=_env(COLUMNS="200")
    ).stdout
    for word in shlex.split(run):
        if word.startswith("--"):
            assert word in help_text, f"device-agent run has no {word}"
    for var in ("HWNAS_SERVER", "HWNAS_TOKEN"):
        assert f"env var: {var}" in help_text, f"device-agent run does not read {var}"
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60, env=_env(ADB_SERIAL=""))
    assert out.returncode == 2 and "set ADB_SERIAL" in out.stderr
