"""What the device list says about each device beyond what the agent registered: when it was last seen, and
whether it is a loopback (fake) phone.

"Last seen" is computed from what the server already stores rather than kept in a column of its own: a column
would put one more write on every claim and heartbeat (the hot path of issue 25), and every event it would record
already leaves a timestamp behind. All but one: a claim that finds no job (an idle agent polling) leaves no row, so
it alone is recorded, in ``devices.polled_at``, and at most once per ``POLL_MARK_S`` per device.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from hwnas.schemas import JobState
from profiler_server.models import Device, Job, MeasurementRun

# The agent registers only the ``ro.build.* / ro.product.* / ro.soc.* / ro.board.* / ro.hardware*`` properties
# (device_agent/deviceinfo.py); of those, the fake phone of ``device-agent loopback-device`` always has this build
# (device_agent/loopback/fakephone.py).
LOOPBACK_BUILD = "hwnas.loopback"

# How stale ``devices.polled_at`` may get while an agent keeps polling: an agent polls every few seconds, and a
# dashboard that says "seen 30 s ago" of it says enough; finer would write the device row on every poll.
POLL_MARK_S = 30.0


def is_loopback(props: dict[str, Any] | None) -> bool:
    """Whether a device's registered ``props`` are those of the agent's loopback (fake) phone."""
    android = (props or {}).get("android")
    return isinstance(android, dict) and android.get("ro.build.version.incremental") == LOOPBACK_BUILD


def mark_polled(session: Session, device_id: int, now: datetime) -> None:
    """Record that an agent asked for work for device ``device_id`` at ``now`` (and found none), unless a poll
    within the last ``POLL_MARK_S`` seconds already is: then the statement matches no row and writes nothing."""
    session.execute(
        update(Device)
        .where(Device.id == device_id, or_(Device.polled_at.is_(None), Device.polled_at < now - timedelta(seconds=POLL_MARK_S)))
        # updated_at is the device's registration (its onupdate would move it on any UPDATE): kept as it is.
        .values(polled_at=now, updated_at=Device.updated_at)
        .execution_options(synchronize_session=False)
    )


def last_seen_of(session: Session, devices: list[Device]) -> dict[int, datetime]:
    """Per device id: its latest activity — registered or updated (PUT /devices), a measurement upload, a job
    claimed or its lease renewed by an agent, or an agent's claim that found no job (``polled_at``).

    Uploads: a run's ``finished_at`` is the server's time of its latest batch. Claims and heartbeats: both set a
    job's ``updated_at``; a job never claimed (``agent`` unset) was only touched by the client that queued it, and
    a cancelled one last by the client that cancelled it, so neither counts.
    """
    out = {d.id: max(d.updated_at, d.polled_at or d.updated_at) for d in devices}
    if not out:
        return out
    ids = list(out)
    uploads = (
        select(MeasurementRun.device_id, func.max(MeasurementRun.finished_at))
        .where(MeasurementRun.device_id.in_(ids))
        .group_by(MeasurementRun.device_id)
    )
    claims = (
        select(Job.device_id, func.max(Job.updated_at))
        .where(Job.device_id.in_(ids), Job.agent.is_not(None), Job.state != JobState.cancelled.value)
        .group_by(Job.device_id)
    )
    for stmt in (uploads, claims):
        for device_id, at in session.execute(stmt):
            if at is not None and at > out[device_id]:
                out[device_id] = at
    return out
