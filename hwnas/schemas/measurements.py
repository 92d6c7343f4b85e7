"""Operator measurements as the agents upload them."""

from __future__ import annotations

import math
import uuid
from typing import Any, ClassVar, Self

from hwnas.schemas.base import INT32_MAX, MAX_KEYS, MAX_SAMPLES, NAME_PATTERN, FreeJson, JobId, KeyText, Strict, Text, Threads
from pydantic import BaseModel, Field, field_validator, model_validator


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
