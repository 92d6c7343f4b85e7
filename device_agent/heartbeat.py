"""A claimed job's lease, kept alive from a thread while the agent measures it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hwnas.client import ConflictError, ProfilerClient, ProfilerError
from hwnas.schemas import JobHeartbeat

log = logging.getLogger("device_agent")


class Heartbeat:
    """Keeps a job's lease alive from a thread; notices when it was lost."""

    def __init__(self, make_client: Callable[[], ProfilerClient], job_id: int, agent: str, lease_s: float) -> None:
        self.make_client = make_client
        self.job_id = job_id
        self.agent = agent
        self.lease_s = lease_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        interval = max(0.2, self.lease_s / 3.0)
        with self.make_client() as client:
            while not self._stop.wait(interval):
                try:
                    client.heartbeat(self.job_id, JobHeartbeat(agent=self.agent, lease_s=self.lease_s))
                except ConflictError as exc:
                    log.error("lost the lease of job %d: %s", self.job_id, exc.detail)
                    self.lost.set()
                    return
                except ProfilerError as exc:
                    log.warning("heartbeat of job %d failed (will retry): %s", self.job_id, exc)
