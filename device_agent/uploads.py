"""Uploading measured batches, operators and whole networks alike, without losing one.

A server that is down or failing (5xx) is retried with back-off for ``--upload-deadline-s``, then the batch
waits in the spool folder and the agent measures on; the spool goes up before every claim, as soon as the
server answers again. A batch the server refuses (4xx) is spooled too and stops the job (``ServerError``);
a spooled one it refuses for good is set aside in ``spool/rejected``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from hwnas.client import ApiError, ProfilerClient, ProfilerError, ServerUnreachable
from hwnas.schemas import MeasurementBatch, MeasurementBatchResult, NetworkMeasurementBatch

from device_agent.errors import ServerError

log = logging.getLogger("device_agent")
SPOOL_NETWORKS = ".networks.json"  # suffix of a spooled whole-network batch (operator batches: plain .json)


class Uploads:
    """POSTs batches through ``require_client()`` (which raises when the agent has no server), spooling into
    ``folder`` what the server does not take."""

    def __init__(self, require_client: Callable[[], ProfilerClient], folder: Path, deadline_s: float) -> None:
        self.require_client = require_client
        self.folder = folder
        self.deadline_s = deadline_s

    def post(self, body: MeasurementBatch | NetworkMeasurementBatch) -> None:
        """POST ``body`` with retries until the upload deadline, then spool it (see the class)."""
        client = self.require_client()
        what = "network result(s)" if isinstance(body, NetworkMeasurementBatch) else "result(s)"
        delay = 1.0
        deadline = time.monotonic() + self.deadline_s
        while True:
            try:
                res = _send(client, body)
                log.info(
                    "uploaded %d %s%s (run %s%s)",
                    res.stored,
                    what,
                    f", {res.duplicates} already stored" if res.duplicates else "",
                    str(body.run_id)[:8],
                    f", job {body.job_id}" if body.job_id is not None else "",
                )
                return
            except ServerUnreachable as exc:
                # A server that is down is transient too: keep the batch and measure on; the spool goes up when
                # the server answers again (serve() tries it before every claim).
                if time.monotonic() > deadline:
                    spooled = self.spool(body)
                    log.error("server unreachable (%s); %s saved to %s, sent when the server is back", exc, what, spooled)
                    return
                log.warning("upload of %d %s failed (%s); retrying in %.0f s", len(body.results), what, exc, delay)
                delay = _back_off(delay, deadline)
            except ApiError as exc:
                if exc.status < 500:
                    spooled = self.spool(body)
                    raise ServerError(f"server rejected the {what} ({exc}); batch saved to {spooled}") from None
                # A server fault (5xx) is the server's, not the batch's: retry, then keep the batch and serve on.
                if time.monotonic() > deadline:
                    spooled = self.spool(body)
                    log.error("the server kept failing (%s); %s saved to %s, sent when the server is back", exc, what, spooled)
                    return
                log.warning(
                    "upload of %d %s failed with a server error (%s); retrying in %.0f s", len(body.results), what, exc, delay
                )
                delay = _back_off(delay, deadline)
            except ProfilerError as exc:
                spooled = self.spool(body)
                raise ServerError(f"server rejected the {what} ({exc}); batch saved to {spooled}") from None

    def spool(self, body: MeasurementBatch | NetworkMeasurementBatch) -> Path:
        """Keep a batch the server did not take, for ``flush`` (before every claim, and at the next start)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        kind = SPOOL_NETWORKS if isinstance(body, NetworkMeasurementBatch) else ".json"
        path = self.folder / f"{body.run_id}-{time.time_ns() // 1000}{kind}"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(body.model_dump_json())
        tmp.replace(path)  # whole or not at all: a batch cut short by a kill is not read back as garbage
        return path

    def spooled(self) -> list[Path]:
        """Batches waiting for the server (operators and whole networks), oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))

    def flush(self) -> int:
        """Upload batches the server did not take before (idempotent: duplicates are not stored twice).

        Stops at the first batch the server cannot take now (down, failing); one it refuses for good
        (a 4xx other than a token's) is moved to ``spool/rejected`` so that it does not hold up the rest.
        """
        sent = 0
        client = self.require_client()
        for path in self.spooled():
            try:
                text = path.read_text()
                body = (NetworkMeasurementBatch if path.name.endswith(SPOOL_NETWORKS) else MeasurementBatch).model_validate_json(
                    text
                )
            except (OSError, ValueError) as exc:
                log.error("spooled batch %s cannot be read (%s): moved to %s", path.name, exc, _set_aside(path))
                continue
            try:
                _send(client, body)
            except ApiError as exc:
                if 400 <= exc.status < 500 and exc.status not in (401, 403, 408, 429):
                    log.error("the server refuses spooled batch %s (%s): moved to %s", path.name, exc, _set_aside(path))
                    continue
                log.warning("spooled batch %s not uploaded yet: %s", path.name, exc)
                break
            except ProfilerError as exc:
                log.warning("spooled batch %s not uploaded yet: %s", path.name, exc)
                break
            path.unlink()
            sent += 1
        return sent


def _send(client: ProfilerClient, body: MeasurementBatch | NetworkMeasurementBatch) -> MeasurementBatchResult:
    """POST a batch to its endpoint: operators to /measurements, whole networks to /networks/measurements."""
    if isinstance(body, NetworkMeasurementBatch):
        return client.post_network_measurements(body)
    return client.post_measurements(body)


def _set_aside(path: Path) -> Path:
    """Move a spooled batch that can never go up to ``spool/rejected`` (kept for a person to look at)."""
    rejected = path.parent / "rejected"
    rejected.mkdir(exist_ok=True)
    return path.replace(rejected / path.name)


def _back_off(delay: float, deadline: float) -> float:
    """Sleep ``delay`` (not past ``deadline``, so the last try comes on time); the next, doubled delay (≤ 15 s)."""
    time.sleep(min(delay, max(0.0, deadline - time.monotonic()) + 0.01))
    return min(15.0, delay * 2)
