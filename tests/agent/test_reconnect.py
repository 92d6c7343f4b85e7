"""A phone that goes away (a reboot, a Wi-Fi outage) is reconnected with back-off for ``--reconnect-s``.

In-process: ``Agent.with_reconnect`` against a loopback phone that is switched off and on again
on the same port, with waits of milliseconds so that an outage of many attempts takes a moment.
End to end: ``device-agent run`` loses its phone mid-job; the phone comes back after several failed
reconnects and the job completes — or it stays away past a short ``--reconnect-s`` and the job is
given back with exit code 3.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device_agent.loopback.adbd import LoopbackAdbd
from device_agent.errors import DeviceUnreachable
from device_agent.loopback.fakephone import load_phone
from device_agent.config import AgentConfig
from device_agent.jobloop import Agent
from device_agent.platforms.adb import AdbDevice
from hwnas.schemas import JobClaim, JobState
from tests.agent.agent_support import SLOW_KEYS, env, kill, start_loopback
from tests.agent.test_agent_end_to_end import SLOW_RUN, _agent, _check_table, _phone_job, _wait_done, _wait_for_text
from tests.support.live_server import LiveServer, start_live_server

RECONNECTING = "reconnecting in"


def _count(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in list(caplog.records))


def _fast_agent(dev: AdbDevice, tmp_path: Path, reconnect_s: float) -> Agent:
    cfg = AgentConfig(
        reconnect_s=reconnect_s, reconnect_first_delay_s=0.01, reconnect_max_delay_s=0.05, cache_dir=tmp_path / "cache"
    )
    return Agent(dev, cfg)


def test_an_outage_of_many_attempts_is_outlasted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="device_agent")
    daemon = LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7")).start()
    port = daemon.port
    dev = AdbDevice(daemon.serial)
    agent = _fast_agent(dev, tmp_path, reconnect_s=120)
    assert dev.run("echo before").output == "before\n"
    daemon.stop()  # switched off
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["result"] = agent.with_reconnect(lambda: dev.run("echo after").output)
        except Exception as exc:  # noqa: BLE001 - reported to the test below
            out["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    again = None
    try:
        # More failed attempts than the 8 the agent used to allow in all, then the phone is back.
        deadline = time.monotonic() + 60
        while _count(caplog, RECONNECTING) < 12 and "error" not in out:
            assert time.monotonic() < deadline, caplog.text[-2000:]
            time.sleep(0.02)
        again = LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7"), port=port).start()
        worker.join(timeout=60)
    finally:
        out.setdefault("error", None)
        agent.stop.set()
        worker.join(timeout=10)
        dev.close()
        if again is not None:
            again.stop()
    assert out["error"] is None and out.get("result") == "after\n", out
    assert _count(caplog, RECONNECTING) >= 12
    assert re.search(r"waited \d+ s of 120 s, --reconnect-s", caplog.text)
    assert "reconnected to 127.0.0.1" in caplog.text


def test_a_phone_that_stays_away_past_the_deadline_is_given_up(tmp_path: Path) -> None:
    daemon = LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7")).start()
    dev = AdbDevice(daemon.serial)
    agent = _fast_agent(dev, tmp_path, reconnect_s=0.5)
    dev.connect()
    daemon.stop()
    start = time.monotonic()
    with pytest.raises(DeviceUnreachable) as err:
        agent.with_reconnect(lambda: dev.run("echo never"), first=True)
    took = time.monotonic() - start
    dev.close()
    assert 0.5 <= took < 10, took
    message = str(err.value)
    assert "unreachable for" in message and "--reconnect-s 0.5" in message
    assert int(re.search(r"\((\d+) reconnect", message).group(1)) >= 3  # type: ignore[union-attr]


def test_a_stop_request_ends_the_wait(tmp_path: Path) -> None:
    daemon = LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7")).start()
    dev = AdbDevice(daemon.serial)
    agent = Agent(dev, AgentConfig(reconnect_s=600, cache_dir=tmp_path / "cache"))  # the default waits
    dev.connect()
    daemon.stop()
    timer = threading.Timer(0.5, agent.stop.set)  # Ctrl-C while it waits
    timer.start()
    start = time.monotonic()
    with pytest.raises(DeviceUnreachable, match="stopped while reconnecting"):
        agent.with_reconnect(lambda: dev.run("echo never"))
    timer.join()
    dev.close()
    assert time.monotonic() - start < 10


# -- end to end -----------------------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """SQLite only (overrides the both-databases fixture): the reboot concerns the phone, not the database."""
    srv = start_live_server(tmp_path / "srv")
    try:
        yield srv
    finally:
        srv.stop()


def test_a_phone_rebooting_mid_job_is_waited_for_and_the_job_completes(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path, tmp_path: Path
) -> None:
    port, root, proc = phone
    keys = SLOW_KEYS[:6]
    name, job = _phone_job(server, port, model_cache_dir, keys)
    log_path = tmp_path / "agent.log"
    with open(log_path, "w") as log:
        agent = subprocess.Popen(
            _agent(server, port, model_cache_dir, *SLOW_RUN, "--reconnect-s", "120"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env(),
        )
        restarted = None
        try:
            _wait_done(server, job.id, 2)
            kill(proc)  # the phone goes away mid-job...
            # ...for several failed reconnects (1 s, 2 s, 4 s apart): longer than a dropped socket
            deadline = time.monotonic() + 60
            while log_path.read_text().count(RECONNECTING) < 4:
                assert time.monotonic() < deadline and agent.poll() is None, log_path.read_text()[-3000:]
                time.sleep(0.05)
            restarted = start_loopback(port, root, tmp_path / "loopback.log")  # ...and comes back
            assert agent.wait(timeout=180) == 0, log_path.read_text()[-3000:]
        finally:
            kill(agent)
            if restarted is not None:
                kill(restarted, signal.SIGTERM)
    text = log_path.read_text()
    assert re.search(r"reconnected to 127\.0\.0\.1:\d+ after \d+ s", text), text[-3000:]
    assert "of 120 s, --reconnect-s" in text
    _check_table(server, name, keys, job.id)  # every key once, none failed


def test_a_phone_that_stays_away_past_reconnect_s_gets_its_job_given_back(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path, tmp_path: Path
) -> None:
    port, _, proc = phone
    keys = SLOW_KEYS[:6]
    name, job = _phone_job(server, port, model_cache_dir, keys)
    log_path = tmp_path / "agent.log"
    with open(log_path, "w") as log:
        agent = subprocess.Popen(
            _agent(server, port, model_cache_dir, *SLOW_RUN, "--reconnect-s", "3"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env(),
        )
        try:
            _wait_done(server, job.id, 2)
            kill(proc)  # gone for good
            _wait_for_text(log_path, "device-agent: error:", timeout_s=120)
            rc = agent.wait(timeout=60)
        finally:
            kill(agent)
    text = log_path.read_text()
    assert rc == 3, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith("device-agent: error: 127.0.0.1:") and "--reconnect-s 3)" in last, last
    assert re.search(r"unreachable for [3-9] s", last), last  # waited the deadline, not less
    assert f"giving job {job.id} back" in text and "Traceback" not in text
    with server.client() as c:
        after = c.get_job(job.id)
    # what was measured is kept, nothing is blamed on the operators...
    assert after.state == JobState.queued and after.failed == 0 and 2 <= after.done < len(keys)
    with server.client(role="agent") as c:  # ...and the lease was given back at once, not left to run out
        again = c.claim_job(JobClaim(device=name, agent="another", lease_s=60))
    assert again is not None and again.id == job.id
