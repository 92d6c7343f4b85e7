"""The ``device-agent`` command line: help with examples, one-line errors, info, profile."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from device_agent.loopback.adbd import LoopbackAdbd
from device_agent.models import ModelCache
from tests.agent.agent_support import FAST_PROTOCOL, FMNIST_KEYS, agent_cmd, env
from tests.support.ports import free_port


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(agent_cmd(*args), capture_output=True, text=True, env=env(), timeout=timeout)


@pytest.mark.parametrize("command", ["run", "info", "profile", "loopback-device"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    r = _run(command, "--help")
    assert r.returncode == 0 and "Example" in r.stdout


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    r = _run("run", "--local")
    assert r.returncode == 2 and r.stderr.strip() == "device-agent: error: no server: give --server URL or set HWNAS_SERVER"
    bad = tmp_path / "keys.txt"
    bad.write_text("conv_k3_s1_o8@1x1x28x28\nir_k3@bad\n")
    r = _run("profile", "--local", "--keys", str(bad))
    assert r.returncode == 2 and "entry 2" in r.stderr and "Traceback" not in r.stderr
    r = _run("info", "--serial", f"127.0.0.1:{free_port()}")
    assert r.returncode == 3 and "cannot connect to 127.0.0.1" in r.stderr and "Traceback" not in r.stderr
    r = _run("profile", "--local", "--keys", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and "cannot read keys file" in r.stderr
    r = _run("info", "--serial", "R58N12ABCDE")  # a USB serial, adb-shell installed without its usb extra
    assert r.returncode in (2, 3) and ("adb-shell[usb]" in r.stderr or "cannot connect" in r.stderr)


def test_run_on_an_address_never_reached_fails_fast_with_the_hint() -> None:
    import time

    start = time.monotonic()
    r = _run(
        "run", "--serial", f"127.0.0.1:{free_port()}", "--server", "http://127.0.0.1:9", "--token", "x", "--once", timeout=60
    )
    elapsed = time.monotonic() - start
    assert r.returncode == 3, r.stderr
    assert "never reached" in r.stderr and "adb tcpip 5555" in r.stderr and "Traceback" not in r.stderr
    assert "retrying in" not in r.stderr  # one attempt: back-off is for connections that drop (it took 46 s before)
    assert elapsed < 30, elapsed


def test_info_against_the_loopback_device(loopback: LoopbackAdbd) -> None:
    r = _run("info", "--serial", loopback.serial)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines() if line.strip() and not line.startswith("pin"))
    assert lines["name"].strip() == "google-pixel-7-00hw"
    assert lines["device"].strip() == "Google Pixel 7" and lines["abi"].strip() == "arm64-v8a"
    assert "2x 2.85 GHz (cpu6-7)" in lines["cpus"] and "taskset c0" in r.stdout
    assert lines["build"].strip() == "hwnas.loopback"  # what says a loopback phone is one: its build, as any phone's
    r = _run("info", "--serial", loopback.serial, "--json")
    data = json.loads(r.stdout)
    assert data["name"] == "google-pixel-7-00hw" and data["cpu_cores"] == 8


def test_profile_local_writes_a_table(tmp_path: Path, model_cache_dir: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# two operators\n" + "\n".join(FMNIST_KEYS[:2]) + "\n")
    for k in FMNIST_KEYS[:2]:
        ModelCache(model_cache_dir).item(k, "onnxruntime")
    out = tmp_path / "out.json"
    r = _run("profile", "--local", "--keys", str(keys), "--out", str(out), "--cache-dir", str(model_cache_dir), *FAST_PROTOCOL)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert [row["key"] for row in data["results"]] == sorted(["__overhead__", *FMNIST_KEYS[:2]])
    # n: samples (of K runs each) over 2 time-sized rounds, at least one per round
    assert all(row["n"] >= 2 and row["min_ms"] <= row["median_ms"] for row in data["results"])
    assert FMNIST_KEYS[0] in r.stdout
