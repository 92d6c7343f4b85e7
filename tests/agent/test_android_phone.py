"""The loopback phone is an Android phone: mksh as /system/bin/sh, toybox tools, one-true-awk
(none on Android 8) and nothing of the host on PATH, so what breaks on a phone breaks here; its
fault knobs; and the agent measuring on the phone without awk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.loopback.adbd import LoopbackAdbd
from device_agent.deviceinfo import read_facts
from device_agent.loopback.fakephone import PHONE_DIR, RESULTS_DIR, load_phone, set_faults
from device_agent.models import ModelCache
from device_agent.platforms.adb import AdbDevice
from device_agent.protocol import ProtocolConfig, plan
from device_agent.runtimes.binary import BinaryRunner
from device_agent.loopback.standins.worker import write_launcher
from hwnas.schemas import JobCreate
from tests.agent.agent_support import FAST_PROTOCOL, FMNIST_KEYS, agent_cmd, env, kill, start_loopback
from tests.support.ports import free_port
from tests.support.live_server import LiveServer

# What a host's GNU/Debian userland would answer instead.
HOST_ONLY = ("bash", "dash", "gawk", "mawk", "python3", "perl", "coreutils")


@pytest.fixture
def android8(tmp_path: Path) -> Iterator[LoopbackAdbd]:
    daemon = LoopbackAdbd(tmp_path / "phone8", load_phone("android-8")).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def shell(daemon: LoopbackAdbd, command: str) -> str:
    dev = AdbDevice(daemon.serial)
    try:
        return dev.shell(command)
    finally:
        dev.close()


def test_the_shell_is_mksh_named_system_bin_sh(loopback: LoopbackAdbd) -> None:
    version, argv0, bash = shell(loopback, 'echo "$KSH_VERSION"; echo "$0"; echo "${BASH_VERSION:-no bash}"').splitlines()
    assert "MIRBSD KSH" in version and argv0 == "/system/bin/sh" and bash == "no bash"
    # `sh` on the phone's PATH (how a pushed batch script runs) is mksh too, as /system/bin/sh is
    assert "MIRBSD KSH" in shell(loopback, "sh -c 'echo $KSH_VERSION'")
    # mksh's own message for a missing program, under Android's name for it
    assert "/system/bin/sh: no-such-tool:" in shell(loopback, "no-such-tool")


def test_only_the_phones_programs_are_on_its_path(loopback: LoopbackAdbd) -> None:
    root = loopback.sandbox.root
    assert shell(loopback, "echo $PATH").strip() == str(root / PHONE_DIR / "bin")
    assert shell(loopback, "command -v " + " ".join(HOST_ONLY) + "; echo rc=$?").strip() == "rc=1"
    # toybox answers --version for (nearly) every applet; GNU's would say "ls (GNU coreutils) 9.1"
    for tool in ("ls", "cat", "grep", "md5sum"):
        assert shell(loopback, f"{tool} --version").strip().startswith("toybox "), tool
        assert os.readlink(root / PHONE_DIR / "bin" / tool).endswith("toybox")
    assert shell(loopback, "sed --version").strip() == "This is not GNU sed version 9.0"  # toybox's own joke
    assert shell(loopback, "awk --version").startswith("awk version 20")  # one-true-awk, not "GNU Awk"
    assert os.readlink(root / PHONE_DIR / "bin" / "awk").endswith("original-awk")
    # applets that would act on the host itself (the phone's processes are the host's) are left off
    assert shell(loopback, "command -v reboot swapoff mount; echo rc=$?").strip() == "rc=1"


def test_android_8_has_no_awk(android8: LoopbackAdbd) -> None:
    assert shell(android8, "command -v awk; echo rc=$?").strip() == "rc=1"
    assert "awk: inaccessible or not found" in shell(android8, "awk 'BEGIN { print 1 }'")
    info = read_facts(AdbDevice(android8.serial)).device_info()
    assert info.os_version == "Android 8.1.0 (SDK 27)" and info.cpu_cores == 8


def test_a_phone_installed_again_keeps_no_tool_of_its_last_profile(tmp_path: Path) -> None:
    root = tmp_path / "phone"
    with LoopbackAdbd(root, load_phone("pixel-7")) as daemon:
        assert shell(daemon, "command -v awk").strip() == f"{root}/{PHONE_DIR}/bin/awk"
    with LoopbackAdbd(root, load_phone("android-8")) as daemon:
        assert shell(daemon, "command -v awk; echo rc=$?").strip() == "rc=1"


def test_taskset_pins_to_phone_cpus_and_fails_as_toybox_does(loopback: LoopbackAdbd) -> None:
    root = loopback.sandbox.root
    assert shell(loopback, "taskset c0 echo pinned; echo rc=$?").split() == ["pinned", "rc=0"]
    # toys/other/taskset.c: perror_exit("failed to %s pid %d's affinity", "set", getpid()), exit 1
    out = shell(loopback, "taskset 100 echo pinned; echo rc=$?")  # CPU 8: the Pixel 7 has 0-7
    assert out.startswith("taskset: failed to set pid ") and out.endswith("'s affinity: Invalid argument\nrc=1\n")
    assert shell(loopback, "taskset 0xc0 true; echo rc=$?") == "taskset: bad mask '0xc0'\nrc=1\n"
    set_faults(root, taskset_refused=True)  # on the running phone, as the cores go offline
    out = shell(loopback, "taskset c0 echo pinned; echo rc=$?")
    assert "pinned" not in out and "'s affinity: Invalid argument\nrc=1" in out
    set_faults(root, taskset_refused=False)
    assert shell(loopback, "taskset c0 echo pinned").strip() == "pinned"


def test_a_phone_made_with_taskset_refused_refuses(tmp_path: Path) -> None:
    phone = load_phone("galaxy-a51")
    phone.taskset_refused = True
    with LoopbackAdbd(tmp_path / "phone", phone) as daemon:
        assert "Invalid argument\nrc=1" in shell(daemon, "taskset f0 true; echo rc=$?")


@pytest.mark.skipif(os.geteuid() != 0, reason="the read-only result folder is the immutable attribute: root only")
def test_the_read_only_result_folder_refuses_writes_even_to_root(tmp_path: Path) -> None:
    phone = load_phone("pixel-7")
    phone.readonly_results = True
    root = tmp_path / "phone"
    daemon = LoopbackAdbd(root, phone).start()
    try:
        # what the agent's batch script does with its result folder, then what a benchmark writes there
        out = shell(
            daemon,
            "cd /data/local/tmp/hwnas && rm -rf res; mkdir -p res; echo 1 > res/0.csv; echo rc=$?; touch res/1.csv; echo rc=$?",
        )
        assert out.count("Operation not permitted") == 3 and out.count("rc=1") == 2, out
        assert list((root / RESULTS_DIR).iterdir()) == []
        set_faults(root, readonly_results=False)
        assert shell(daemon, "echo 1 > /data/local/tmp/hwnas/res/0.csv; echo rc=$?").strip() == "rc=0"
        set_faults(root, readonly_results=True)
    finally:
        daemon.stop()
    shutil.rmtree(root)  # stop() gave the folder back: nothing immutable is left behind


def test_the_binary_runner_measures_without_awk(android8: LoopbackAdbd, tmp_path: Path, model_cache_dir: Path) -> None:
    items = [ModelCache(model_cache_dir).item(k, "onnxruntime") for k in FMNIST_KEYS[:2]]
    launcher = write_launcher("onnxruntime_perf_test", tmp_path / "bin")
    dev = AdbDevice(android8.serial)
    try:
        runner = BinaryRunner(dev, "onnxruntime", 1, launcher, read_facts(dev))
        bursts = plan(items, ProtocolConfig(warmup=2, iterations=4, rounds=1), None)
        results = runner.run(bursts)
    finally:
        dev.close()
    assert all(r.error is None and len(r.samples_ms) == r.burst.iters for r in results), results
    assert all(x > 0 for r in results for x in r.samples_ms)
    # without awk the per-run files are read whole instead of reduced (and removed) on the phone
    assert len(list((android8.sandbox.root / "data/local/tmp/hwnas/res").glob("*.csv"))) == len(bursts)


def test_the_agent_fills_a_table_on_an_android_8_phone(server: LiveServer, tmp_path: Path, model_cache_dir: Path) -> None:
    port = free_port()
    phone = start_loopback(port, tmp_path / "phone", tmp_path / "loopback.log", "--model", "android-8")
    try:
        serial = f"127.0.0.1:{port}"
        dev = AdbDevice(serial)
        facts = read_facts(dev)
        dev.close()
        name = facts.default_name()
        keys = FMNIST_KEYS[:3]
        cache = ModelCache(model_cache_dir)
        for k in keys:
            cache.item(k, "onnxruntime")
        with server.client("agent") as c:
            c.put_device(name, facts.device_info())
        with server.client() as c:
            job = c.create_job(JobCreate(device=name, runtime="onnxruntime", threads=1, keys=keys))
        r = subprocess.run(
            agent_cmd(
                "run",
                "--serial",
                serial,
                "--server",
                server.url,
                "--token",
                server.agent_token,
                "--cache-dir",
                str(model_cache_dir),
                "--once",
                *FAST_PROTOCOL,
            ),
            capture_output=True,
            text=True,
            env=env(),
            timeout=240,
        )
        assert r.returncode == 0, r.stderr
        with server.client() as c:
            assert c.get_job(job.id).done == len(keys)
            lut = c.get_lut(name, runtime="onnxruntime", threads=1).lut
    finally:
        kill(phone, signal.SIGTERM)
    assert lut is not None and set(lut.entries) == set(keys)
    assert all(e.min_ms is not None and 0 < e.min_ms <= e.median_ms < 1000 for e in lut.entries.values()), lut.entries
