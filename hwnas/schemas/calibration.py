"""A table's calibration against whole-network measurements."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from hwnas.schemas.base import ARCH_ID_PATTERN, Int32, Strict, Text, Threads
from pydantic import BaseModel, Field, field_validator

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
