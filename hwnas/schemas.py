"""Pydantic bodies of every REST endpoint: the one contract between server, agent and search."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hwnas.opkey import OVERHEAD_KEY, OpKeyError, OpSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def check_key(key: str) -> str:
    """Validate an operator key (or the overhead key), raising ValueError that names the bad part."""
    if key == OVERHEAD_KEY:
        return key
    try:
        OpSpec.parse(key)
    except OpKeyError as exc:
        raise ValueError(str(exc)) from None
    return key


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Role(str, Enum):
    agent = "agent"
    client = "client"
    admin = "admin"


# ---- health -----------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    version: str


# ---- devices ------------------------------------------------------------------------------
class DeviceInfo(Strict):
    """What a device is, as the agent reports it with PUT /devices/{name}."""

    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    soc: str | None = None
    abi: str | None = None
    os_version: str | None = None
    cpu_cores: int | None = Field(default=None, ge=1)
    cpu_max_freqs_khz: list[int] = Field(default_factory=list)
    props: dict[str, Any] = Field(default_factory=dict)


class TableInfo(BaseModel):
    runtime: str
    runtime_version: str | None
    threads: int
    entries: int


class Device(DeviceInfo):
    name: str
    created_at: datetime
    updated_at: datetime
    tables: list[TableInfo] = Field(default_factory=list)


# ---- latency tables -----------------------------------------------------------------------
class LutEntry(BaseModel):
    median_ms: float
    min_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    std_ms: float | None = None
    n: int
    measured_at: datetime


class Lut(BaseModel):
    """GET /lut/{device}: the latest valid measurement per key for one (device, runtime, threads)."""

    device: str
    runtime: str
    runtime_version: str | None = None
    threads: int
    unit: Literal["ms"] = "ms"
    overhead_ms: float | None = None
    entries: dict[str, LutEntry]


class LutQuery(Strict):
    runtime: str | None = None
    threads: int | None = Field(default=None, ge=1)
    keys: list[str]

    @field_validator("keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        return [check_key(k) for k in keys]


class LutQueryResult(BaseModel):
    present: list[str]
    missing: list[str]


# ---- measurements -------------------------------------------------------------------------
def _finite_nonneg(name: str, v: float | None) -> float | None:
    if v is None:
        return v
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    if v < 0:
        raise ValueError(f"{name} must not be negative, got {v}")
    return v


class MeasurementResult(Strict):
    key: str
    median_ms: float
    p10_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    iterations: int = Field(ge=1)
    warmup: int = Field(default=0, ge=0)
    samples_ms: list[float] | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        return check_key(key)

    @field_validator("median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "min_ms")
    @classmethod
    def _finite(cls, v: float | None, info: Any) -> float | None:
        return _finite_nonneg(info.field_name, v)

    @field_validator("samples_ms")
    @classmethod
    def _samples(cls, v: list[float] | None) -> list[float] | None:
        for s in v or []:
            _finite_nonneg("samples_ms", s)
        return v

    @model_validator(mode="after")
    def _order(self) -> "MeasurementResult":
        if self.p10_ms is not None and self.p10_ms > self.median_ms:
            raise ValueError(f"p10_ms ({self.p10_ms}) must not exceed median_ms ({self.median_ms})")
        if self.p90_ms is not None and self.p90_ms < self.median_ms:
            raise ValueError(f"p90_ms ({self.p90_ms}) must not be below median_ms ({self.median_ms})")
        if self.min_ms is not None and self.min_ms > self.median_ms:
            raise ValueError(f"min_ms ({self.min_ms}) must not exceed median_ms ({self.median_ms})")
        return self


class MeasurementBatch(Strict):
    """POST /measurements: results of one measurement run; idempotent on (run_id, key)."""

    device: str = Field(pattern=NAME_PATTERN)
    runtime: str = Field(min_length=1, max_length=64)
    runtime_version: str | None = None
    threads: int = Field(ge=1)
    agent: str = Field(min_length=1, max_length=128)
    run_id: uuid.UUID
    job_id: int | None = None
    device_state: dict[str, Any] = Field(default_factory=dict)  # thermal status etc. at run time
    results: list[MeasurementResult] = Field(min_length=1)


class MeasurementBatchResult(BaseModel):
    run_id: uuid.UUID
    stored: int
    duplicates: int


# ---- jobs ---------------------------------------------------------------------------------
class JobState(str, Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class JobCreate(Strict):
    device: str = Field(pattern=NAME_PATTERN)
    runtime: str = Field(min_length=1, max_length=64)
    threads: int = Field(ge=1)
    keys: list[str] = Field(min_length=1)
    force: bool = False

    @field_validator("keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        return [check_key(k) for k in keys]


class JobCreated(BaseModel):
    id: int
    state: JobState
    total: int
    already_present: int
    pending: int


class Job(BaseModel):
    id: int
    device: str
    runtime: str
    threads: int
    state: JobState
    total: int
    done: int
    failed: int
    pending: int
    pending_keys: list[str]
    agent: str | None = None
    lease_expires_at: datetime | None = None
    created_at: datetime
    errors: dict[str, str] = Field(default_factory=dict)


class JobClaim(Strict):
    device: str = Field(pattern=NAME_PATTERN)
    agent: str = Field(min_length=1, max_length=128)
    lease_s: float = Field(default=300.0, gt=0, le=86400)


class JobClaimed(BaseModel):
    id: int
    device: str
    runtime: str
    threads: int
    keys: list[str]
    lease_expires_at: datetime


class JobHeartbeat(Strict):
    agent: str = Field(min_length=1, max_length=128)
    lease_s: float = Field(default=300.0, gt=0, le=86400)


class JobFail(Strict):
    key: str
    error: str = Field(min_length=1, max_length=4000)

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        return check_key(key)


class ErrorBody(BaseModel):
    """Every 4xx: ``detail`` is a message; ``errors`` lists (field, reason) for validation failures."""

    detail: str
    errors: list[dict[str, str]] = Field(default_factory=list)
