"""The owner rule: who may write what in a shared lab (docs/server.md, "Who may write what").

One rule for every write, checked inside the write's transaction against the rows it writes:

* a device belongs to the agent token that registered it first (``devices.owner``); an agent token
  writes for a device — registers it, uploads measurements and network results, claims its jobs,
  renews their leases, fails their items, stores its tables' calibrations — only when it owns the
  device or an admin granted it the device (``token create --device``);
* a job belongs to the client token that created it: only that token cancels it;
* an imported table belongs to nobody but the admins: only an admin changes anything about it;
* an admin may do everything.

Every refusal is a 403 whose message names the rule and the owner, so the caller knows whose token to use.
"""

from __future__ import annotations

from typing import Protocol

from profiler_server.errors import Forbidden, field_error
from profiler_server.models import Device, Job

# Owner of devices created by a table import: no agent token has this name, so no agent may change them.
IMPORT_OWNER = "(imported)"

DEVICE_RULE = "owner rule: an agent token writes only for devices it registered or an admin granted it (token create --device)"
JOB_RULE = "owner rule: a job is cancelled by the client token that created it, or an admin"
CALIBRATION_RULE = (
    "owner rule: a table's calibration is written by its device's owner (the agent token that registered it, "
    "or one an admin granted the device) or an admin; a client token's fit is not stored"
)
IMPORTED_RULE = "owner rule: an imported table is read-only for everyone but admins"


class Actor(Protocol):
    """Who makes a request: the fields of ``api.deps.Caller`` this rule reads."""

    @property
    def name(self) -> str | None: ...

    @property
    def role(self) -> str | None: ...

    @property
    def devices(self) -> frozenset[str] | None: ...


def is_admin(actor: Actor | None) -> bool:
    """None stands for the server's own command line (``profiler-server import``), which acts as an admin."""
    return actor is None or actor.role == "admin"


def granted(actor: Actor, device: str) -> bool:
    """Whether an admin granted ``actor``'s token ``device`` when creating it."""
    return actor.devices is not None and device in actor.devices


def check_token_devices(actor: Actor | None, device: str, field: str = "device") -> None:
    """403 when ``actor`` is an agent token limited to other devices (checked before any database work)."""
    if actor is not None and actor.role == "agent" and actor.devices is not None and device not in actor.devices:
        raise Forbidden(
            f"{DEVICE_RULE}: the agent token {actor.name!r} acts for {', '.join(sorted(actor.devices))} only, not {device!r}",
            [field_error(field, "not a device of this agent token")],
        )


def check_device_write(actor: Actor | None, device: Device, action: str, field: str = "device") -> None:
    """403 unless ``actor`` may ``action`` (e.g. "upload measurements") for ``device``.

    A device without an owner (created by an admin, or before owners existed) is taken by the first agent
    token that registers it (PUT /devices, see ``devices.put_device``); until then no agent writes for it.
    """
    if is_admin(actor):
        return
    assert actor is not None
    check_token_devices(actor, device.name, field)
    if actor.role != "agent":
        raise Forbidden(f"{DEVICE_RULE}: a {actor.role} token may not {action}", [field_error(field, "agent tokens only")])
    if device.owner == actor.name or granted(actor, device.name):
        return
    if device.owner == IMPORT_OWNER:
        raise Forbidden(
            f"{IMPORTED_RULE}: device {device.name!r} was created by a table import; agent token {actor.name!r} "
            f"may not {action} for it (register the phone under another name)",
            [field_error(field, "an imported device")],
        )
    if device.owner is None:
        raise Forbidden(
            f"{DEVICE_RULE}: device {device.name!r} has no owner yet; register it first (PUT /devices/{device.name}) "
            f"to {action} for it",
            [field_error(field, "not registered by this agent token")],
        )
    raise Forbidden(
        f"{DEVICE_RULE}: device {device.name!r} is registered by the agent token {device.owner!r}; "
        f"{actor.name!r} may not {action} for it",
        [field_error(field, "registered by another agent token")],
    )


def check_job_cancel(actor: Actor | None, job: Job) -> None:
    """403 unless ``actor`` created ``job`` (or is an admin)."""
    if is_admin(actor) or (actor is not None and job.created_by is not None and job.created_by == actor.name):
        return
    assert actor is not None
    by = f"the client token {job.created_by!r}" if job.created_by else "an admin"
    raise Forbidden(
        f"{JOB_RULE}: job {job.id} was created by {by}, not {actor.name!r}", [field_error("job_id", "created by another token")]
    )


def check_calibration_write(actor: Actor | None, device: Device, imported: bool) -> None:
    """403 unless ``actor`` may store the calibration of a table of ``device`` (``imported``: the table was imported)."""
    if is_admin(actor):
        return
    assert actor is not None
    if imported:
        raise Forbidden(
            f"{IMPORTED_RULE}: its calibration is an admin's to set, not {actor.name!r}'s",
            [field_error("device", "an imported, read-only table")],
        )
    if actor.role != "agent" or not (device.owner == actor.name or granted(actor, device.name)):
        owner = f"the agent token {device.owner!r}" if device.owner and device.owner != IMPORT_OWNER else "no agent token"
        raise Forbidden(
            f"{CALIBRATION_RULE}: device {device.name!r} is owned by {owner}; the {actor.role} token "
            f"{actor.name!r} may not change what every search of this table applies",
            [field_error("device", "not the device's owner or an admin")],
        )
