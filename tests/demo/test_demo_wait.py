"""Waiting for a profiling or network job ends as soon as the agent dies, not after the job timeout."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from search.app.demo import DemoError, _Run
from search.app.demo_model import Console, DemoConfig, Timings


class _Client:
    def __init__(self) -> None:
        self.polls = 0

    def get_job(self, job_id: int) -> SimpleNamespace:
        self.polls += 1
        return SimpleNamespace(id=job_id, state=SimpleNamespace(value="running"), total=6, done=1, failed=0, errors={})


class _Services:
    def __init__(self, dies_after: int) -> None:
        self.checks, self.dies_after = 0, dies_after

    def check_alive(self) -> None:
        self.checks += 1
        if self.checks > self.dies_after:
            raise DemoError("agent exited with code 0: done: 1 job(s) worked off (log: agent.log)")

    def get(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(log=Path(f"{name}.log"))


def _run(tmp_path: Path, services: _Services, timeout_s: float) -> _Run:
    config = DemoConfig.preset(True, out=tmp_path, progress=False, job_timeout_s=timeout_s)
    return _Run(config, tmp_path, Console(False), Timings(tmp_path / "timings.json", {}), services)  # type: ignore[arg-type]


def test_a_dead_agent_ends_the_wait_at_once(tmp_path: Path) -> None:
    run = _run(tmp_path, _Services(dies_after=2), timeout_s=600.0)
    t0 = time.monotonic()
    with pytest.raises(DemoError, match="agent exited"):
        run._wait_job(_Client(), 7)
    assert time.monotonic() - t0 < 10


def test_a_job_nobody_works_off_times_out(tmp_path: Path) -> None:
    run = _run(tmp_path, _Services(dies_after=10**6), timeout_s=1.0)
    with pytest.raises(DemoError, match=r"job 7 not finished after 1 s \(1/6 measured\); see agent.log"):
        run._wait_job(_Client(), 7)
