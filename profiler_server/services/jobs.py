"""Profiling jobs: keys to measure on one table; agents claim a job with a lease.

A job holds operator keys (``job_items``) and whole networks (``job_networks``); both count
towards its progress, and an agent measures them in the same interleaved rounds.

A job is claimable while it is not finished and nobody holds a live lease on it, so a lease
that runs out puts the job back in the queue. Claims never hand one job to two agents: on
PostgreSQL the candidate row is taken with ``FOR UPDATE SKIP LOCKED``; on SQLite the claim
runs under ``BEGIN IMMEDIATE`` (one writer at a time). On both, the final UPDATE re-checks
the lease, so a claim can only succeed on a job that is still free.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from hwnas import schemas
from hwnas.schemas import JobState
from profiler_server.errors import Conflict, Forbidden, NotFound, field_error, reject_bad_keys
from profiler_server.models import Device, ItemState, Job, JobItem, JobKind, JobNetwork, Network, Operator, utcnow
from profiler_server.services.device_activity import mark_polled
from profiler_server.services.devices import find_device
from profiler_server.services.job_networks import networks_of
from profiler_server.services.ownership import Actor, check_device_write, check_job_cancel
from profiler_server.services.provenance import refuse_imported
from profiler_server.services import networks as nets
from profiler_server.services.luts import present_operator_ids
from profiler_server.services.operators import ensure_operators
from profiler_server.services.sql import is_postgres

OPEN_STATES = (JobState.queued.value, JobState.running.value)
CLAIM_ATTEMPTS = 5


def find_job(session: Session, job_id: int, field: str = "job_id", for_update: bool = False) -> Job:
    """Job ``job_id`` or a 404 naming it."""
    stmt = select(Job).where(Job.id == job_id)
    if for_update and is_postgres(session):
        stmt = stmt.with_for_update()
    job = session.scalar(stmt)
    if job is None:
        raise NotFound(f"unknown job {job_id}", [field_error(field, f"no job with id {job_id}")])
    return job


def create_job(session: Session, body: schemas.JobCreate, created_by: str | None = None) -> schemas.JobCreated:
    """Queue the keys and networks of ``body`` that the table lacks (all of them with ``force``)."""
    reject_bad_keys(body.keys, "keys")
    device = find_device(session, body.device)
    refuse_imported(session, body.device, device.id, body.runtime, body.threads, "profiling jobs")
    keys = list(dict.fromkeys(body.keys))
    ops = ensure_operators(session, keys)
    present = present_operator_ids(session, device.id, body.runtime, body.threads, list(ops.values()))
    todo = keys if body.force else [k for k in keys if ops[k] not in present]
    net_ids = nets.ensure_networks(session, body.networks)
    nets_present = nets.present_network_ids(session, device.id, body.runtime, body.threads, list(net_ids.values()))
    todo_nets = [n.arch_id for n in body.networks if body.force or net_ids[n.arch_id] not in nets_present]
    job = Job(
        kind=JobKind.networks.value if body.networks else JobKind.operators.value,
        device_id=device.id,
        runtime=body.runtime,
        threads=body.threads,
        state=JobState.queued.value if todo or todo_nets else JobState.done.value,
        created_by=created_by,
    )
    session.add(job)
    session.flush()
    if todo:
        session.execute(
            JobItem.__table__.insert(),  # type: ignore[attr-defined]
            [
                {"job_id": job.id, "operator_id": ops[k], "state": ItemState.pending.value, "updated_at": job.created_at}
                for k in todo
            ],
        )
    if todo_nets:
        session.execute(
            JobNetwork.__table__.insert(),  # type: ignore[attr-defined]
            [
                {"job_id": job.id, "network_id": net_ids[a], "state": ItemState.pending.value, "updated_at": job.created_at}
                for a in todo_nets
            ],
        )
    already = sum(1 for k in keys if ops[k] in present) + sum(1 for n in body.networks if net_ids[n.arch_id] in nets_present)
    total = len(todo) + len(todo_nets)
    return schemas.JobCreated(id=job.id, state=schemas.JobState(job.state), total=total, already_present=already, pending=total)


def _pending_keys(session: Session, job_id: int, limit: int | None = None) -> list[str]:
    return list(
        session.scalars(
            select(Operator.key)
            .join(JobItem, JobItem.operator_id == Operator.id)
            .where(JobItem.job_id == job_id, JobItem.state == ItemState.pending.value)
            .order_by(JobItem.id)
            .limit(limit)
        )
    )


def _pending_networks(session: Session, job_id: int, limit: int | None = None) -> list[Network]:
    return list(
        session.scalars(
            select(Network)
            .join(JobNetwork, JobNetwork.network_id == Network.id)
            .where(JobNetwork.job_id == job_id, JobNetwork.state == ItemState.pending.value)
            .order_by(JobNetwork.id)
            .limit(limit)
        )
    )


def _lease_free(now: datetime):
    return or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)


def claim_job(
    session: Session, body: schemas.JobClaim, holder: str | None = None, max_claims: int | None = None, actor: Actor | None = None
) -> schemas.JobClaimed | None:
    """Lease the oldest claimable job of ``body.device`` to ``body.agent`` (token ``holder``); None when there is none.

    A job already claimed ``max_claims`` times without finishing (its items keep killing agents, or
    agents keep dying on it) is failed with that reason instead of being handed out for ever.
    """
    device = find_device(session, body.device)
    check_device_write(actor, device, "claim jobs")
    attempts = 0
    while attempts < CLAIM_ATTEMPTS:
        now = utcnow()
        stmt = (
            select(Job.id, Job.claims)
            .where(Job.device_id == device.id, Job.state.in_(OPEN_STATES), _lease_free(now))
            .order_by(Job.id)
            .limit(1)
        )
        if is_postgres(session):
            stmt = stmt.with_for_update(skip_locked=True)
        row = session.execute(stmt).first()
        if row is None:
            mark_polled(session, device.id, now)  # an idle agent's poll leaves no job row behind: its one trace
            return None
        job_id, claims = row
        if max_claims is not None and claims >= max_claims:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    state=JobState.failed.value,
                    lease_expires_at=None,
                    updated_at=now,
                    reason=f"claimed {claims} times without finishing (MAX_CLAIMS={max_claims}): agents kept "
                    "stopping on its items; see the server log and the agents' logs",
                )
                .execution_options(synchronize_session=False)
            )
            continue  # a failed job does not count as a contended attempt
        attempts += 1
        expires = now + timedelta(seconds=body.lease_s)
        taken = session.execute(  # type: ignore[attr-defined]
            update(Job)
            .where(Job.id == job_id, Job.state.in_(OPEN_STATES), _lease_free(now))
            .values(
                state=JobState.running.value,
                agent=body.agent,
                holder=holder,
                lease_expires_at=expires,
                claims=Job.claims + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken == 1:
            job = find_job(session, job_id)
            networks = [
                schemas.NetworkSpec(arch_id=n.arch_id, arch=dict(n.document), input_shape=list(n.input_shape))
                for n in _pending_networks(session, job.id)
            ]
            return schemas.JobClaimed(
                id=job.id,
                device=device.name,
                runtime=job.runtime,
                threads=job.threads,
                keys=_pending_keys(session, job.id),
                networks=networks,
                lease_expires_at=expires,
            )
    raise Conflict("too much contention on the job queue; retry the claim")


def check_holder(job: Job, holder: str | None) -> None:
    """403 unless token ``holder`` holds the job's lease (``None``: an admin, who may act for anyone)."""
    if holder is not None and job.holder is not None and job.holder != holder:
        raise Forbidden(
            f"job {job.id} is leased to the agent token {job.holder!r}, not to {holder!r}",
            [field_error("job_id", "leased by another agent token")],
        )


def heartbeat(
    session: Session, job_id: int, body: schemas.JobHeartbeat, holder: str | None = None, actor: Actor | None = None
) -> Job:
    """Extend the lease of ``body.agent`` on job ``job_id``; 409 when another agent holds it or it is finished."""
    job = find_job(session, job_id, for_update=True)
    check_device_write(actor, job.device, "renew leases", field="job_id")
    now = utcnow()
    if job.state not in OPEN_STATES:
        raise Conflict(f"job {job_id} is {job.state}; nothing to extend", [field_error("job_id", f"job is {job.state}")])
    check_holder(job, holder)
    if job.agent != body.agent:
        holder = f"held by agent {job.agent!r}" if job.agent else "not claimed"
        raise Conflict(f"job {job_id} is {holder}, not by {body.agent!r}", [field_error("agent", holder)])
    # An expired lease the same agent still holds (nobody re-claimed it) may be renewed.
    job.lease_expires_at = now + timedelta(seconds=body.lease_s)
    job.state = JobState.running.value
    session.flush()
    return job


def fail_key(session: Session, job_id: int, body: schemas.JobFail, holder: str | None = None, actor: Actor | None = None) -> Job:
    """Record that ``body.key`` (or network ``body.arch_id``) of job ``job_id`` could not be measured.

    Only the token holding the job's lease may (an agent whose lease another agent took over may not).
    """
    job = find_job(session, job_id, for_update=True)
    check_device_write(actor, job.device, "fail job items", field="job_id")
    if job.state not in OPEN_STATES:
        raise Conflict(
            f"job {job_id} is {job.state}; its items can no longer fail", [field_error("job_id", f"job is {job.state}")]
        )
    if job.holder is None and holder is not None:
        raise Conflict(f"job {job_id} is not claimed; claim it before failing its items", [field_error("job_id", "not claimed")])
    check_holder(job, holder)
    item: JobItem | JobNetwork | None
    if body.arch_id is not None:
        item = session.scalar(
            select(JobNetwork)
            .join(Network, Network.id == JobNetwork.network_id)
            .where(JobNetwork.job_id == job_id, Network.arch_id == body.arch_id)
        )
        if item is None:
            raise NotFound(f"job {job_id} has no network {body.arch_id!r}", [field_error("arch_id", "not part of this job")])
    else:
        item = session.scalar(
            select(JobItem)
            .join(Operator, Operator.id == JobItem.operator_id)
            .where(JobItem.job_id == job_id, Operator.key == body.key)
        )
    if item is None:
        raise NotFound(f"job {job_id} has no key {body.key!r}", [field_error("key", "not part of this job")])
    if item.state != ItemState.done.value:
        item.state = ItemState.failed.value
        item.error = body.error
    session.flush()
    refresh_state(session, job)
    return job


def _job_for_batch(session: Session, job_id: int, device_id: int, runtime: str, threads: int) -> Job:
    job = find_job(session, job_id, for_update=True)
    if (job.device_id, job.runtime, job.threads) != (device_id, runtime, threads):
        raise Conflict(
            f"job {job_id} is for another table (runtime={job.runtime}, threads={job.threads})",
            [field_error("job_id", "the job's device, runtime and threads differ from this batch's")],
        )
    return job


def _complete_items(
    session: Session,
    job_id: int,
    device_id: int,
    runtime: str,
    threads: int,
    measured: dict[int, int],
    model: type[JobItem] | type[JobNetwork],
    id_attr: str,
) -> None:
    """Mark the items of job ``job_id`` whose ``id_attr`` is in ``measured`` (id -> measurement id) done."""
    job = _job_for_batch(session, job_id, device_id, runtime, threads)
    column = getattr(model, id_attr)
    table = model.__table__
    # One executemany UPDATE, not 20,000 ORM objects loaded and flushed: this runs under the write lock.
    stmt = (
        table.update()  # type: ignore[attr-defined]
        .where(table.c.job_id == job_id, table.c[column.key] == bindparam("item"), table.c.state != ItemState.done.value)
        .values(state=ItemState.done.value, error=None, measurement_id=bindparam("mid"), updated_at=utcnow())
    )
    params = [{"item": item, "mid": mid} for item, mid in measured.items()]
    if params:
        session.execute(stmt.execution_options(synchronize_session=False), params)
    refresh_state(session, job)


def complete_keys(session: Session, job_id: int, device_id: int, runtime: str, threads: int, measured: dict[int, int]) -> None:
    """Mark the items of job ``job_id`` measured in ``measured`` (operator id -> measurement id) done."""
    _complete_items(session, job_id, device_id, runtime, threads, measured, JobItem, "operator_id")


def complete_networks(
    session: Session, job_id: int, device_id: int, runtime: str, threads: int, measured: dict[int, int]
) -> None:
    """Mark the networks of job ``job_id`` measured in ``measured`` (network id -> measurement id) done."""
    _complete_items(session, job_id, device_id, runtime, threads, measured, JobNetwork, "network_id")


def refresh_state(session: Session, job: Job) -> None:
    """Finish the job once no item is pending: done if anything was measured, failed otherwise.

    Late results count: a failed job (every item failed, or given up after MAX_CLAIMS) whose items are
    no longer pending becomes done when one of them is measured after all; its failure reason goes.
    """
    counts = _counts(session, job.id)
    reopenable = job.state == JobState.failed.value
    if counts[ItemState.pending.value] == 0 and (job.state in OPEN_STATES or reopenable):
        job.state = (
            JobState.done.value if counts[ItemState.done.value] or not counts[ItemState.failed.value] else JobState.failed.value
        )
        if job.state == JobState.done.value:
            job.reason = None
        job.lease_expires_at = None
        session.flush()


def _counts(session: Session, job_id: int) -> dict[str, int]:
    """Items per state, operator keys and networks together."""
    counts = {s.value: 0 for s in ItemState}
    for table in (JobItem, JobNetwork):
        for state, n in session.execute(select(table.state, func.count()).where(table.job_id == job_id).group_by(table.state)):
            counts[state] = counts.get(state, 0) + n
    return counts


def to_schema(session: Session, job: Job, pending_limit: int = schemas.PENDING_SHOWN) -> schemas.Job:
    """The REST shape of a job: counts, the first ``pending_limit`` pending keys and networks, the errors of failed ones."""
    counts = _counts(session, job.id)
    errors = dict(
        session.execute(
            select(Operator.key, JobItem.error)
            .join(JobItem, JobItem.operator_id == Operator.id)
            .where(JobItem.job_id == job.id, JobItem.state == ItemState.failed.value)
            .order_by(JobItem.id)
            .limit(pending_limit)
        ).all()
    )
    errors.update(
        session.execute(
            select(Network.arch_id, JobNetwork.error)
            .join(JobNetwork, JobNetwork.network_id == Network.id)
            .where(JobNetwork.job_id == job.id, JobNetwork.state == ItemState.failed.value)
            .order_by(JobNetwork.id)
            .limit(pending_limit)
        ).all()
    )
    state = job.state
    if state == JobState.running.value and job.lease_expires_at is not None and job.lease_expires_at < utcnow():
        state = JobState.queued.value  # the lease ran out: back in the queue
    device_name = session.scalar(select(Device.name).where(Device.id == job.device_id))
    return schemas.Job(
        id=job.id,
        device=device_name or "",
        runtime=job.runtime,
        threads=job.threads,
        state=schemas.JobState(state),
        total=sum(counts.values()),
        done=counts[ItemState.done.value],
        failed=counts[ItemState.failed.value],
        pending=counts[ItemState.pending.value],
        pending_keys=_pending_keys(session, job.id, limit=pending_limit),
        pending_networks=[n.arch_id for n in _pending_networks(session, job.id, limit=pending_limit)],
        agent=job.agent,
        lease_expires_at=job.lease_expires_at,
        created_at=job.created_at,
        errors={k: e or "" for k, e in list(errors.items())[:pending_limit]},  # keys' and networks' errors together
        reason=job.reason,
        holder=job.holder,
        networks=networks_of(session, job.id, pending_limit),
    )


def cancel_job(session: Session, job_id: int, by: str | None, actor: Actor | None = None) -> Job:
    """Cancel an open job: agents stop at their next heartbeat (409) and nothing more is claimed.

    ``actor``: only the token that created the job (or an admin) may (the owner rule).
    """
    job = find_job(session, job_id, for_update=True)
    check_job_cancel(actor, job)
    if job.state not in OPEN_STATES:
        raise Conflict(
            f"job {job_id} is {job.state}; only queued or running jobs can be cancelled",
            [field_error("job_id", f"job is {job.state}")],
        )
    job.state = JobState.cancelled.value
    job.lease_expires_at = None
    job.reason = f"cancelled by {by or 'an admin'}"
    session.flush()
    return job


def list_jobs(session: Session, device: str | None, state: str | None, limit: int, before: int | None) -> list[Job]:
    """Jobs newest first, optionally of one device and one state; ``before``: ids below this one (the next page)."""
    stmt = select(Job).order_by(Job.id.desc()).limit(limit)
    if device is not None:
        stmt = stmt.where(Job.device_id == find_device(session, device, field="device").id)
    if state is not None:
        stmt = stmt.where(Job.state == state)
    if before is not None:
        stmt = stmt.where(Job.id < before)
    return list(session.scalars(stmt))
