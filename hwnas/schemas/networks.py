"""Whole networks: what a job asks to measure, their results and per-operator breakdowns."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from hwnas.schemas.base import ARCH_ID_PATTERN, INT32_MAX, MAX_NETWORKS, ArchDocument, Strict, Text
from hwnas.schemas.measurements import LatencyStats, RunUpload, _finite_nonneg
from hwnas.schemas.tables import LatencySummary
from pydantic import BaseModel, Field, field_validator

# ---- whole networks ---------------------------------------------------------------------------


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
