"""SQLAlchemy 2 typed models. History is append-only; a latency table is a view over it.

Schema changes go through alembic (``migrations/``); tests assert models and migrations agree.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from hwnas.schemas import JobState  # the contract's states; Job.state stores their values

# Stable constraint names so that SQLite and PostgreSQL migrations produce the same schema.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[int]: JSON()}


class ItemState(str, enum.Enum):
    pending = "pending"
    done = "done"
    failed = "failed"


class LatencyColumns:
    """The statistics columns of one measured item in one run (``measurements``, ``network_measurements``).

    A declarative mixin: each table gets its own copies, after the table's own columns, so the
    column order (and the migrations that create these tables) stay as they are.
    """

    median_ms: Mapped[float] = mapped_column(Float)
    p10_ms: Mapped[float | None] = mapped_column(Float)
    p90_ms: Mapped[float | None] = mapped_column(Float)
    mean_ms: Mapped[float | None] = mapped_column(Float)
    std_ms: Mapped[float | None] = mapped_column(Float)
    min_ms: Mapped[float | None] = mapped_column(Float)
    iterations: Mapped[int] = mapped_column(Integer)
    warmup: Mapped[int] = mapped_column(Integer, default=0)
    samples_ms: Mapped[list[float] | None] = mapped_column(JSON)
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    measured_at: Mapped[datetime] = mapped_column(default=utcnow)


class Device(Base):
    """A measured target: a phone, or the host CPU."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    serial: Mapped[str | None] = mapped_column(String(256))
    manufacturer: Mapped[str | None] = mapped_column(String(256))
    model: Mapped[str | None] = mapped_column(String(256))
    soc: Mapped[str | None] = mapped_column(String(256))
    abi: Mapped[str | None] = mapped_column(String(64))
    os_version: Mapped[str | None] = mapped_column(String(128))
    cpu_cores: Mapped[int | None] = mapped_column(Integer)
    cpu_max_freqs_khz: Mapped[list[int]] = mapped_column(JSON, default=list)
    props: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The agent token (its name) that registered the device: only it (or an admin) may change what the device is.
    owner: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The last claim an agent made for the device that found no job (device_activity.mark_polled: kept to within
    # POLL_MARK_S, so that an idle agent's polls do not write on every call); None until one.
    polled_at: Mapped[datetime | None] = mapped_column()


class Operator(Base):
    """One operator microbenchmark, by its canonical key, with the parsed spec beside it."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(256), unique=True)
    block: Mapped[str] = mapped_column(String(128), index=True)  # "__overhead__" for the overhead key
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n: Mapped[int | None] = mapped_column(Integer)
    c: Mapped[int | None] = mapped_column(Integer)
    h: Mapped[int | None] = mapped_column(Integer)
    w: Mapped[int | None] = mapped_column(Integer)
    dtype: Mapped[str | None] = mapped_column(String(16))


class MeasurementRun(Base):
    """One agent's run on one device with one runtime and thread count (the unit of upload)."""

    __tablename__ = "measurement_runs"
    __table_args__ = (Index("ix_measurement_runs_table", "device_id", "runtime", "threads"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    runtime: Mapped[str] = mapped_column(String(64))
    runtime_version: Mapped[str | None] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    agent: Mapped[str] = mapped_column(String(128))
    device_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()

    device: Mapped[Device] = relationship()


class Measurement(LatencyColumns, Base):
    """Latency statistics of one operator in one run; never updated, only invalidated."""

    __tablename__ = "measurements"
    __table_args__ = (UniqueConstraint("run_id", "operator_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("measurement_runs.id", ondelete="CASCADE"))
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)

    operator: Mapped[Operator] = relationship()


class LutVersion(Base):
    """A counter per latency table, bumped with every stored batch: the cache key of every worker."""

    __tablename__ = "lut_versions"
    __table_args__ = (UniqueConstraint("device_id", "runtime", "threads"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    runtime: Mapped[str] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JobKind(str, enum.Enum):
    operators = "operators"  # measure a list of operator keys
    networks = "networks"  # whole networks, measured interleaved with the job's operator keys (if any)


class Job(Base):
    """A profiling request for one (device, runtime, threads); agents claim it with a lease."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "device_id", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default=JobKind.operators.value)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    runtime: Mapped[str] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=JobState.queued.value)
    agent: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    claims: Mapped[int] = mapped_column(Integer, default=0)
    # Name of the agent token that holds the lease: only it may renew the lease or fail items.
    holder: Mapped[str | None] = mapped_column(String(128))
    # Why the job was failed or cancelled as a whole (not one item's error).
    reason: Mapped[str | None] = mapped_column(String(4000))
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    device: Mapped[Device] = relationship()
    items: Mapped[list["JobItem"]] = relationship(back_populates="job", order_by="JobItem.id")


class JobItem(Base):
    """One key of a job and where it stands."""

    __tablename__ = "job_items"
    __table_args__ = (UniqueConstraint("job_id", "operator_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    state: Mapped[str] = mapped_column(String(16), default=ItemState.pending.value)
    error: Mapped[str | None] = mapped_column(Text)
    measurement_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("measurements.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    job: Mapped[Job] = relationship(back_populates="items")
    operator: Mapped[Operator] = relationship()


class Network(Base):
    """A whole network by its architecture id, with the document that rebuilds it."""

    __tablename__ = "networks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    arch_id: Mapped[str] = mapped_column(String(64), unique=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    input_shape: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NetworkMeasurement(LatencyColumns, Base):
    """Latency of one whole network in one run (append-only, like ``measurements``)."""

    __tablename__ = "network_measurements"
    __table_args__ = (UniqueConstraint("run_id", "network_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("measurement_runs.id", ondelete="CASCADE"))
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    # Per-operator times of a separate profiled pass (schemas.OperatorBreakdown); None: the runtime gives none.
    operator_breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    network: Mapped[Network] = relationship()


class JobNetwork(Base):
    """One network of a job and where it stands (the network counterpart of ``JobItem``)."""

    __tablename__ = "job_networks"
    __table_args__ = (UniqueConstraint("job_id", "network_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"))
    state: Mapped[str] = mapped_column(String(16), default=ItemState.pending.value)
    error: Mapped[str | None] = mapped_column(Text)
    measurement_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("network_measurements.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    network: Mapped[Network] = relationship()


class Calibration(Base):
    """A fitted correction ``scale · predicted + offset_ms`` for one table; the latest one applies."""

    __tablename__ = "calibrations"
    __table_args__ = (Index("ix_calibrations_table", "device_id", "runtime", "threads"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    runtime: Mapped[str] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    scale: Mapped[float] = mapped_column(Float)
    offset_ms: Mapped[float] = mapped_column(Float)
    networks: Mapped[int] = mapped_column(Integer, default=0)
    method: Mapped[str] = mapped_column(String(64))
    mape_before: Mapped[float | None] = mapped_column(Float)
    mape_after: Mapped[float | None] = mapped_column(Float)
    points: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # [{arch_id, predicted_ms, measured_ms}]
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token, stored only as its SHA-256 hash, with one role."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    # An agent token may act for these devices only (None: any device).
    devices: Mapped[list[str] | None] = mapped_column(JSON)


class ImportedTable(Base):
    """Provenance of a latency table imported from a published file; such a table is read-only.

    Its entries are ordinary measurement rows of one run (so GET /lut serves them like any
    table); this row says where they come from and keeps the published statistics as published.
    """

    __tablename__ = "imported_tables"
    __table_args__ = (UniqueConstraint("device_id", "runtime", "threads"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    runtime: Mapped[str] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(32))
    project: Mapped[str] = mapped_column(String(256))
    source_file: Mapped[str] = mapped_column(String(512))
    source_commit: Mapped[str | None] = mapped_column(String(64))
    source_device: Mapped[str] = mapped_column(String(256))
    source_runtime: Mapped[str | None] = mapped_column(String(128))
    licence: Mapped[str] = mapped_column(String(1000))
    url: Mapped[str | None] = mapped_column(String(512))
    source_column: Mapped[str | None] = mapped_column(String(64))  # the device column of a multi-device file
    gauge: Mapped[str | None] = mapped_column(Text)  # how entries relate to latency when not per-block ms
    content_sha256: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int] = mapped_column(ForeignKey("measurement_runs.id", ondelete="CASCADE"))
    # Our key -> {"published": key, "count", "mean", "std" | "var", ...} exactly as published.
    statistics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    unmappable: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)  # [{key, reason}]
    fit: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # hwnas-fit tables: schemas.TableFit (the fit's quality)
    imported_by: Mapped[str | None] = mapped_column(String(128))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
