"""Ctrl-C, SIGTERM or a failure during the demo stops the server and agent: no process is left behind."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from search.app.demo import DemoConfig, DemoError, prepare_out, run_demo
from tests.demo.procs import TINY, processes_mentioning, services, start_demo, wait_gone


def _wait_for_agent(proc, out: Path, timeout_s: float = 120.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = services(out).get("running", {})
        if "server" in running and "agent" in running:
            return running
        if proc.poll() is not None:
            pytest.fail(f"demo exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the demo did not start its server and agent in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_stops_server_and_agent(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "demo-output"
    proc = start_demo(out, *TINY)
    try:
        running = _wait_for_agent(proc, out)
        assert all(pid > 0 for pid in running.values())
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted: server and agent stopped" in stderr
    assert "Traceback" not in stderr
    assert wait_gone(list(running.values())) == []
    assert processes_mentioning(str(out)) == []
    assert services(out)["running"] == {}


def test_agent_failure_is_one_line_and_stops_the_server(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    # An agent that cannot start (a benchmark binary that is not there) ends the demo with its error.
    config = DemoConfig.preset(
        True, out=out, progress=False, agent_args=["--benchmark-binary", str(tmp_path / "missing_onnxruntime_perf_test")]
    )
    with pytest.raises(DemoError, match=r"agent exited with code \d+.*missing_onnxruntime_perf_test.*not found"):
        run_demo(config)
    started = services(out)["started"]
    assert set(started) == {"server", "agent"}
    assert wait_gone(list(started.values())) == []
    assert processes_mentioning(str(out)) == []


def test_refuses_a_folder_that_is_not_a_demo_output(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not a demo output folder"):
        prepare_out(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_replaces_a_previous_demo_folder(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    prepare_out(out)
    (out / "report.md").write_text("old")
    prepare_out(out)
    assert not (out / "report.md").exists()
    assert (out / ".hwnas-demo").is_file()


def test_port_in_use_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DemoError, match=r"server exited with code \d+.*\(log: .*server\.log\)"):
            run_demo(DemoConfig.preset(True, out=out, port=port, progress=False))
    started = services(out)["started"]
    assert list(started) == ["server"]
    assert wait_gone(list(started.values())) == []


def test_missing_data_set_fails_before_starting_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWNAS_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(DemoError, match="Fashion-MNIST not found in .*nowhere: the demo needs it .*HWNAS_FASHION_MNIST"):
        run_demo(DemoConfig.preset(True, out=tmp_path / "demo-output", progress=False))
    assert not (tmp_path / "demo-output").exists()
