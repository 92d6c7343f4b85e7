"""Imported latency tables: create one from a published file (idempotent, one transaction), keep it read-only,
serve its provenance, and export any table in a published YAML layout.

An imported table is one measurement run of (device, runtime, threads) whose rows hold the
published numbers (``median_ms`` = the published mean: no median was published), plus an
``imported_tables`` row with the provenance and the statistics exactly as published.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hwnas import schemas
from hwnas.opkey import OVERHEAD_KEY
from profiler_server.errors import Conflict, InvalidInput, field_error
from profiler_server.models import Device, ImportedTable, Measurement, MeasurementRun, utcnow
from profiler_server.services.devices import IMPORT_OWNER, put_device
from profiler_server.services.luts import NoSuchTable, bump_version, build_lut, resolve_table
from profiler_server.services.operators import ensure_operators
from profiler_server.services.provenance import imported_row
from profiler_server.services.published_files import (
    SPREAD,
    ExportRow,
    PublishedFileError,
    PublishedTable,
    read_published,
    write_published,
)

# run_uuid of an import: the same content imported into the same table over the same history is the same run (two
# concurrent identical imports collide on it); the table's run count is in it, so content replaced and later restored is a new run.
_IMPORT_NAMESPACE = uuid.UUID("5b0f3c1e-8d4a-4f57-9a51-2f1c0c7e6b15")


MAX_ERROR_CHARS = 300  # of a file's error in a 422: the file is the caller's, and so is everything it quotes


def _content_error(body: schemas.LutImport, exc: PublishedFileError) -> InvalidInput:
    reason = str(exc)[:MAX_ERROR_CHARS]
    return InvalidInput(f"{body.source.file[:100]} ({body.format}): {reason}", [field_error("content", reason)])


def read_import(body: schemas.LutImport) -> PublishedTable:
    """Parse and check the file of ``body`` (no database): 422 naming what is wrong. Done before the write transaction,
    so a large or hostile file never holds the database's write lock while it is read."""
    if body.format == "hwnasbench-json" and body.column is None:
        raise InvalidInput(
            "hwnasbench-json holds several devices: give column (pixel3, raspi4, eyeriss or fpga)",
            [field_error("column", "required for hwnasbench-json")],
        )
    try:
        table = read_published(body.format, body.content, body.column)
    except PublishedFileError as exc:
        raise _content_error(body, exc) from None
    if not table.entries:
        raise InvalidInput(
            f"{body.source.file[:100]}: no entry maps to an operator key", [field_error("content", "no mappable entry")]
        )
    return table


def import_table(
    session: Session, body: schemas.LutImport, imported_by: str | None, table: PublishedTable | None = None
) -> schemas.LutImportResult:
    """Create (or confirm, or with ``replace`` replace) the imported table ``body`` describes; nothing is written on error.

    ``table``: ``read_import(body)`` when the caller parsed it already (outside its transaction).
    """
    if table is None:
        table = read_import(body)
    sha = hashlib.sha256(body.content.encode()).hexdigest()
    unmappable = [{"key": k, "reason": r} for k, r in sorted(table.unmappable.items())]
    device = session.scalar(select(Device).where(Device.name == body.device))
    if device is None:
        info = schemas.DeviceInfo(model=body.source.source_device[:256], props={"imported_from": body.source.project})
        device, _ = put_device(session, body.device, info, owner=IMPORT_OWNER)
    existing = imported_row(session, device.id, body.runtime, body.threads)
    result = dict(
        device=body.device,
        runtime=body.runtime,
        threads=body.threads,
        entries=len(table.entries),
        overhead_ms=table.overhead_ms,
        unmappable=[schemas.UnmappedEntry(**u) for u in unmappable],
    )
    s = body.source
    provenance = dict(
        project=s.project,
        source_file=s.file,
        source_commit=s.commit,
        source_device=s.source_device,
        source_runtime=s.source_runtime,
        licence=s.licence,
        url=s.url,
    )
    if (
        existing is not None
        and existing.content_sha256 == sha
        and existing.format == body.format
        and existing.source_column == body.column
    ):
        if not body.replace:
            return schemas.LutImportResult(status="unchanged", **result)
        for name, value in provenance.items():  # same entries, restated provenance
            setattr(existing, name, value)
        bump_version(session, device.id, body.runtime, body.threads)
        session.flush()
        return schemas.LutImportResult(status="replaced", **result)
    if existing is not None and not body.replace:
        raise Conflict(
            f"{body.device}/{body.runtime}/{body.threads} threads was imported from other content "
            f"({existing.project}, {existing.source_file}); pass replace to replace its entries",
            [field_error("replace", "the table exists with other content")],
        )
    if existing is None:
        try:
            resolve_table(session, body.device, body.runtime, body.threads)
        except NoSuchTable:
            pass
        else:
            raise Conflict(
                f"{body.device}/{body.runtime}/{body.threads} threads holds measured entries; import into another "
                "device, runtime or thread count",
                [field_error("device", "has a measured table for this runtime and threads")],
            )
    now = utcnow()
    if existing is not None:  # replace: the old rows stay in the history, no longer valid
        old_runs = select(MeasurementRun.id).where(
            MeasurementRun.device_id == device.id, MeasurementRun.runtime == body.runtime, MeasurementRun.threads == body.threads
        )
        session.execute(update(Measurement).where(Measurement.run_id.in_(old_runs)).values(valid=False))
    earlier = session.scalar(
        select(func.count())
        .select_from(MeasurementRun)
        .where(
            MeasurementRun.device_id == device.id, MeasurementRun.runtime == body.runtime, MeasurementRun.threads == body.threads
        )
    )
    run = MeasurementRun(
        run_uuid=uuid.uuid5(
            _IMPORT_NAMESPACE, f"{device.id}/{body.runtime}/{body.threads}/{body.format}/{body.column}/{sha}/{earlier}"
        ),
        device_id=device.id,
        runtime=body.runtime,
        runtime_version=body.runtime_version,
        threads=body.threads,
        agent=f"import:{imported_by or 'cli'}"[:128],
        device_state={"imported": {"project": body.source.project, "file": body.source.file}},
        started_at=now,
        finished_at=now,
    )
    session.add(run)
    session.flush()
    keys = list(table.entries) + ([OVERHEAD_KEY] if table.overhead_ms is not None else [])
    ops = ensure_operators(session, keys)
    rows: list[dict[str, Any]] = [
        {
            "run_id": run.id,
            "operator_id": ops[k],
            "median_ms": e.latency_ms,
            "mean_ms": e.latency_ms,
            "std_ms": e.std_ms,
            "iterations": e.count or 0,
            "warmup": 0,
            "valid": True,
            "measured_at": now,
        }
        for k, e in table.entries.items()
    ]
    if table.overhead_ms is not None:
        rows.append(
            {
                "run_id": run.id,
                "operator_id": ops[OVERHEAD_KEY],
                "median_ms": table.overhead_ms,
                "mean_ms": table.overhead_ms,
                "std_ms": None,
                "iterations": 0,
                "warmup": 0,
                "valid": True,
                "measured_at": now,
            }
        )
    session.execute(Measurement.__table__.insert(), rows)  # type: ignore[attr-defined]
    values = dict(
        format=body.format,
        **provenance,
        source_column=body.column,
        gauge=table.gauge,
        content_sha256=sha,
        run_id=run.id,
        statistics={k: e.published for k, e in table.entries.items()},
        unmappable=unmappable,
        fit=table.fit,
        imported_by=imported_by,
        imported_at=now,
    )
    if existing is None:
        session.add(ImportedTable(device_id=device.id, runtime=body.runtime, threads=body.threads, **values))
    else:
        for name, value in values.items():
            setattr(existing, name, value)
    bump_version(session, device.id, body.runtime, body.threads)
    session.flush()
    return schemas.LutImportResult(status="created" if existing is None else "replaced", **result)


def export_table(session: Session, device: str, runtime: str | None, threads: int | None, fmt: str) -> str:
    """Table (device, runtime, threads) as YAML in layout ``fmt`` (``ofa-yaml`` or ``proxyless-yaml``)."""
    ref = resolve_table(session, device, runtime, threads)
    lut = build_lut(session, ref)
    row = imported_row(session, ref.device_id, ref.runtime, ref.threads)
    published = row.statistics if row is not None else {}
    spread = SPREAD[fmt]
    overhead = lut.overhead_ms or 0.0
    rows = []
    for key, e in lut.entries.items():
        record = published.get(key, {})
        # "mean" is what their estimators add up, once per block: the key's share of a network as hwnas predicts it,
        # entry − overhead (the burst minimum where measured, else the median; an imported table's published mean).
        # Exporting the entry itself would add the per-network overhead once per block (issue 27: 156.52 ms for a
        # network hwnas predicts at 39.50 ms, 5.09 ms × 23).
        value = (e.min_ms if e.min_ms is not None else e.median_ms) - overhead
        var = record.get("var") if spread == "var" and isinstance(record.get("var"), (int, float)) else None
        rows.append(ExportRow(key, value, e.std_ms, e.n, var))
    header = [
        f"{fmt} export of the hwnas latency table {ref.device}/{ref.runtime}/{ref.threads} threads"
        + (f" (runtime version {lut.runtime_version})" if lut.runtime_version else ""),
        "mean: the key's share of a network as hwnas predicts it, entry - overhead_ms (ms); count: samples; "
        + ("std: standard deviation (ms)" if spread == "std" else "var: variance (ms^2)"),
    ]
    if row is not None:
        header.append(
            f"imported from {row.project} {row.source_file}"
            + (f" @ {row.source_commit}" if row.source_commit else "")
            + f"; licence: {row.licence}"
        )
    if lut.overhead_ms is not None:
        header.append(
            f"overhead_ms {lut.overhead_ms!r}: add it once per network to the sum of the means (this layout "
            "has no key for it); the means above already exclude it"
        )
    text, _ = write_published(fmt, rows, header)
    return text
