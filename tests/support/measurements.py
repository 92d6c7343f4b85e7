"""Builders of valid operator keys, results and measurement batches for tests."""

from __future__ import annotations

import uuid

from hwnas.schemas import MeasurementBatch, MeasurementResult


def key(i: int, c: int = 16) -> str:
    """A distinct valid operator key per ``i``."""
    return f"ir_k3_e6_g1_s1_o{16 + i}@1x{c}x28x28"


def result(k: str, median: float = 1.0, **kw: object) -> MeasurementResult:
    """A plausible result for key ``k`` around ``median``."""
    fields: dict[str, object] = {
        "p10_ms": median * 0.9,
        "p90_ms": median * 1.2,
        "mean_ms": median,
        "std_ms": 0.05,
        "min_ms": median * 0.8,
        "iterations": 50,
        "warmup": 5,
    }
    fields.update(kw)
    return MeasurementResult(key=k, median_ms=median, **fields)  # type: ignore[arg-type]


def batch(
    device: str, results: list[MeasurementResult], runtime: str = "ort", threads: int = 1, **kw: object
) -> MeasurementBatch:
    """A batch of ``results`` for one new run."""
    fields: dict[str, object] = {"runtime_version": "1.17.0", "agent": "test-agent", "run_id": uuid.uuid4()}
    fields.update(kw)
    return MeasurementBatch(device=device, runtime=runtime, threads=threads, results=results, **fields)  # type: ignore[arg-type]
