"""`hwnas validate --runtime executorch` end to end: a real server, `device-agent run --local --runtime executorch`,
the CLI; the networks come back with ExecuTorch's per-operator breakdown. A runtime no agent measures is refused before
any job is created."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.agent_support import agent_cmd, env, kill
from tests.support.databases import sqlite_url
from tests.support.live_server import LiveServer, start_live_server
from tests.validate.test_validate import TINY, _wait_registered

needs_executorch = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None, reason="ExecuTorch is not installed: pip install 'hwnas[executorch]'"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("validate-et")
    srv = start_live_server(sqlite_url(tmp), tmp)
    try:
        yield srv
    finally:
        srv.stop()


def _validate(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "search.app.cli",
        "validate",
        "--server",
        server.url,
        "--space",
        "fbnet-fmnist",
        "--token",
        server.client_token,
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=900)


def test_a_runtime_no_agent_measures_is_refused_before_a_job(server: LiveServer) -> None:
    # No device of that name either: the runtime is what is named, so it was checked first.
    proc = _validate(server, "--device", "no-such-device", "--runtime", "tensorrt", "--n", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: unknown runtime 'tensorrt': use one of onnxruntime, torchscript, executorch"
    )


@needs_executorch
def test_validate_measures_and_predicts_in_executorch(server: LiveServer, tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            agent_cmd(
                "run",
                "--local",
                "--server",
                server.url,
                "--token",
                server.agent_token,
                "--name",
                "host-et",
                "--runtime",
                "executorch",
                "--threads",
                "1",
                "--cache-dir",
                str(tmp_path / "models"),
                *TINY,
            ),
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env(),
            start_new_session=True,
        )
    try:
        _wait_registered(server, "host-et", proc, log)
        out = tmp_path / "val"
        done = _validate(
            server,
            "--device",
            "host-et",
            "--runtime",
            "executorch",
            "--n",
            "2",
            "--seed",
            "1",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "lut"),
            "--timeout",
            "800",
        )
    finally:
        kill(proc, 15)
    assert done.returncode == 0, done.stderr + done.stdout + log.read_text()[-3000:]
    assert "(executorch, 1 thread(s))" in done.stdout
    doc = json.loads((out / "validation.json").read_text())
    assert doc["runtime"] == "executorch" and len(doc["networks"]) == 2
    for row in doc["networks"]:  # the table of .pte operators predicts the .pte networks to a factor of 2.5
        assert 0.4 < row["predicted_ms"] / row["measured_ms"] < 2.5
    with server.client() as c:
        entries = c.get_networks("host-et", runtime="executorch", threads=1).entries
    assert set(entries) == {r["arch_id"] for r in doc["networks"]}
    assert all(e.operator_breakdown is not None and e.operator_breakdown.operators for e in entries.values())
