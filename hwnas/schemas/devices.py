"""Devices and the provenance of the tables they hold (imported, fitted)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from hwnas.schemas.base import INT32_MAX, NAME_PATTERN, NO_NUL, FreeJson, Int32, Strict, Text, Threads
from pydantic import BaseModel, Field


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
