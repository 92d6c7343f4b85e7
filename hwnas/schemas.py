"""Pydantic bodies of every REST endpoint: the one contract between server, agent and search."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from hwnas.opkey import OVERHEAD_KEY, OpKeyError, OpSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

# ---- limits: what the columns and both databases can hold (docs/server.md, "Limits") ------------------
INT32_MAX = 2**31 - 1  # INTEGER columns and job ids, on SQLite and PostgreSQL alike
MAX_KEYS = 20_000  # operator keys in one request (job, query, results of one upload)
MAX_NETWORKS = 1_000  # networks in one job or one upload
MAX_SAMPLES = 100_000  # samples_ms of one result
MAX_THREADS = 1_024
MAX_KEY_LENGTH = 256  # operators.key
MAX_JSON_DEPTH = 8  # props, device_state, architecture documents
MAX_JSON_BYTES = 64 * 1024  # one free-form JSON value, serialised
MAX_ARCH_BYTES = 256 * 1024  # one architecture document, serialised
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL


def Text(max_length: int, min_length: int = 0) -> Any:  # a type factory, used like a type
    """A string that fits a VARCHAR(max_length) column on both databases (no NUL)."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length, pattern=NO_NUL)]


Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
Threads = Annotated[int, Field(ge=1, le=MAX_THREADS)]
JobId = Annotated[int, Field(ge=1, le=INT32_MAX)]


def check_json(value: Any, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A free-form JSON value both databases store and every reader can serve back.

    Bounded depth (a deeply nested value is stored, then breaks serialisation for every reader)
    and size, no NUL in keys or strings, finite numbers, integers within 64 bits.
    """
    import json

    def walk(v: Any, depth: int) -> None:
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        if isinstance(v, dict):
            for k, item in v.items():
                if "\x00" in k:
                    raise ValueError("keys must not contain NUL")
                walk(item, depth + 1)
        elif isinstance(v, list):
            for item in v:
                walk(item, depth + 1)
        elif isinstance(v, str):
            if "\x00" in v:
                raise ValueError("strings must not contain NUL")
        elif isinstance(v, bool) or v is None:
            pass
        elif isinstance(v, int):
            if not -(2**63) <= v < 2**63:
                raise ValueError(f"integer {str(v)[:20]}… does not fit 64 bits")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"numbers must be finite, got {v}")

    walk(value, 1)
    size = len(json.dumps(value, separators=(",", ":")))
    if size > max_bytes:
        raise ValueError(f"{size} bytes serialised; at most {max_bytes}")
    return value


FreeJson = Annotated[dict[str, Any], AfterValidator(check_json)]
ArchDocument = Annotated[dict[str, Any], AfterValidator(lambda v: check_json(v, MAX_JSON_DEPTH, MAX_ARCH_BYTES))]
KeyText = Text(MAX_KEY_LENGTH, 1)


def check_key(key: str) -> str:
    """Validate an operator key (or the overhead key), raising ValueError that names the bad part."""
    if key == OVERHEAD_KEY:
        return key
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"longer than {MAX_KEY_LENGTH} characters")
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

    serial: Text(256) | None = None
    manufacturer: Text(256) | None = None
    model: Text(256) | None = None
    soc: Text(256) | None = None
    abi: Text(64) | None = None
    os_version: Text(128) | None = None
    cpu_cores: int | None = Field(default=None, ge=1, le=4096)
    cpu_max_freqs_khz: list[Int32] = Field(default_factory=list, max_length=4096)
    props: FreeJson = Field(default_factory=dict)


# ---- imported (published) tables: docs/tables-you-can-use.md ------------------------------------
# hwnas-fit: a table `hwnas lut fit` fitted from whole-network timings, with its fit quality (TableFit).
IMPORT_FORMATS = ("ofa-yaml", "proxyless-yaml", "hwnasbench-json", "hwnas-fit")
ImportFormat = Literal["ofa-yaml", "proxyless-yaml", "hwnasbench-json", "hwnas-fit"]
ExportFormat = Literal["ofa-yaml", "proxyless-yaml"]
MAX_IMPORT_BYTES = 512 * 1024  # one published file (the largest known is 24 KB)


class UnmappedEntry(BaseModel):
    """A published key left out of an imported table, and why (never guessed)."""

    key: str
    reason: str


class ImportSource(Strict):
    """Where a published table comes from, as the importer states it."""

    project: Text(256, 1)  # e.g. "mit-han-lab/once-for-all"
    file: Text(512, 1)  # path in the source repository
    commit: Text(64) | None = None
    source_device: Text(256, 1)  # the device the authors measured, e.g. "Samsung Galaxy Note10"
    source_runtime: Text(128) | None = None  # e.g. "TF-Lite"
    licence: Text(1000, 1)
    url: Text(512) | None = None


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class TableFit(Strict):
    """How a table fitted from whole-network timings (hwnas lut fit) predicts networks it was not fitted on."""

    space: Text(256, 1)  # the search space the timed networks belong to
    networks_file: Text(512, 1)  # the timings file's name
    networks_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    train_networks: int = Field(ge=2, le=INT32_MAX)  # fitted on (the table is then refitted on all networks)
    test_networks: int = Field(ge=0, le=INT32_MAX)  # held out
    holdout: FiniteFloat = Field(ge=0, lt=1)
    seed: int = Field(ge=-INT32_MAX, le=INT32_MAX)
    mape_pct: FiniteFloat | None = Field(None, ge=0)  # on the held-out networks; None without a hold-out
    kendall_tau: FiniteFloat | None = Field(None, ge=-1, le=1)  # None with under 2 held out, or all tied
    max_abs_error_ms: FiniteFloat | None = Field(None, ge=0)
    train_mape_pct: FiniteFloat = Field(ge=0)
    constant_ms: FiniteFloat = Field(ge=0)


class TableSource(BaseModel):
    """Provenance of an imported table, served with the table (GET /lut) and the device."""

    kind: Literal["imported"] = "imported"
    format: str
    project: str
    file: str
    commit: str | None = None
    source_device: str
    source_runtime: str | None = None
    licence: str
    url: str | None = None
    column: str | None = None  # the device column of a multi-device file (HW-NAS-Bench)
    gauge: str | None = None  # how entries relate to latency when they are not per-block ms
    content_sha256: str
    imported_at: datetime
    imported_by: str | None = None
    unmappable: list[UnmappedEntry] = Field(default_factory=list)
    fit: TableFit | None = None  # hwnas-fit tables: the fit's quality
    read_only: bool = True


class LutImport(Strict):
    """POST /lut/import (admin): a published table file, the table to create from it, and its provenance."""

    format: ImportFormat
    content: str = Field(max_length=MAX_IMPORT_BYTES, pattern=NO_NUL)
    device: str = Field(pattern=NAME_PATTERN)
    runtime: Text(64, 1)
    runtime_version: Text(64) | None = None
    threads: Threads = 1
    column: Text(64) | None = None  # hwnasbench-json: which device of the file (pixel3, raspi4, eyeriss, fpga)
    source: ImportSource
    replace: bool = False  # a table imported before from different content: replace its entries


class LutImportResult(BaseModel):
    device: str
    runtime: str
    threads: int
    status: Literal["created", "unchanged", "replaced"]
    entries: int
    overhead_ms: float | None = None
    unmappable: list[UnmappedEntry] = Field(default_factory=list)


class TableInfo(BaseModel):
    runtime: str
    runtime_version: str | None
    threads: int
    entries: int
    source: TableSource | None = None  # imported tables only


class DeviceThermal(BaseModel):
    """What the agent read before the device's latest measurement run (Android's thermal status 0–6)."""

    status: int | None = None
    max_temp_c: float | None = None
    at: datetime


class Device(DeviceInfo):
    name: str
    thermal: DeviceThermal | None = None
    owner: str | None = None  # the agent token that registered it (shown to callers with a token)
    created_at: datetime
    updated_at: datetime  # when the agent last registered it (PUT /devices/{name})
    # Its latest activity: registered, a measurement upload, a job claimed or its lease renewed (None: an older server).
    last_seen_at: datetime | None = None
    # The agent's loopback phone (device-agent loopback-device): a fake phone whose benchmarks are host stand-ins.
    loopback: bool = False
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
    source: TableSource | None = None  # imported tables: where they come from (read-only)


# Columns GET /lut/{device}/entries sorts by (the dashboard's table headings).
LutSort = Literal["key", "type", "median_ms", "min_ms", "p10_ms", "p90_ms", "std_ms", "n", "measured_at"]
LUT_PAGE_MAX = 2000  # rows in one page


class LutRow(LutEntry):
    """One entry of a table page: its key and operator type (the key's block, ``ir`` of ``ir_k3_e6...``)."""

    key: str
    type: str


class LutPage(BaseModel):
    """GET /lut/{device}/entries: one page of a table's entries, sorted and filtered by the database.

    ``entries`` counts the whole table, ``matched`` what the filter (``type``, ``key``) leaves; ``types`` is every
    operator type of the table with its entry count; the rest is the table's header as GET /lut has it.
    """

    device: str
    runtime: str
    runtime_version: str | None = None
    threads: int
    unit: Literal["ms"] = "ms"
    overhead_ms: float | None = None
    calibration: LutCalibration | None = None
    source: TableSource | None = None
    entries: int
    matched: int
    types: dict[str, int]
    sort: LutSort
    order: Literal["asc", "desc"]
    offset: int
    limit: int
    rows: list[LutRow]


class LutQuery(Strict):
    """Which of ``keys`` (at most MAX_KEYS) the table has; the grammar of each key is checked off the event loop."""

    runtime: Text(64, 1) | None = None
    threads: Threads | None = None
    keys: list[KeyText] = Field(max_length=MAX_KEYS)


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
    iterations: int = Field(ge=1, le=INT32_MAX)
    warmup: int = Field(default=0, ge=0, le=INT32_MAX)
    samples_ms: list[float] | None = Field(default=None, max_length=MAX_SAMPLES)

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
    key: KeyText  # grammar: checked off the event loop (services call checked_keys)


# LatencyStats first in the bases: pydantic orders fields base-most first, so ``key`` stays the
# first field of the JSON and the OpenAPI schema, as it was before the statistics were shared.
class MeasurementResult(LatencyStats, _OperatorItem):
    pass


class RunUpload(Strict):
    """What every upload of one measurement run says about the run (its results follow)."""

    device: str = Field(pattern=NAME_PATTERN)
    runtime: Text(64, 1)
    runtime_version: Text(64) | None = None
    threads: Threads
    agent: Text(128, 1)
    run_id: uuid.UUID
    job_id: JobId | None = None
    device_state: FreeJson = Field(default_factory=dict)  # thermal status etc. at run time


class MeasurementBatch(RunUpload):
    """POST /measurements: results of one measurement run; idempotent on (run_id, key)."""

    results: list[MeasurementResult] = Field(min_length=1, max_length=MAX_KEYS)


class MeasurementBatchResult(BaseModel):
    run_id: uuid.UUID
    stored: int
    duplicates: int


# ---- whole networks ---------------------------------------------------------------------------
ARCH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class NetworkSpec(Strict):
    """A whole network to measure: its architecture document (search.arch JSON) and NCHW input shape."""

    arch_id: str = Field(pattern=ARCH_ID_PATTERN)
    arch: ArchDocument
    input_shape: list[Annotated[int, Field(le=1_000_000)]] = Field(min_length=4, max_length=4)

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


MAX_PROFILED_OPERATORS = 10_000  # operator events of one network's breakdown


class OperatorTiming(Strict):
    """One operator of a network as the runtime's own profiler timed it inside the network."""

    name: Text(256, 1)  # the runtime's event name, e.g. XNNPACK's "Convolution (NHWC, F32) IGEMM #3"
    backend: Text(64) | None = None  # the delegate that ran it ("XnnpackBackend"); None: the runtime's own kernel
    median_ms: float
    min_ms: float | None = None

    @field_validator("median_ms", "min_ms")
    @classmethod
    def _finite(cls, v: float | None, info: Any) -> float | None:
        return _finite_nonneg(info.field_name, v)


class OperatorBreakdown(Strict):
    """Per-operator times of a whole network from a separate profiled pass (ExecuTorch's ETDump).

    Traced runs pay the tracer's cost, so these runs are not the network's latency (``median_ms`` of the
    result is, measured untraced); ``execute_ms`` is the traced ``Method::execute`` for scale.
    """

    source: Literal["etdump"] = "etdump"
    runs: int = Field(ge=1, le=INT32_MAX)  # traced executions the statistics are over
    execute_ms: float | None = None
    operators: list[OperatorTiming] = Field(max_length=MAX_PROFILED_OPERATORS)  # in execution order

    @field_validator("execute_ms")
    @classmethod
    def _finite(cls, v: float | None, info: Any) -> float | None:
        return _finite_nonneg(info.field_name, v)


class NetworkResult(LatencyStats, _NetworkItem):  # bases in this order: arch_id stays the first field
    """Latency of one whole network in one run; ``samples_ms`` holds the burst minimum of every round, in order."""

    check_order: ClassVar[bool] = False
    operator_breakdown: OperatorBreakdown | None = None  # runtime executorch: its ETDump, per operator


class NetworkMeasurementBatch(RunUpload):
    """POST /networks/measurements: whole-network results of one run; idempotent on (run_id, arch_id)."""

    results: list[NetworkResult] = Field(min_length=1, max_length=MAX_NETWORKS)


class NetworkEntry(LatencySummary):
    samples_ms: list[float] | None = None
    measured_at: datetime
    operator_breakdown: OperatorBreakdown | None = None  # stored with the measurement (runtime executorch)


class NetworkTable(BaseModel):
    """GET /devices/{name}/networks: the latest valid measurement per network for one (device, runtime, threads)."""

    device: str
    runtime: str
    runtime_version: str | None = None
    threads: int
    unit: Literal["ms"] = "ms"
    entries: dict[str, NetworkEntry]


# ---- calibration ------------------------------------------------------------------------------
MAX_CALIBRATION_POINTS = 1000


class CalibrationPoint(Strict):
    """One whole network behind a calibration: the table's prediction (uncalibrated) and its measurement."""

    arch_id: str = Field(pattern=ARCH_ID_PATTERN)
    predicted_ms: float = Field(gt=0, le=1e7)
    measured_ms: float = Field(gt=0, le=1e7)


class Calibration(Strict):
    """A correction of a table's network predictions: ``measured ≈ scale · predicted + offset_ms``.

    Stored per (device, runtime, threads) with PUT /lut/{device}/calibration and served inside
    GET /lut, so every search that pulls the table applies it.
    """

    runtime: Text(64, 1)
    threads: Threads
    scale: float = Field(gt=0)
    offset_ms: float = 0.0
    networks: Int32 = 0  # how many measured networks it was fitted on
    method: Text(64) = "linear"
    mape_before: float | None = None
    mape_after: float | None = None
    # The networks it was checked on, so a reader can see the fit (the dashboard's validation page).
    points: list[CalibrationPoint] = Field(default_factory=list, max_length=MAX_CALIBRATION_POINTS)

    @field_validator("scale", "offset_ms", "mape_before", "mape_after")
    @classmethod
    def _finite(cls, v: float | None, info: Any) -> float | None:
        if v is None:
            return v
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


class CalibrationDetail(LutCalibration):
    """GET /lut/{device}/calibration: the calibration in force with the networks it was checked on."""

    device: str
    runtime: str
    threads: int
    points: list[CalibrationPoint] = Field(default_factory=list)


# ---- jobs ---------------------------------------------------------------------------------
class JobState(str, Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class JobCreate(Strict):
    """A profiling job: operator keys and/or whole networks; ``force`` measures what the table has too."""

    device: str = Field(pattern=NAME_PATTERN)
    runtime: Text(64, 1)
    threads: Threads
    keys: list[KeyText] = Field(default_factory=list, max_length=MAX_KEYS)  # grammar: see checked_keys
    networks: list[NetworkSpec] = Field(default_factory=list, max_length=MAX_NETWORKS)
    force: bool = False

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


PENDING_SHOWN = 1_000  # pending keys, networks and errors a job shows; counts are always complete


class JobNetworkItem(BaseModel):
    """One whole network of a job: where it stands, and its measurement once done."""

    arch_id: str
    state: Literal["pending", "done", "failed"]
    median_ms: float | None = None  # the run's measurement that completed it
    min_ms: float | None = None
    error: str | None = None


class JobNetworks(BaseModel):
    """The whole networks of a job (measured interleaved with its operator keys): counts, and the first ones."""

    total: int
    done: int
    failed: int
    pending: int
    items: list[JobNetworkItem]  # in the job's order, at most the job's pending limit


class Job(BaseModel):
    """A job's progress; ``pending_keys``, ``pending_networks`` and ``errors`` list at most PENDING_SHOWN each."""

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
    reason: str | None = None  # why the whole job failed or was cancelled
    holder: str | None = None  # the agent token holding the lease
    networks: JobNetworks | None = None  # None: the job has no whole networks


class JobClaim(Strict):
    device: str = Field(pattern=NAME_PATTERN)
    agent: Text(128, 1)
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
    agent: Text(128, 1)
    lease_s: float = Field(default=300.0, gt=0, le=86400)


class JobFail(Strict):
    """One item of a job could not be measured: an operator ``key`` or a network ``arch_id``."""

    key: KeyText | None = None
    arch_id: str | None = Field(default=None, pattern=ARCH_ID_PATTERN)
    error: Text(4000, 1)

    @field_validator("key")
    @classmethod
    def _key(cls, key: str | None) -> str | None:
        return None if key is None else check_key(key)

    @model_validator(mode="after")
    def _one(self) -> "JobFail":
        if (self.key is None) == (self.arch_id is None):
            raise ValueError("give exactly one of key and arch_id")
        return self


def checked_keys(keys: list[str], field: str) -> list[dict[str, str]]:
    """(field, reason) for every key of ``keys`` that breaks the operator-key grammar (DESIGN.md).

    Separate from the models' validation so that the server can run it in its thread pool: at
    MAX_KEYS keys it costs a few hundred milliseconds, which must not stall the event loop.
    """
    errors = []
    for i, k in enumerate(keys):
        try:
            check_key(k)
        except ValueError as exc:
            errors.append({"field": f"{field}[{i}]", "reason": f"{k!r}: {exc}"})
    return errors


class ErrorBody(BaseModel):
    """Every 4xx: ``detail`` is a message; ``errors`` lists (field, reason) for validation failures."""

    detail: str
    errors: list[dict[str, str]] = Field(default_factory=list)
