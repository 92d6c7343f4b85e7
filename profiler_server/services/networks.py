"""Whole networks: stored by architecture id, measured by agents in runs, served per table.

A network's latencies are history like operator latencies (append-only, one row per run);
``GET /devices/{name}/networks`` shows the latest valid measurement of each network of one
(device, runtime, threads). A network batch belongs to a ``measurement_runs`` row, so a run
can carry operator and network results measured in the same interleaved rounds.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from hwnas import schemas
from profiler_server.errors import Conflict, NotFound, field_error
from profiler_server.models import Device, MeasurementRun, Network, NetworkMeasurement, utcnow
from profiler_server.services.devices import find_device
from profiler_server.services.history import latest_valid_rows, present_ids
from profiler_server.services.sql import CHUNK, insert_ignore


def network_ids(session: Session, arch_ids: Sequence[str]) -> dict[str, int]:
    """Ids of the stored networks among ``arch_ids`` (no writes)."""
    wanted = list(dict.fromkeys(arch_ids))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        found.update(session.execute(select(Network.arch_id, Network.id).where(Network.arch_id.in_(chunk))).all())
    return found


def ensure_networks(session: Session, specs: Sequence[schemas.NetworkSpec]) -> dict[str, int]:
    """Ids of the networks of ``specs``, storing the new ones (an arch id keeps its first document)."""
    found = network_ids(session, [s.arch_id for s in specs])
    now = utcnow()
    # Sorted, like operators: concurrent jobs insert shared new networks in one order.
    missing = sorted((s for s in specs if s.arch_id not in found), key=lambda s: s.arch_id)
    if missing:
        rows = [
            {"arch_id": s.arch_id, "document": s.arch, "input_shape": list(s.input_shape), "created_at": now} for s in missing
        ]
        insert_ignore(session, Network.__table__, rows, ["arch_id"])  # type: ignore[arg-type]
        found.update(network_ids(session, [s.arch_id for s in missing]))
    return found


def present_network_ids(session: Session, device_id: int, runtime: str, threads: int, ids: list[int]) -> set[int]:
    """Which of ``ids`` have a valid measurement for (device, runtime, threads)."""
    return present_ids(session, NetworkMeasurement.network_id, device_id, runtime, threads, ids)


def _network_tables(session: Session, device_id: int) -> list[tuple[str, int]]:
    """The (runtime, threads) pairs that have network measurements on a device."""
    return [
        (str(r), int(t))
        for r, t in session.execute(
            select(MeasurementRun.runtime, MeasurementRun.threads)
            .join(NetworkMeasurement, NetworkMeasurement.run_id == MeasurementRun.id)
            .where(MeasurementRun.device_id == device_id)
            .distinct()
            .order_by(MeasurementRun.runtime, MeasurementRun.threads)
        )
    ]


def _pick(device: Device, tables: list[tuple[str, int]], runtime: str | None, threads: int | None) -> tuple[str, int]:
    matching = [(r, t) for r, t in tables if (runtime is None or r == runtime) and (threads is None or t == threads)]
    if len(matching) == 1:
        return matching[0]
    if not matching:
        asked = ", ".join(f"{k}={v}" for k, v in (("runtime", runtime), ("threads", threads)) if v is not None) or "any runtime"
        have = ", ".join(f"{r}/{t}" for r, t in tables) or "none yet"
        raise NotFound(
            f"device {device.name!r} has no network measurements for {asked} (have: {have})",
            [field_error("runtime" if runtime is not None else "name", f"no network measurements for {asked}")],
        )
    options = ", ".join(f"runtime={r}&threads={t}" for r, t in matching)
    errors = []
    if runtime is None and len({r for r, _ in matching}) > 1:
        errors.append(field_error("runtime", "ambiguous: one of " + ", ".join(sorted({r for r, _ in matching}))))
    if threads is None and len({t for _, t in matching}) > 1:
        errors.append(field_error("threads", "ambiguous: one of " + ", ".join(str(t) for t in sorted({t for _, t in matching}))))
    raise Conflict(f"device {device.name!r} has network measurements of {len(matching)} tables; choose one: {options}", errors)


def network_table(session: Session, name: str, runtime: str | None, threads: int | None) -> schemas.NetworkTable:
    """The latest valid measurement of every network of one (device, runtime, threads)."""
    device = find_device(session, name, field="name")
    runtime, threads = _pick(device, _network_tables(session, device.id), runtime, threads)
    scope = (MeasurementRun.device_id == device.id, MeasurementRun.runtime == runtime, MeasurementRun.threads == threads)
    rows = latest_valid_rows(
        session,
        NetworkMeasurement.network_id,
        Network.arch_id,
        device.id,
        runtime,
        threads,
        extra=("samples_ms", "operator_breakdown"),
    )
    version = session.scalar(
        select(MeasurementRun.runtime_version)
        .join(NetworkMeasurement, NetworkMeasurement.run_id == MeasurementRun.id)
        .where(*scope)
        .order_by(MeasurementRun.id.desc())
        .limit(1)
    )
    entries = {
        r.arch_id: schemas.NetworkEntry(
            median_ms=r.median_ms,
            min_ms=r.min_ms,
            p10_ms=r.p10_ms,
            p90_ms=r.p90_ms,
            std_ms=r.std_ms,
            n=r.iterations,
            samples_ms=r.samples_ms,
            measured_at=r.measured_at,
            operator_breakdown=r.operator_breakdown,
        )
        for r in rows
    }
    return schemas.NetworkTable(device=device.name, runtime=runtime, runtime_version=version, threads=threads, entries=entries)
