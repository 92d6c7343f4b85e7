"""The profiler-server command line: tokens, schema upgrade, help texts, one-line errors."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from hwnas.schemas import DeviceInfo
from tests.support.databases import sqlite_url
from tests.support.live_server import LiveServer, cli_command
from tests.support.ports import free_port
from tests.support.measurements import batch, key, result


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command() + list(args), capture_output=True, text=True, timeout=120)


def test_token_create_prints_a_working_token_once(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert run("db", "upgrade", "--database-url", url).returncode == 0
    made = run("token", "create", "--name", "pixel7-agent", "--role", "agent", "--database-url", url)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("hwnas_") and len(token) > 40 and "\n" not in token
    assert "shown only once" in made.stderr
    # Only the hash is stored.
    with sqlite3.connect(tmp_path / "hwnas.db") as db:
        stored = db.execute("SELECT name, role, token_hash FROM api_tokens").fetchall()
    assert stored[0][:2] == ("pixel7-agent", "agent") and token not in stored[0][2]
    revoked = run("token", "revoke", "--name", "pixel7-agent", "--database-url", url)
    assert revoked.returncode == 0 and "revoked 1" in revoked.stdout


def test_the_first_command_on_a_new_database_sets_its_schema_up(tmp_path: Path) -> None:
    # No `db upgrade` first: `token create` is what a new user runs first (it used to fail on a missing table
    # and leave an empty database file behind).
    made = run("token", "create", "--name", "admin", "--role", "admin", "--database-url", sqlite_url(tmp_path))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().startswith("hwnas_")
    assert run("token", "list", "--database-url", sqlite_url(tmp_path)).stdout.count("admin") >= 1


def test_serve_on_a_busy_port_says_so_before_touching_the_database(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run("serve", "--port", str(port), "--database-url", sqlite_url(tmp_path))
    assert out.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in out.stderr and "in use" in out.stderr
    assert "profiler-server on http" not in out.stderr  # no banner for a server that never ran
    assert not (tmp_path / "hwnas.db").exists()


def test_an_agent_token_can_be_limited_to_devices(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert run("db", "upgrade", "--database-url", url).returncode == 0
    made = run(
        "token",
        "create",
        "--name",
        "lab-agent",
        "--role",
        "agent",
        "--device",
        "pixel7",
        "--device",
        "s22",
        "--database-url",
        url,
    )
    assert made.returncode == 0, made.stderr
    listed = run("token", "list", "--database-url", url)
    row = next(line for line in listed.stdout.splitlines() if "lab-agent" in line)
    assert row.rstrip().endswith("pixel7, s22") and "active" in row
    client = run("token", "create", "--name", "c", "--role", "client", "--device", "pixel7", "--database-url", url)
    assert client.returncode == 1 and "only agent tokens" in client.stderr


def test_bad_role_and_bad_database_are_one_line_errors(tmp_path: Path) -> None:
    bad_role = run("token", "create", "--name", "x", "--role", "root", "--database-url", sqlite_url(tmp_path))
    assert bad_role.returncode == 1 and "unknown role 'root'" in bad_role.stderr and "Traceback" not in bad_role.stderr
    bad_db = run("db", "upgrade", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert bad_db.returncode == 1 and bad_db.stderr.startswith("error: database error") and "Traceback" not in bad_db.stderr
    assert len(bad_db.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "command", [[], ["serve"], ["token", "create"], ["token", "revoke"], ["db", "upgrade"], ["db", "current"]]
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    proc = run(*command, "--help")
    assert proc.returncode == 0
    if command:
        assert "Example: profiler-server" in proc.stdout


def test_serve_upgrades_and_tokens_work_end_to_end(tmp_path: Path) -> None:
    """`serve` on an empty database migrates it; tokens from `token create` authorize writes."""
    url = sqlite_url(tmp_path, "fresh.db")
    port = free_port()
    srv = LiveServer(
        url=f"http://127.0.0.1:{port}",
        database_url=url,
        port=port,
        workdir=tmp_path,
        admin_token="",
        agent_token="",
        client_token="",
    )
    with srv.start():
        assert run("db", "current", "--database-url", url).stdout.strip() == "0009"
        srv.agent_token = run("token", "create", "--name", "a", "--role", "agent", "--database-url", url).stdout.strip()
        with srv.client("agent") as agent:
            agent.put_device("host", DeviceInfo(cpu_cores=2))
            assert agent.post_measurements(batch("host", [result(key(0))])).stored == 1
        # A restart on the same port and database keeps everything.
        srv.stop()
        srv.start()
        assert httpx.get(f"{srv.url}/lut/host").json()["entries"][key(0)]["median_ms"] == 1.0
    assert not srv.running
    assert "API docs: http://127.0.0.1:" in srv.log_path.read_text()
