"""The loopback device with Google's own ``adb`` client (Debian package ``adb``).

Google's adb talks to a server daemon; each test uses a private server port and HOME and
kills that server at the end, so nothing is left behind and nothing touches port 5037.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from device_agent.loopback.adbd import LoopbackAdbd
from tests.support.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("adb") is None, reason="Google's adb is not installed (apt-get install adb)")


class Adb:
    def __init__(self, home: Path, server_port: int) -> None:
        self.env = dict(os.environ, HOME=str(home), ANDROID_ADB_SERVER_PORT=str(server_port))
        self.port = server_port

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["adb", "-P", str(self.port), *args], env=self.env, capture_output=True, text=True, timeout=timeout)


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


def _read_until(fd: int, text: bytes, seen: bytearray, timeout_s: float = 20.0) -> None:
    """Read the terminal ``fd`` into ``seen`` until ``text`` shows (a deadline, not a guess)."""
    deadline = time.monotonic() + timeout_s
    while text not in seen:
        assert time.monotonic() < deadline, f"never saw {text!r}: {bytes(seen)!r}"
        if select.select([fd], [], [], 0.1)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the client exited: its terminal is gone
                raise AssertionError(f"adb ended before {text!r}: {bytes(seen)!r}") from None


def test_interactive_shell_is_mksh_on_a_terminal(adb: Adb, loopback: LoopbackAdbd) -> None:
    adb("connect", loopback.serial)
    # `adb shell` on a terminal, as a person types it: raw keystrokes, Enter is a CR
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes adb
        os.execvpe("adb", ["adb", "-P", str(adb.port), "-s", loopback.serial, "shell"], adb.env)
    seen = bytearray()
    try:
        _read_until(fd, b"# ", seen)  # mksh's prompt (a root shell): keystrokes now reach it
        os.write(fd, b'echo "$0 $KSH_VERSION"; tty\r')
        _read_until(fd, b"/dev/pts/", seen)
        os.write(fd, b"exit\r")
        deadline = time.monotonic() + 20
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            assert time.monotonic() < deadline, "adb shell did not end with the phone's shell"
            time.sleep(0.05)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(fd)
    out = bytes(seen).decode(errors="replace")
    # no "can't find tty fd" warning: the PTY is the shell's controlling terminal, as adbd makes it
    assert "/system/bin/sh @(#)MIRBSD KSH" in out and "tty fd" not in out and "job control" not in out, out
