"""The loopback device speaks real ADB: the adb-shell client against it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner

from device_agent.loopback.adbd import LoopbackAdbd
from device_agent.errors import DeviceUnreachable
from device_agent.loopback.fakephone import load_phone
from device_agent.platforms.adb import AdbDevice


def _client(daemon: LoopbackAdbd) -> AdbDeviceTcp:
    dev = AdbDeviceTcp(daemon.host, daemon.port, default_transport_timeout_s=10)
    assert dev.connect(read_timeout_s=10)
    return dev


def test_shell_streams_100kb_of_output(loopback: LoopbackAdbd) -> None:
    dev = _client(loopback)
    out = dev.shell("i=0; while [ $i -lt 1000 ]; do printf '%099d\\n' $i; i=$((i+1)); done", read_timeout_s=20)
    lines = out.splitlines()
    assert len(out) == 100_000
    assert lines[0] == "0" * 99 and lines[-1] == "0" * 96 + "999"
    dev.close()


def test_push_pull_5mb_stat_and_list(loopback: LoopbackAdbd, tmp_path: Path) -> None:
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024))
    dev = _client(loopback)
    dev.push(str(src), "/data/local/tmp/t/blob.bin", read_timeout_s=30)
    # the file lands inside the sandbox, and shell commands see it at the device path
    assert (loopback.sandbox.root / "data/local/tmp/t/blob.bin").read_bytes() == src.read_bytes()
    assert dev.shell("wc -c < /data/local/tmp/t/blob.bin").strip() == str(5 * 1024 * 1024)
    mode, size, _mtime = dev.stat("/data/local/tmp/t/blob.bin")
    assert size == 5 * 1024 * 1024 and mode & 0o170000 == 0o100000
    assert dev.stat("/data/local/tmp/t/missing") == (0, 0, 0)
    names = {bytes(f.filename).decode() for f in dev.list("/data/local/tmp/t")}
    assert names == {".", "..", "blob.bin"}
    back = tmp_path / "back.bin"
    dev.pull("/data/local/tmp/t/blob.bin", str(back), read_timeout_s=30)
    assert back.read_bytes() == src.read_bytes()
    dev.close()


def test_fake_phone_answers_getprop_and_sys_files(loopback: LoopbackAdbd) -> None:
    dev = _client(loopback)
    assert dev.shell("getprop ro.product.model").strip() == "Pixel 7"
    assert "[ro.build.version.sdk]: [34]" in dev.shell("getprop")
    assert dev.shell("cat /sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq").strip() == "2850000"
    assert "Thermal Status: 0" in dev.shell("dumpsys thermalservice")
    assert dev.shell("taskset c0 echo pinned").strip() == "pinned"
    # exec: is the raw variant of shell:
    assert dev.exec_out("echo raw").strip() == "raw"
    dev.close()


def test_sandbox_keeps_device_paths_inside_root(loopback: LoopbackAdbd) -> None:
    dev = _client(loopback)
    dev.shell("mkdir -p /data/local/tmp/x && echo inside > /data/local/tmp/x/f.txt")
    assert (loopback.sandbox.root / "data/local/tmp/x/f.txt").read_text() == "inside\n"
    # sync paths cannot climb out of the sandbox
    assert loopback.sandbox.host_path("/../../../etc/passwd") == loopback.sandbox.root / "etc/passwd"
    dev.close()


def test_platform_device_gives_exit_codes_and_reconnects(loopback: LoopbackAdbd) -> None:
    dev = AdbDevice(loopback.serial)
    dev.connect()
    assert dev.run("echo ok; exit 3", check=False).rc == 3
    assert dev.run("echo ok").output == "ok\n"
    chunks = list(dev.stream("for i in 1 2 3; do echo line$i; sleep 0.05; done"))
    assert "".join(chunks).split() == ["line1", "line2", "line3"]
    # the device goes away: an error at once (not after the read timeout), then a reconnect works
    port = loopback.port
    loopback.stop()
    with pytest.raises(DeviceUnreachable):
        dev.shell("echo gone", timeout_s=60)
    with pytest.raises(DeviceUnreachable):
        dev.connect()
    again = LoopbackAdbd(loopback.sandbox.root, load_phone("pixel-7"), port=port).start()
    try:
        dev.reconnect()
        assert dev.run("echo back").output == "back\n"
    finally:
        dev.close()
        again.stop()


def test_several_clients_at_once(loopback: LoopbackAdbd) -> None:
    outs: list[str] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        dev = _client(loopback)  # one connection each: adb-shell itself is not thread-safe per connection
        for j in range(3):
            out = dev.shell(f"sleep 0.05; echo client{i}-{j}")
            with lock:
                outs.append(out.strip())
        dev.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(outs) == sorted(f"client{i}-{j}" for i in range(4) for j in range(3))


def test_auth_accepts_a_new_key_then_verifies_signatures(tmp_path: Path) -> None:
    key = tmp_path / "adbkey"
    keygen(str(key))
    signer = PythonRSASigner.FromRSAKeyPath(str(key))
    with LoopbackAdbd(tmp_path / "phone", load_phone("generic"), auth_required=True) as daemon:
        first = AdbDeviceTcp(daemon.host, daemon.port, default_transport_timeout_s=10)
        assert first.connect(rsa_keys=[signer], auth_timeout_s=5)  # unknown key: "user taps allow"
        assert first.shell("echo one").strip() == "one"
        first.close()
        stored = (daemon.sandbox.root / ".phone" / "adb_keys").read_text()
        assert stored.strip().endswith(Path(str(key) + ".pub").read_text().split()[-1])
        second = AdbDeviceTcp(daemon.host, daemon.port, default_transport_timeout_s=10)
        assert second.connect(rsa_keys=[signer], auth_timeout_s=5)  # known key: signature verified
        assert second.shell("echo two").strip() == "two"
        second.close()
        # a daemon that refuses new keys never lets an unknown one in
    other = tmp_path / "other"
    keygen(str(other))
    with LoopbackAdbd(tmp_path / "phone2", load_phone("generic"), auth_required=True, accept_new_keys=False) as daemon:
        dev = AdbDeviceTcp(daemon.host, daemon.port, default_transport_timeout_s=5)
        with pytest.raises(Exception):  # noqa: B017 - adb_shell's error for a refused key is not part of its API
            dev.connect(rsa_keys=[PythonRSASigner.FromRSAKeyPath(str(other))], auth_timeout_s=0.5, read_timeout_s=2)
        dev.close()
