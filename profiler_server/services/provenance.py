"""Where an imported latency table comes from, and the rule that keeps it read-only.

Read by the devices, tables, measurements and jobs services; ``services.imports`` writes these
rows. Kept apart from it so that those services need not import the importer (which builds on them).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from hwnas import schemas
from profiler_server.errors import Conflict, field_error
from profiler_server.models import ImportedTable


def _source(row: ImportedTable) -> schemas.TableSource:
    return schemas.TableSource(
        format=row.format,
        project=row.project,
        file=row.source_file,
        commit=row.source_commit,
        source_device=row.source_device,
        source_runtime=row.source_runtime,
        licence=row.licence,
        url=row.url,
        column=row.source_column,
        gauge=row.gauge,
        content_sha256=row.content_sha256,
        imported_at=row.imported_at,
        imported_by=row.imported_by,
        unmappable=[schemas.UnmappedEntry(**u) for u in row.unmappable or []],
        fit=schemas.TableFit.model_validate(row.fit) if row.fit is not None else None,
    )


def imported_row(session: Session, device_id: int, runtime: str, threads: int) -> ImportedTable | None:
    return session.scalar(
        select(ImportedTable).where(
            ImportedTable.device_id == device_id, ImportedTable.runtime == runtime, ImportedTable.threads == threads
        )
    )


def source_of(session: Session, device_id: int, runtime: str, threads: int) -> schemas.TableSource | None:
    """The provenance of table (device, runtime, threads) when it was imported; None for a measured table."""
    row = imported_row(session, device_id, runtime, threads)
    return _source(row) if row is not None else None


def sources_of(session: Session, device_ids: Iterable[int]) -> dict[tuple[int, str, int], schemas.TableSource]:
    """Provenance of every imported table of ``device_ids``, by (device id, runtime, threads)."""
    ids = list(device_ids)
    if not ids:
        return {}
    rows = session.scalars(select(ImportedTable).where(ImportedTable.device_id.in_(ids)))
    return {(r.device_id, r.runtime, r.threads): _source(r) for r in rows}


def refuse_imported(
    session: Session, device: str, device_id: int, runtime: str, threads: int, what: str = "measurements"
) -> None:
    """409 when table (device, runtime, threads) is an imported one: it holds published numbers, not ours."""
    row = imported_row(session, device_id, runtime, threads)
    if row is not None:
        raise Conflict(
            f"the latency table {device}/{runtime}/{threads} threads is imported from {row.project} ({row.source_file}) and is "
            f"read-only: {what} go to a measured table (another runtime, thread count or device)",
            [field_error("runtime", "names an imported, read-only table")],
        )
