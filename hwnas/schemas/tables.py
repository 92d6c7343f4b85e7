"""Latency tables: the whole table, its pages and key queries."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from hwnas.schemas.base import MAX_KEYS, KeyText, Strict, Text, Threads
from hwnas.schemas.calibration import LutCalibration
from hwnas.schemas.devices import TableSource
from pydantic import BaseModel, Field


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
