"""What the device list says about each device beyond what the agent registered: when it was last seen, and
whether it is a loopback (fake) phone.

"Last seen" is computed from what the server already stores rather than kept in a column of its own: a column
would put one more write on every claim and heartbeat (the hot path of issue 25), and every event it would record
already leaves a timestamp behind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hwnas.schemas import JobState
from profiler_server.models import Device, Job, MeasurementRun

# The fake phone of ``device-agent loopback-device`` says what it is in ``ro.hwnas.loopback``, but the agent
# registers only the ``ro.build.* / ro.product.* / ro.soc.* / ro.board.* / ro.hardware*`` properties
# (device_agent/deviceinfo.py); of those, the fake phone's build is always this one (device_agent/fakephone.py).
LOOPBACK_BUILD = "hwnas.loopback"


def is_loopback(props: dict[str, Any] | None) -> bool:
    """Whether a device's registered ``props`` are those of the agent's loopback (fake) phone."""
    android = (props or {}).get("android")
    return isinstance(android, dict) and android.get("ro.build.version.incremental") == LOOPBACK_BUILD


def last_seen_of(session: Session, devices: list[Device]) -> dict[int, datetime]:
    """Per device id: its latest activity — registered or updated (PUT /devices), a measurement upload, or a job
    claimed or its lease renewed by an agent.

    Uploads: a run's ``finished_at`` is the server's time of its latest batch. Claims and heartbeats: both set a
    job's ``updated_at``; a job never claimed (``agent`` unset) was only touched by the client that queued it, and
    a cancelled one last by the client that cancelled it, so neither counts.
    """
    out = {d.id: d.updated_at for d in devices}
    if not out:
        return out
    ids = list(out)
    uploads = (select(MeasurementRun.device_id, func.max(MeasurementRun.finished_at))
               .where(MeasurementRun.device_id.in_(ids)).group_by(MeasurementRun.device_id))
    claims = (select(Job.device_id, func.max(Job.updated_at))
              .where(Job.device_id.in_(ids), Job.agent.is_not(None), Job.state != JobState.cancelled.value)
              .group_by(Job.device_id))
    for stmt in (uploads, claims):
        for device_id, at in session.execute(stmt).tuples():
            if at is not None and at > out[device_id]:
                out[device_id] = at
    return out
