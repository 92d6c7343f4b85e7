"""Latency tables: a view over the measurement history, and a cache of its serialized forms.

A table is (device, runtime, threads). Its entries are the latest valid measurement of each
key; ``overhead_ms`` is the latest ``__overhead__`` measurement (kept out of the entries);
``runtime_version`` is that of the table's latest run. Each table has a version counter in
the database (``lut_versions``) bumped with every stored batch, so every worker process can
check its cached bytes with one small query.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Connection, Engine, Table, bindparam, select
from sqlalchemy.orm import Session

from hwnas import schemas
from hwnas.opkey import OVERHEAD_KEY
from profiler_server.errors import Conflict, NotFound, UnknownDevice, field_error, reject_bad_keys
from profiler_server.models import Calibration, Device, LutVersion, Measurement, MeasurementRun, Operator, utcnow
from profiler_server.services.history import latest_valid_rows, present_ids
from profiler_server.services.provenance import source_of
from profiler_server.services.sql import insert_ignore

CSV_COLUMNS = ("key", "median_ms", "min_ms", "p10_ms", "p90_ms", "std_ms", "n", "measured_at")


class NoSuchTable(NotFound):
    """The device exists but has no table for that runtime/threads."""


@dataclass(frozen=True)
class TableRef:
    """One latency table of one device, with its current version."""

    device_id: int
    device: str
    runtime: str
    threads: int
    version: int


# Built once: this runs on every GET /lut, and building a statement costs more than running it.
_TABLES_OF_DEVICE = (
    select(Device.id, LutVersion.runtime, LutVersion.threads, LutVersion.version)
    .select_from(Device)
    .outerjoin(LutVersion, LutVersion.device_id == Device.id)
    .where(Device.name == bindparam("device"))
)


def resolve_table(db: Session | Connection, device: str, runtime: str | None, threads: int | None) -> TableRef:
    """The one table of ``device`` matching ``runtime``/``threads``: 404 if none, 409 if several."""
    rows = [tuple(r) for r in db.execute(_TABLES_OF_DEVICE, {"device": device}).all()]
    return pick_table(device, rows, runtime, threads)  # type: ignore[arg-type]


class TableProbe:
    """resolve_table through one precompiled DBAPI statement: the per-request cost of GET /lut.

    A plain SQLAlchemy execution costs several times the query itself; this path runs on
    every table fetch, so it talks to the pooled DBAPI connection directly.
    """

    def __init__(self, engine: Engine) -> None:
        compiled = _TABLES_OF_DEVICE.compile(dialect=engine.dialect)
        self._engine = engine
        self._sql = str(compiled)
        self._positional = bool(compiled.positional)

    def resolve(self, device: str, runtime: str | None, threads: int | None) -> TableRef:
        """As resolve_table."""
        conn = self._engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(self._sql, (device,) if self._positional else {"device": device})
            rows = [tuple(r) for r in cur.fetchall()]
            cur.close()
        finally:
            conn.close()  # back to the pool, which rolls the read back
        return pick_table(device, rows, runtime, threads)


def pick_table(
    device: str, rows: list[tuple[int, str | None, int | None, int | None]], runtime: str | None, threads: int | None
) -> TableRef:
    """Choose among a device's (id, runtime, threads, version) rows; rows empty: unknown device."""
    if not rows:
        raise UnknownDevice(device)
    tables = [r for r in rows if r[1] is not None]
    matching = [r for r in tables if (runtime is None or r[1] == runtime) and (threads is None or r[2] == threads)]
    if not matching:
        asked = ", ".join(f"{k}={v}" for k, v in (("runtime", runtime), ("threads", threads)) if v is not None) or "any runtime"
        have = ", ".join(f"{r[1]}/{r[2]}" for r in tables) or "none yet"
        raise NoSuchTable(
            f"device {device!r} has no latency table for {asked} (tables: {have})",
            [field_error("runtime" if runtime is not None else "device", f"no table for {asked}")],
        )
    if len(matching) > 1:
        ordered = sorted(matching, key=lambda r: (str(r[1]), int(r[2] or 0)))
        options = ", ".join(f"runtime={r[1]}&threads={r[2]}" for r in ordered)
        errors = []
        if runtime is None and len({r[1] for r in matching}) > 1:
            errors.append(field_error("runtime", "ambiguous: one of " + ", ".join(sorted({str(r[1]) for r in matching}))))
        if threads is None and len({r[2] for r in matching}) > 1:
            errors.append(
                field_error(
                    "threads", "ambiguous: one of " + ", ".join(str(t) for t in sorted({int(r[2] or 0) for r in matching}))
                )
            )
        raise Conflict(f"device {device!r} has {len(matching)} latency tables; choose one: {options}", errors)
    device_id, rt, th, version = matching[0]
    return TableRef(device_id=device_id, device=device, runtime=str(rt), threads=int(th or 0), version=int(version or 0))


def bump_version(session: Session, device_id: int, runtime: str, threads: int) -> None:
    """Mark table (device, runtime, threads) as changed (creating its version row on first use)."""
    now = utcnow()
    table = cast(Table, LutVersion.__table__)
    insert_ignore(
        session,
        table,
        [{"device_id": device_id, "runtime": runtime, "threads": threads, "version": 0, "updated_at": now}],
        ["device_id", "runtime", "threads"],
    )
    session.execute(
        table.update()
        .where(table.c.device_id == device_id, table.c.runtime == runtime, table.c.threads == threads)
        .values(version=table.c.version + 1, updated_at=now)
    )


def build_lut(session: Session, ref: TableRef) -> schemas.Lut:
    """Read the table ``ref`` from the measurement history."""
    rows = latest_valid_rows(session, Measurement.operator_id, Operator.key, ref.device_id, ref.runtime, ref.threads)
    runtime_version = session.scalar(
        select(MeasurementRun.runtime_version)
        .where(
            MeasurementRun.device_id == ref.device_id,
            MeasurementRun.runtime == ref.runtime,
            MeasurementRun.threads == ref.threads,
        )
        .order_by(MeasurementRun.id.desc())
        .limit(1)
    )
    overhead: float | None = None
    entries: dict[str, schemas.LutEntry] = {}
    for r in rows:
        if r.key == OVERHEAD_KEY:
            overhead = r.median_ms
            continue
        entries[r.key] = schemas.LutEntry(
            median_ms=r.median_ms,
            min_ms=r.min_ms,
            p10_ms=r.p10_ms,
            p90_ms=r.p90_ms,
            std_ms=r.std_ms,
            n=r.iterations,
            measured_at=r.measured_at,
        )
    return schemas.Lut(
        device=ref.device,
        runtime=ref.runtime,
        runtime_version=runtime_version,
        threads=ref.threads,
        overhead_ms=overhead,
        entries=entries,
        calibration=latest_calibration(session, ref.device_id, ref.runtime, ref.threads),
        source=source_of(session, ref.device_id, ref.runtime, ref.threads),
    )


def latest_calibration(session: Session, device_id: int, runtime: str, threads: int) -> schemas.LutCalibration | None:
    """The calibration in force for one table, or None."""
    row = session.scalar(
        select(Calibration)
        .where(Calibration.device_id == device_id, Calibration.runtime == runtime, Calibration.threads == threads)
        .order_by(Calibration.id.desc())
        .limit(1)
    )
    if row is None:
        return None
    return schemas.LutCalibration(
        scale=row.scale,
        offset_ms=row.offset_ms,
        networks=row.networks,
        method=row.method,
        mape_before=row.mape_before,
        mape_after=row.mape_after,
        created_at=row.created_at,
    )


def present_operator_ids(session: Session, device_id: int, runtime: str, threads: int, operator_ids: list[int]) -> set[int]:
    """Which of ``operator_ids`` have a valid measurement in table (device, runtime, threads)."""
    return present_ids(session, Measurement.operator_id, device_id, runtime, threads, operator_ids)


def to_csv(lut: schemas.Lut) -> bytes:
    """CSV of a table: one row per key; the overhead, when known, is the first row (key ``__overhead__``)."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(CSV_COLUMNS)
    if lut.overhead_ms is not None:
        out.writerow([OVERHEAD_KEY, repr(lut.overhead_ms), "", "", "", "", "", ""])
    for key, e in lut.entries.items():
        out.writerow(
            [key]
            + ["" if v is None else repr(v) for v in (e.median_ms, e.min_ms, e.p10_ms, e.p90_ms, e.std_ms)]
            + [e.n, e.measured_at.isoformat()]
        )
    return buf.getvalue().encode()


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@dataclass
class Rendered:
    """One representation of a table: its bytes and strong ETag."""

    body: bytes
    etag: str


@dataclass
class CachedLut:
    version: int
    lut: schemas.Lut
    json: Rendered
    csv: Rendered | None = None


@dataclass
class LutCache:
    """Serialized tables per (device, runtime, threads), valid while the table's version is unchanged."""

    _entries: dict[tuple[int, str, int], CachedLut] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def peek(self, ref: TableRef, csv: bool = False) -> Rendered | None:
        """The cached bytes of ``ref`` when they are of its current version (no database work)."""
        hit = self._entries.get((ref.device_id, ref.runtime, ref.threads))
        if hit is None or hit.version != ref.version:
            return None
        return hit.json if not csv else hit.csv

    def get(self, session: Session, ref: TableRef) -> CachedLut:
        """The cached table for ``ref``, rebuilt when the database holds a newer version."""
        key = (ref.device_id, ref.runtime, ref.threads)
        hit = self._entries.get(key)
        if hit is not None and hit.version == ref.version:
            return hit
        # ref.version was read before the rows: a racing write makes the rows newer than the
        # version they are cached under, never older, so the next request rebuilds at worst.
        lut = build_lut(session, ref)
        body = lut.model_dump_json().encode()
        fresh = CachedLut(version=ref.version, lut=lut, json=Rendered(body, _etag(body)))
        with self._lock:
            self._entries[key] = fresh
        return fresh

    def render(self, session: Session, ref: TableRef, csv: bool = False) -> Rendered:
        """The JSON or CSV bytes of ``ref`` (each rendered once per version)."""
        cached = self.get(session, ref)
        if not csv:
            return cached.json
        if cached.csv is None:
            body = to_csv(cached.lut)
            cached.csv = Rendered(body, _etag(body))
        return cached.csv

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def query_keys(session: Session, cache: LutCache, device: str, query: schemas.LutQuery) -> schemas.LutQueryResult:
    """Split ``query.keys`` into those the table has and those it lacks (no table: all missing)."""
    reject_bad_keys(query.keys, "keys")
    try:
        ref = resolve_table(session, device, query.runtime, query.threads)
    except NoSuchTable:
        return schemas.LutQueryResult(present=[], missing=list(dict.fromkeys(query.keys)))
    lut = cache.get(session, ref).lut
    present: list[str] = []
    missing: list[str] = []
    for key in dict.fromkeys(query.keys):
        has = lut.overhead_ms is not None if key == OVERHEAD_KEY else key in lut.entries
        (present if has else missing).append(key)
    return schemas.LutQueryResult(present=present, missing=missing)
