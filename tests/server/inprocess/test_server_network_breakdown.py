"""A whole network's per-operator breakdown (ExecuTorch's ETDump) is stored with its measurement and served back,
on SQLite and PostgreSQL (the ``server`` fixture runs this module on each)."""

from __future__ import annotations

import uuid

import pytest

from hwnas.client import ApiError, ProfilerClient
from hwnas.schemas import (
    JobCreate,
    NetworkMeasurementBatch,
    NetworkResult,
    NetworkSpec,
    OperatorBreakdown,
    OperatorTiming,
)

ARCH = {"space": "fbnet-fmnist", "choices": ["ir_k3_e1"] * 9}


def _spec(arch_id: str) -> NetworkSpec:
    return NetworkSpec(arch_id=arch_id, arch=ARCH, input_shape=[1, 1, 28, 28])


def _breakdown() -> OperatorBreakdown:
    return OperatorBreakdown(
        runs=9,
        execute_ms=0.183,
        operators=[
            OperatorTiming(name="Convolution (NHWC, F32) IGEMM #1", backend="XnnpackBackend", median_ms=0.005, min_ms=0.005),
            OperatorTiming(name="Convolution (NHWC, F32) DWConv #1", backend="XnnpackBackend", median_ms=0.044, min_ms=0.044),
            OperatorTiming(name="aten::add.out", median_ms=0.002),  # a portable kernel: no backend
        ],
    )


def _batch(device: str, results: list[NetworkResult], run_id: uuid.UUID | None = None) -> NetworkMeasurementBatch:
    return NetworkMeasurementBatch(
        device=device, runtime="executorch", threads=1, agent="a1", run_id=run_id or uuid.uuid4(), results=results
    )


def test_breakdown_is_stored_and_returned(client: ProfilerClient, agent: ProfilerClient, device: str) -> None:
    with_it, without = f"{uuid.uuid4().hex[:16]}", f"{uuid.uuid4().hex[:16]}"
    client.create_job(JobCreate(device=device, runtime="executorch", threads=1, networks=[_spec(with_it), _spec(without)]))
    run_id = uuid.uuid4()
    batch = _batch(
        device,
        [
            NetworkResult(arch_id=with_it, median_ms=0.2, min_ms=0.18, iterations=8, operator_breakdown=_breakdown()),
            NetworkResult(arch_id=without, median_ms=0.3, min_ms=0.28, iterations=8),
        ],
        run_id,
    )
    assert agent.post_network_measurements(batch).stored == 2
    table = client.get_networks(device, runtime="executorch", threads=1)
    assert table.entries[with_it].operator_breakdown == _breakdown()  # every field, in execution order
    assert table.entries[without].operator_breakdown is None
    # A retried upload (here with another breakdown) stores nothing twice and changes nothing.
    other = OperatorBreakdown(runs=1, operators=[])
    retry = _batch(device, [NetworkResult(arch_id=with_it, median_ms=0.2, iterations=8, operator_breakdown=other)], run_id)
    assert agent.post_network_measurements(retry).duplicates == 1
    assert client.get_networks(device, runtime="executorch").entries[with_it].operator_breakdown == _breakdown()
    # A later run's measurement is the one served, with its own breakdown (none here).
    agent.post_network_measurements(_batch(device, [NetworkResult(arch_id=with_it, median_ms=0.21, iterations=8)]))
    assert client.get_networks(device, runtime="executorch").entries[with_it].operator_breakdown is None


def test_a_bad_breakdown_is_refused_naming_the_field(client: ProfilerClient, agent: ProfilerClient, device: str) -> None:
    arch_id = uuid.uuid4().hex[:16]
    client.create_job(JobCreate(device=device, runtime="executorch", threads=1, networks=[_spec(arch_id)]))
    bad = _breakdown().model_dump()
    bad["operators"][1]["median_ms"] = -1.0
    breakdown = OperatorBreakdown.model_construct(
        **{**bad, "operators": [OperatorTiming.model_construct(**o) for o in bad["operators"]]}
    )
    body = _batch(
        device,
        [NetworkResult.model_construct(arch_id=arch_id, median_ms=0.2, iterations=8, warmup=0, operator_breakdown=breakdown)],
    )
    with pytest.raises(ApiError) as refused:
        agent.post_network_measurements(body)
    assert refused.value.status == 422
    assert "operator_breakdown" in str(refused.value.errors) and "median_ms" in str(refused.value.errors)
