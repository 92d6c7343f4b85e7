"""What runs on the phone when the agent lets go: the loopback behaves like real adbd (a closed
``shell:`` stream leaves its command running), so the agent must end its own batch scripts; and the
benchmark programs get an absolute library path."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from device_agent import scriptpid
from device_agent.loopback.adbd import LoopbackAdbd
from device_agent.loopback.fakephone import load_phone
from device_agent.config import AgentConfig
from device_agent.jobloop import Agent
from device_agent.platforms.adb import AdbDevice
from device_agent.runtimes.base import Burst, Item
from device_agent.runtimes.binary import INLINE_LIMIT, BinaryRunner
from tests.agent.agent_support import kill, process_running, start_loopback
from tests.support.ports import free_port

WORKDIR = "data/local/tmp/hwnas"  # the agent's work folder inside a loopback root


def wait_until(cond: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def pipe_of(pid: int, fd: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{fd}")


def held_here(target: str) -> bool:
    """Whether this process (the in-process loopback) still has an fd on ``target`` (e.g. 'pipe:[123]')."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


@pytest.fixture
def killing_loopback(tmp_path: Path) -> Iterator[LoopbackAdbd]:
    daemon = LoopbackAdbd(tmp_path / "phone-k", load_phone("pixel-7"), kill_on_close=True).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def _first_line_then_close(serial: str, command: str) -> int:
    dev = AdbDevice(serial)
    try:
        out = ""
        for chunk in dev.stream(command, timeout_s=30):
            out += chunk
            if "\n" in out:
                break
    finally:
        dev.close()
    return int(out.split()[0])


def test_a_closed_shell_stream_leaves_its_command_running_as_real_adbd_does(loopback: LoopbackAdbd) -> None:
    root = loopback.sandbox.root
    # prints its pid, waits for 'go', proves it still runs, then writes to the closed stream (SIGPIPE)
    pid = _first_line_then_close(
        loopback.serial,
        "cd /data/local/tmp && echo $$; while [ ! -e go ]; do sleep 0.02; "
        "done; echo alive > alive; echo into-the-closed-stream; echo > after",
    )
    pipe = pipe_of(pid, 1)
    wait_until(lambda: not held_here(pipe), "the loopback let go of the command's output pipe")
    assert process_running(pid)  # no SIGHUP, no kill: the stream went, the command did not
    (root / "data/local/tmp/go").touch()
    wait_until(lambda: (root / "data/local/tmp/alive").exists(), "the command ran on after the close")
    wait_until(lambda: not process_running(pid), "the command died writing to the closed stream")
    assert not (root / "data/local/tmp/after").exists()  # SIGPIPE at its next write, as on a phone


def test_kill_on_close_kills_the_command_at_once(killing_loopback: LoopbackAdbd) -> None:
    pid = _first_line_then_close(killing_loopback.serial, "echo $$; exec sleep 300")
    wait_until(lambda: not process_running(pid), "the command was killed when its stream closed")


def _fake_perf_test(tmp_path: Path, body: str) -> Path:
    """An 'onnxruntime_perf_test' for the loopback phone: bare it prints the usage (so preflights pass)."""
    path = tmp_path / "onnxruntime_perf_test"
    path.write_text(
        "#!/bin/sh\n"
        'if [ $# -eq 0 ]; then echo "$LD_LIBRARY_PATH" > bare.env; '
        "echo 'usage: onnxruntime_perf_test [options...] model_path [result_file]'; exit 1; fi\n" + body
    )
    path.chmod(0o755)
    return path


def _items(tmp_path: Path, n: int) -> list[Burst]:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not a model: the fake program never reads it")
    item = Item("conv_k3_s1_o8@1x1x28x28", model, (1, 1, 28, 28))
    return [Burst(item, 1, 3) for _ in range(n)]


@pytest.mark.parametrize("bursts", [4, 40], ids=["inline-script", "pushed-script"])
def test_a_stopped_batch_leaves_no_benchmark_running_on_the_phone(loopback: LoopbackAdbd, tmp_path: Path, bursts: int) -> None:
    root = loopback.sandbox.root
    # Call 1 fails at once; every later call would run for 5 minutes. Each records "<script pid> <own pid>".
    fake = _fake_perf_test(
        tmp_path,
        'echo "$PPID $$" >> calls.pids\n'
        'if [ "$(wc -l < calls.pids)" -eq 1 ]; then echo "Run failed: fake"; exit 1; fi\n'
        "exec sleep 300\n",
    )
    dev = AdbDevice(loopback.serial)
    stop = threading.Event()
    stop.set()  # the agent was told to stop: the runner leaves after the first call that ends
    try:
        runner = BinaryRunner(dev, "onnxruntime", 1, fake)
        schedule = _items(tmp_path, bursts)
        assert (len(runner.script(schedule, "@@Bx@@")) > INLINE_LIMIT) == (bursts > 4)  # long ones go as a file
        results = runner.run(schedule, stop=stop)
    finally:
        dev.close()
    assert len(results) == 1 and results[0].error is not None and "exited 1" in results[0].error
    calls = root / WORKDIR / "calls.pids"
    pids = {int(p) for line in calls.read_text().split("\n") if line for p in line.split()}
    assert pids  # the script and at least the first call ran
    wait_until(lambda: not any(process_running(p) for p in pids), f"no process of the batch script runs on ({pids})")
    assert not list((root / WORKDIR / "run").glob("*.pid"))  # the pid file went with the script


def test_the_benchmark_program_gets_an_absolute_library_path(loopback: LoopbackAdbd, tmp_path: Path) -> None:
    root = loopback.sandbox.root
    lib = tmp_path / "libhwnas_fake.so"
    lib.write_bytes(b"\x7fELF")
    # The program changes folder before it loads its library: a relative path would no longer resolve.
    fake = _fake_perf_test(
        tmp_path, 'echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; cd /; ls "$LD_LIBRARY_PATH/libhwnas_fake.so"; exit 3\n'
    )
    dev = AdbDevice(loopback.serial)
    try:
        (result,) = BinaryRunner(dev, "onnxruntime", 1, fake, libs=[lib]).run(_items(tmp_path, 1))
        agent = Agent(
            dev, AgentConfig(binaries={"onnxruntime": fake}, runtimes=("onnxruntime",), libs=[lib], cache_dir=tmp_path / "cache")
        )
        agent.connect()
        agent.preflight()  # runs the program bare: it writes its library path to bare.env
    finally:
        dev.close()
    bin_dir = f"{root}/{WORKDIR}/bin"
    assert result.error is not None and f"LD_LIBRARY_PATH={bin_dir}" in result.error
    assert f"{bin_dir}/libhwnas_fake.so" in result.error and "No such file" not in result.error
    assert (root / WORKDIR / "bare.env").read_text().strip() == bin_dir


def _script_with_pid_file(serial: str, marker: str, orphan: bool = False) -> int:
    """A stand-in for a batch script: its pid file written as the script writes it, then it idles on the phone.

    ``orphan``: its parent shell exits at once, so init adopts it, as the scripts of a killed phone are
    adopted; an init that does not reap (some containers' pid 1) then keeps it as a zombie once it dies.
    """
    script = f"{scriptpid.write_line(marker)} && echo $$ && exec sleep 300"
    if orphan:
        script = f"sh -c '{script}' &"
    return _first_line_then_close(serial, f"mkdir -p /{WORKDIR} && cd /{WORKDIR} || exit 1; {script}")


def _kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not process_running(pid), f"script {pid} died of SIGKILL")


def test_the_first_staging_removes_pid_files_of_scripts_that_died(loopback: LoopbackAdbd, tmp_path: Path) -> None:
    run = loopback.sandbox.root / WORKDIR / scriptpid.PID_DIR
    dead = _script_with_pid_file(loopback.serial, "@@Bdead@@", orphan=True)
    alive = _script_with_pid_file(loopback.serial, "@@Balive@@")
    try:
        _kill9(dead)  # an agent or phone killed mid-batch: the script never reached its `rm -f` line
        assert {p.name for p in run.glob("*.pid")} == {"Bdead.pid", "Balive.pid"}
        dev = AdbDevice(loopback.serial)
        try:
            BinaryRunner(dev, "onnxruntime", 1, _fake_perf_test(tmp_path, "exit 0\n")).prepare([])  # an agent starts
        finally:
            dev.close()
        assert {p.name for p in run.glob("*.pid")} == {"Balive.pid"}  # a running script keeps its file
    finally:
        os.kill(alive, signal.SIGKILL)


def test_a_restarted_phone_removes_pid_files_of_scripts_that_died(tmp_path: Path) -> None:
    root = tmp_path / "phone"
    port = free_port()
    phone = start_loopback(port, root, tmp_path / "loopback.log", "--no-worker")
    run = root / WORKDIR / scriptpid.PID_DIR
    try:
        dead = _script_with_pid_file(f"127.0.0.1:{port}", "@@Bdead@@")
        alive = _script_with_pid_file(f"127.0.0.1:{port}", "@@Balive@@")
        kill(phone)  # SIGKILL: the phone's shells are in sessions of their own and outlive it
        _kill9(dead)  # ...until SIGPIPE ends them; here at once
        assert {p.name for p in run.glob("*.pid")} == {"Bdead.pid", "Balive.pid"}
        phone = start_loopback(port, root, tmp_path / "loopback.log", "--no-worker")
        # the phone listens only once its sandbox is set up: the stale file is gone by then
        assert {p.name for p in run.glob("*.pid")} == {"Balive.pid"}
        os.kill(alive, signal.SIGKILL)
    finally:
        kill(phone)
