"""The loopback device with Google's own ``adb`` client (Debian package ``adb``).

Google's adb talks to a server daemon; each test uses a private server port and HOME and
kills that server at the end, so nothing is left behind and nothing touches port 5037.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from device_agent.adb.loopback import LoopbackAdbd
from tests.agent.agent_support import free_port

pytestmark = pytest.mark.skipif(shutil.which("adb") is None, reason="Google's adb is not installed (apt-get install adb)")


class Adb:
    def __init__(self, home: Path, server_port: int) -> None:
        self.env = dict(os.environ, HOME=str(home), ANDROID_ADB_SERVER_PORT=str(server_port))
        self.port = server_port

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["adb", "-P", str(self.port), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture
def adb(tmp_path: Path) -> Iterator[Adb]:
    home = tmp_path / "home"
    home.mkdir()
    client = Adb(home, free_port())
    try:
        yield client
    finally:
        client("kill-server", timeout=20)


def test_connect_devices_shell_exit_codes(adb: Adb, loopback: LoopbackAdbd) -> None:
    r = adb("connect", loopback.serial)
    assert "connected to" in r.stdout, r.stdout + r.stderr
    devices = adb("devices", "-l").stdout
    assert f"{loopback.serial}" in devices and "model:Pixel_7" in devices and "device product:panther" in devices
    r = adb("-s", loopback.serial, "shell", "getprop ro.product.manufacturer; echo rc=$?")
    assert r.stdout.split() == ["Google", "rc=0"]
    # no shell_v2 advertised: adb cannot know the exit code, the marker line carries it
    r = adb("-s", loopback.serial, "shell", "false; echo rc=$?")
    assert r.returncode == 0 and r.stdout.strip() == "rc=1"
    assert adb("-s", loopback.serial, "exec-out", "echo raw").stdout == "raw\n"


def test_push_pull_ls(adb: Adb, loopback: LoopbackAdbd, tmp_path: Path) -> None:
    adb("connect", loopback.serial)
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    r = adb("-s", loopback.serial, "push", str(src), "/data/local/tmp/g/f.bin")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (loopback.sandbox.root / "data/local/tmp/g/f.bin").read_bytes() == src.read_bytes()
    back = tmp_path / "back.bin"
    r = adb("-s", loopback.serial, "pull", "/data/local/tmp/g/f.bin", str(back))
    assert r.returncode == 0, r.stdout + r.stderr
    assert back.read_bytes() == src.read_bytes()
    listing = adb("-s", loopback.serial, "ls", "/data/local/tmp/g").stdout
    assert listing.split()[-1] == "f.bin" and f"{5 * 1024 * 1024 + 123:08x}" in listing
    r = adb("-s", loopback.serial, "pull", "/data/local/tmp/g/missing", str(tmp_path / "m"))
    assert r.returncode != 0


def test_parallel_shells_share_one_transport(adb: Adb, loopback: LoopbackAdbd) -> None:
    adb("connect", loopback.serial)

    def shell(i: int) -> str:
        return adb("-s", loopback.serial, "shell", f"sleep 0.2; echo par{i}").stdout.strip()

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(shell, range(4)))
    assert outs == [f"par{i}" for i in range(4)]
