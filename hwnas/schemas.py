"""Pydantic bodies of every REST endpoint: the one contract between server, agent and search."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Literal, Self

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
class LatencySummary(BaseModel):
    """The statistics a served table shows per entry (operator key or network)."""

    median_ms: float
    min_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    std_ms: float | None = None
    n: int


class LutEntry(LatencySummary):
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
    calibration: LutCalibration | None = None  # see Calibration; absent when none was stored


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


class LatencyStats(Strict):
    """Latency statistics of one measured item in one run, as an agent uploads them.

    Shared by operator and network results so that the checks exist once: every statistic
    finite and non-negative, and (where ``check_order``) p10 <= median <= p90, min <= median.
    """

    # Network results never had the ordering check; kept off there so the API accepts what it did.
    check_order: ClassVar[bool] = True

    median_ms: float
    p10_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    iterations: int = Field(ge=1)
    warmup: int = Field(default=0, ge=0)
    samples_ms: list[float] | None = None

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
    def _order(self) -> Self:
        if not self.check_order:
            return self
        if self.p10_ms is not None and self.p10_ms > self.median_ms:
            raise ValueError(f"p10_ms ({self.p10_ms}) must not exceed median_ms ({self.median_ms})")
        if self.p90_ms is not None and self.p90_ms < self.median_ms:
            raise ValueError(f"p90_ms ({self.p90_ms}) must not be below median_ms ({self.median_ms})")
        if self.min_ms is not None and self.min_ms > self.median_ms:
            raise ValueError(f"min_ms ({self.min_ms}) must not exceed median_ms ({self.median_ms})")
        return self


class _OperatorItem(Strict):
    key: str

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        return check_key(key)


# LatencyStats first in the bases: pydantic orders fields base-most first, so ``key`` stays the
# first field of the JSON and the OpenAPI schema, as it was before the statistics were shared.
class MeasurementResult(LatencyStats, _OperatorItem):
    pass


class RunUpload(Strict):
    """What every upload of one measurement run says about the run (its results follow)."""

    device: str = Field(pattern=NAME_PATTERN)
    runtime: str = Field(min_length=1, max_length=64)
    runtime_version: str | None = None
    threads: int = Field(ge=1)
    agent: str = Field(min_length=1, max_length=128)
    run_id: uuid.UUID
    job_id: int | None = None
    device_state: dict[str, Any] = Field(default_factory=dict)  # thermal status etc. at run time


class MeasurementBatch(RunUpload):
    """POST /measurements: results of one measurement run; idempotent on (run_id, key)."""

    results: list[MeasurementResult] = Field(min_length=1)


class MeasurementBatchResult(BaseModel):
    run_id: uuid.UUID
    stored: int
    duplicates: int


# ---- whole networks ---------------------------------------------------------------------------
ARCH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class NetworkSpec(Strict):
    """A whole network to measure: its architecture document (search.arch JSON) and NCHW input shape."""

    arch_id: str = Field(pattern=ARCH_ID_PATTERN)
    arch: dict[str, Any]
    input_shape: list[int] = Field(min_length=4, max_length=4)

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, shape: list[int]) -> list[int]:
        if any(d < 1 for d in shape):
            raise ValueError(f"every dimension must be >= 1, got {shape}")
        return shape

    @field_validator("arch")
    @classmethod
    def _arch(cls, arch: dict[str, Any]) -> dict[str, Any]:
        if "space" not in arch or "choices" not in arch:
            raise ValueError("an architecture document needs 'space' and 'choices'")
        return arch


class _NetworkItem(Strict):
    arch_id: str = Field(pattern=ARCH_ID_PATTERN)


class NetworkResult(LatencyStats, _NetworkItem):  # bases in this order: arch_id stays the first field
    """Latency of one whole network in one run; ``samples_ms`` holds the burst minimum of every round, in order."""

    check_order: ClassVar[bool] = False


class NetworkMeasurementBatch(RunUpload):
    """POST /networks/measurements: whole-network results of one run; idempotent on (run_id, arch_id)."""

    results: list[NetworkResult] = Field(min_length=1)


class NetworkEntry(LatencySummary):
    samples_ms: list[float] | None = None
    measured_at: datetime


class NetworkTable(BaseModel):
    """GET /devices/{name}/networks: the latest valid measurement per network for one (device, runtime, threads)."""

    device: str
    runtime: str
    runtime_version: str | None = None
    threads: int
    unit: Literal["ms"] = "ms"
    entries: dict[str, NetworkEntry]


# ---- calibration ------------------------------------------------------------------------------
class Calibration(Strict):
    """A correction of a table's network predictions: ``measured ≈ scale · predicted + offset_ms``.

    Stored per (device, runtime, threads) with PUT /lut/{device}/calibration and served inside
    GET /lut, so every search that pulls the table applies it.
    """

    runtime: str = Field(min_length=1, max_length=64)
    threads: int = Field(ge=1)
    scale: float = Field(gt=0)
    offset_ms: float = 0.0
    networks: int = Field(default=0, ge=0)  # how many measured networks it was fitted on
    method: str = Field(default="linear", max_length=64)
    mape_before: float | None = None
    mape_after: float | None = None

    @field_validator("scale", "offset_ms")
    @classmethod
    def _finite(cls, v: float, info: Any) -> float:
        if not math.isfinite(v):
            raise ValueError(f"{info.field_name} must be a finite number, got {v}")
        return v


class LutCalibration(BaseModel):
    scale: float
    offset_ms: float
    networks: int = 0
    method: str = "linear"
    mape_before: float | None = None
    mape_after: float | None = None
    created_at: datetime


# ---- jobs ---------------------------------------------------------------------------------
class JobState(str, Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class JobCreate(Strict):
    """A profiling job: operator keys and/or whole networks; ``force`` measures what the table has too."""

    device: str = Field(pattern=NAME_PATTERN)
    runtime: str = Field(min_length=1, max_length=64)
    threads: int = Field(ge=1)
    keys: list[str] = Field(default_factory=list)
    networks: list[NetworkSpec] = Field(default_factory=list)
    force: bool = False

    @field_validator("keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        return [check_key(k) for k in keys]

    @model_validator(mode="after")
    def _something(self) -> "JobCreate":
        if not self.keys and not self.networks:
            raise ValueError("a job needs at least one operator key or one network")
        seen: set[str] = set()
        for net in self.networks:
            if net.arch_id in seen:
                raise ValueError(f"network {net.arch_id!r} appears twice in networks")
            seen.add(net.arch_id)
        return self


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
    pending_networks: list[str] = Field(default_factory=list)  # arch ids
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
    networks: list[NetworkSpec] = Field(default_factory=list)
    lease_expires_at: datetime


class JobHeartbeat(Strict):
    agent: str = Field(min_length=1, max_length=128)
    lease_s: float = Field(default=300.0, gt=0, le=86400)


class JobFail(Strict):
    """One item of a job could not be measured: an operator ``key`` or a network ``arch_id``."""

    key: str | None = None
    arch_id: str | None = Field(default=None, pattern=ARCH_ID_PATTERN)
    error: str = Field(min_length=1, max_length=4000)

    @field_validator("key")
    @classmethod
    def _key(cls, key: str | None) -> str | None:
        return None if key is None else check_key(key)

    @model_validator(mode="after")
    def _one(self) -> "JobFail":
        if (self.key is None) == (self.arch_id is None):
            raise ValueError("give exactly one of key and arch_id")
        return self


class ErrorBody(BaseModel):
    """Every 4xx: ``detail`` is a message; ``errors`` lists (field, reason) for validation failures."""

    detail: str
    errors: list[dict[str, str]] = Field(default_factory=list)
