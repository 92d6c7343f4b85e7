"""The whole networks of a job, as GET /jobs/{id} shows them (the job page lists them beside its operator keys)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hwnas import schemas
from profiler_server.models import ItemState, JobNetwork, Network, NetworkMeasurement


def networks_of(session: Session, job_id: int, limit: int) -> schemas.JobNetworks | None:
    """Counts per state and the first ``limit`` networks of job ``job_id`` with the measurement that completed each;
    None when the job has none (an operator-only job, the usual kind, says nothing about networks)."""
    counts = {s.value: 0 for s in ItemState}
    counts.update(
        session.execute(
            select(JobNetwork.state, func.count()).where(JobNetwork.job_id == job_id).group_by(JobNetwork.state)
        ).all()
    )
    total = sum(counts.values())
    if total == 0:
        return None
    rows = session.execute(
        select(Network.arch_id, JobNetwork.state, NetworkMeasurement.median_ms, NetworkMeasurement.min_ms, JobNetwork.error)
        .join(Network, Network.id == JobNetwork.network_id)
        .outerjoin(NetworkMeasurement, NetworkMeasurement.id == JobNetwork.measurement_id)
        .where(JobNetwork.job_id == job_id)
        .order_by(JobNetwork.id)
        .limit(limit)
    )
    items = [
        schemas.JobNetworkItem(arch_id=a, state=s, median_ms=med, min_ms=mn, error=err if s == ItemState.failed.value else None)
        for a, s, med, mn, err in rows
    ]
    return schemas.JobNetworks(
        total=total,
        done=counts[ItemState.done.value],
        failed=counts[ItemState.failed.value],
        pending=counts[ItemState.pending.value],
        items=items,
    )
