"""Helpers of the device-agent tests: loopback devices as subprocesses, agent commands, DB checks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from tests.support.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]

# Small operators of the fbnet-fmnist space, and some slower ones for mid-job kills.
FMNIST_KEYS = [
    "conv_k3_s1_o8@1x1x28x28",
    "ir_k3_e1_g1_s1_o8@1x8x28x28",
    "ir_k3_e6_g1_s2_o16@1x8x28x28",
    "ir_k5_e3_g1_s1_o16@1x16x14x14",
    "maxpool_k3_s2_o16@1x8x28x28",
    "skip_s1_o16@1x16x14x14",
    "avgpool_k3_s1_o24@1x24x7x7",
    "gap_fc_o10@1x128x4x4",
]
SLOW_KEYS = [f"conv_k3_s1_o{c}@1x{c}x56x56" for c in (24, 32, 40, 48, 56, 64)] + [
    f"ir_k3_e6_g1_s1_o{c}@1x{c}x28x28" for c in (24, 32, 40, 48, 56, 64)
]

FAST_PROTOCOL = ["--warmup", "2", "--iterations", "6", "--rounds", "2"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "device_agent.cli", *args]


def wait_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def start_loopback(port: int, root: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``device-agent loopback-device`` as a real subprocess (so a test can kill it)."""
    fh = open(log, "ab")
    proc = subprocess.Popen(
        agent_cmd("loopback-device", "--port", str(port), "--root", str(root), *extra),
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=env(),
        start_new_session=True,
    )
    fh.close()
    try:
        wait_port(port)
    except TimeoutError:
        proc.kill()
        raise RuntimeError(log.read_text()) from None
    return proc


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)


def measurement_counts(database_url: str, device: str) -> dict[str, int]:
    """Stored measurements per key for ``device`` (read straight from the server's database)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT o.key, COUNT(*) FROM measurements m JOIN operators o ON o.id = m.operator_id "
                    "JOIN measurement_runs r ON r.id = m.run_id JOIN devices d ON d.id = r.device_id "
                    "WHERE d.name = :name GROUP BY o.key"
                ),
                {"name": device},
            ).all()
    finally:
        engine.dispose()
    return {k: int(n) for k, n in rows}


def process_running(pid: int) -> bool:
    """Whether ``pid`` runs on this host (a loopback phone's processes are the host's); a zombie does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _standin_for_the_empty_model() -> str:
    """Shell lines that hand a call on the empty model (``__overhead__``) to the real stand-in (through the
    loopback's zygote): the agent's preflight measures it with the jobs' flags, and a fake program must pass
    that to be tried on a job."""
    from device_agent.loopback.standins.worker import launcher_script

    body = launcher_script("onnxruntime_perf_test").split("\n", 1)[1]
    return f'case "$*" in *__overhead__*)\n{body};;\nesac\n'


# A fake onnxruntime_perf_test's first lines: bare it prints a usage (the preflight's first step), and it measures
# the empty model like the stand-in (the preflight's burst); what follows is the fake's own behaviour.
PERF_TEST_USAGE = (
    'if [ $# -eq 0 ]; then echo "usage: onnxruntime_perf_test [options...] model_path"; exit 1; fi\n'
    + _standin_for_the_empty_model()
)


def fake_program(path: Path, body: str) -> Path:
    """An executable shell program for the loopback phone (``body`` after the ``#!/bin/sh`` line)."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def register_phone(srv: "LiveServer", serial: str) -> str:
    """The phone at ``serial`` registered on ``srv`` under its default name (which is returned)."""
    from device_agent.deviceinfo import read_facts
    from device_agent.platforms.adb import AdbDevice

    dev = AdbDevice(serial)
    facts = read_facts(dev)
    dev.close()
    with srv.client("agent") as c:
        c.put_device(facts.default_name(), facts.device_info())
    return facts.default_name()


def executorch_run_states(database_url: str, device: str) -> list[dict]:  # type: ignore[type-arg]
    """The ``device_state`` of every executorch run of ``device``, read from the database."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT r.device_state FROM measurement_runs r JOIN devices d ON d.id = r.device_id "
                    "WHERE d.name = :name AND r.runtime = 'executorch'"
                ),
                {"name": device},
            ).all()
    finally:
        engine.dispose()
    return [json.loads(s) if isinstance(s, str) else s for (s,) in rows]
