"""docker-compose.yml and the Dockerfile: services, commands, and where the server's database is."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml

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
    assert url.username == pg_env["POSTGRES_USER"] and url.password == pg_env["POSTGRES_PASSWORD"] and url.path == "/" + pg_env["POSTGRES_DB"]
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
