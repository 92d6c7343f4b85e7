"""Whole-network jobs round trip through a real server, on SQLite and PostgreSQL.

Create a job with keys and networks, claim it (the networks come with their documents),
upload operator and network results of one run, see the job finish and the networks table
serve the latest measurement; retries are idempotent; a failed network is reported by arch
id; a calibration is stored and served inside GET /lut with a new ETag.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwnas.client import ApiError, NotFoundError
from hwnas.schemas import (
    Calibration,
    DeviceInfo,
    JobClaim,
    JobCreate,
    JobFail,
    JobState,
    MeasurementBatch,
    MeasurementResult,
    NetworkMeasurementBatch,
    NetworkResult,
    NetworkSpec,
)
from tests.support.live_server import LiveServer, start_live_server

KEYS = ["conv_k3_s1_o8@1x1x28x28", "ir_k3_e1_g1_s1_o8@1x8x28x28", "gap_fc_o10@1x128x4x4"]


def _net(i: int) -> NetworkSpec:
    doc = {"space": "fbnet-fmnist", "choices": ["ir_k3_e1"] * 8 + [["skip", "ir_k3_e3", "maxpool_k3"][i]]}
    return NetworkSpec(arch_id=f"{i:016x}", arch=doc, input_shape=[1, 1, 28, 28])


def _net_result(arch_id: str, minima: list[float]) -> NetworkResult:
    return NetworkResult(
        arch_id=arch_id,
        median_ms=max(minima) + 0.01,
        min_ms=sorted(minima)[len(minima) // 2],
        iterations=5 * len(minima),
        samples_ms=minima,
    )


@pytest.fixture
def server(any_database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A server of its own on each database kind (the round trip runs on SQLite and PostgreSQL)."""
    srv = start_live_server(any_database_url, tmp_path)
    try:
        with srv.client("agent") as agent:
            agent.put_device("host-cpu", DeviceInfo(cpu_cores=2))
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def shared(live_server: LiveServer) -> LiveServer:
    """The module's SQLite server with a fresh device ``host-cpu`` (earlier tests' devices do not matter)."""
    with live_server.client("agent") as agent:  # registered by the agent token: its owner, who may upload for it
        agent.put_device("host-cpu", DeviceInfo(cpu_cores=2))
    return live_server


def test_network_job_round_trip(server: LiveServer) -> None:
    nets = [_net(0), _net(1), _net(2)]
    with server.client("client") as client, server.client("agent") as agent:
        created = client.create_job(JobCreate(device="host-cpu", runtime="onnxruntime", threads=1, keys=KEYS, networks=nets))
        assert (created.total, created.pending, created.state) == (6, 6, JobState.queued)
        job = client.get_job(created.id)
        assert job.pending_networks == [n.arch_id for n in nets] and job.pending_keys == KEYS

        claimed = agent.claim_job(JobClaim(device="host-cpu", agent="a1"))
        assert claimed is not None and claimed.keys == KEYS
        assert [n.arch_id for n in claimed.networks] == [n.arch_id for n in nets]
        assert claimed.networks[1].arch == nets[1].arch and claimed.networks[1].input_shape == [1, 1, 28, 28]

        run_id = uuid.uuid4()
        ops = MeasurementBatch(
            device="host-cpu",
            runtime="onnxruntime",
            threads=1,
            agent="a1",
            run_id=run_id,
            job_id=created.id,
            results=[MeasurementResult(key=k, median_ms=0.1, min_ms=0.09, iterations=10) for k in KEYS],
        )
        assert agent.post_measurements(ops).stored == 3
        assert client.get_job(created.id).state == JobState.running  # networks still pending

        agent.fail_key(created.id, JobFail(arch_id=nets[2].arch_id, error="export failed"))
        batch = NetworkMeasurementBatch(
            device="host-cpu",
            runtime="onnxruntime",
            threads=1,
            agent="a1",
            run_id=run_id,
            job_id=created.id,
            results=[_net_result(nets[0].arch_id, [1.0, 1.1, 1.2, 1.05]), _net_result(nets[1].arch_id, [2.0, 2.1, 2.2, 2.05])],
        )
        first = agent.post_network_measurements(batch)
        again = agent.post_network_measurements(batch)  # a retried upload stores nothing twice
        assert (first.stored, first.duplicates, again.stored, again.duplicates) == (2, 0, 0, 2)

        job = client.get_job(created.id)
        assert (job.state, job.done, job.failed, job.pending, job.pending_networks) == (JobState.done, 5, 1, 0, [])
        assert job.errors == {nets[2].arch_id: "export failed"}

        table = client.get_networks("host-cpu", runtime="onnxruntime", threads=1)
        assert set(table.entries) == {nets[0].arch_id, nets[1].arch_id}
        entry = table.entries[nets[0].arch_id]
        assert entry.samples_ms == [1.0, 1.1, 1.2, 1.05] and entry.min_ms == pytest.approx(1.1) and entry.n == 20

        # A later run wins; without force, networks measured already are not queued again.
        later = NetworkMeasurementBatch(
            device="host-cpu",
            runtime="onnxruntime",
            threads=1,
            agent="a2",
            run_id=uuid.uuid4(),
            results=[_net_result(nets[0].arch_id, [0.9, 0.95])],
        )
        agent.post_network_measurements(later)
        assert client.get_networks("host-cpu").entries[nets[0].arch_id].samples_ms == [0.9, 0.95]
        skip = client.create_job(JobCreate(device="host-cpu", runtime="onnxruntime", threads=1, networks=nets[:2]))
        assert (skip.state, skip.total, skip.already_present) == (JobState.done, 0, 2)
        forced = client.create_job(JobCreate(device="host-cpu", runtime="onnxruntime", threads=1, networks=nets[:2], force=True))
        assert forced.pending == 2


def test_network_rejections_name_the_field(shared: LiveServer) -> None:
    with shared.client("client") as client, shared.client("agent") as agent:
        with pytest.raises(ApiError) as empty:
            client.create_job(
                JobCreate.model_construct(device="host-cpu", runtime="onnxruntime", threads=1, keys=[], networks=[], force=False)
            )
        assert empty.value.status == 422 and "operator key or one network" in empty.value.detail
        batch = NetworkMeasurementBatch(
            device="host-cpu",
            runtime="onnxruntime",
            threads=1,
            agent="a",
            run_id=uuid.uuid4(),
            results=[_net_result("feedfacefeedface", [1.0])],
        )
        with pytest.raises(NotFoundError) as unknown:
            agent.post_network_measurements(batch)
        assert unknown.value.errors[0]["field"] == "results[0].arch_id"
        with pytest.raises(NotFoundError) as none:
            client.get_networks("host-cpu", runtime="torchscript")
        assert none.value.errors[0]["field"] == "runtime"
        with pytest.raises(ApiError) as role:
            client.post_network_measurements(batch)  # a client token may not upload
        assert role.value.status == 403


def test_calibration_is_served_with_the_table(shared: LiveServer) -> None:
    with shared.client("client") as client, shared.client("agent") as agent:
        cal = Calibration(runtime="onnxruntime", threads=1, scale=1.1, offset_ms=0.05, networks=10)
        with pytest.raises(NotFoundError):
            agent.put_calibration("host-cpu", cal)  # no table yet
        agent.post_measurements(
            MeasurementBatch(
                device="host-cpu",
                runtime="onnxruntime",
                threads=1,
                agent="a",
                run_id=uuid.uuid4(),
                results=[MeasurementResult(key=KEYS[0], median_ms=0.2, iterations=5)],
            )
        )
        before = client.get_lut("host-cpu")
        assert before.lut is not None and before.lut.calibration is None
        stored = agent.put_calibration("host-cpu", cal)  # host-cpu's owner (the owner rule)
        assert (stored.scale, stored.offset_ms, stored.networks) == (1.1, 0.05, 10)
        after = client.get_lut("host-cpu", etag=before.etag)
        assert not after.not_modified and after.etag != before.etag  # cached copies refresh
        assert after.lut is not None and after.lut.calibration is not None and after.lut.calibration.scale == pytest.approx(1.1)
        agent.put_calibration("host-cpu", cal.model_copy(update={"scale": 0.9}))
        latest = client.get_lut("host-cpu").lut
        assert latest is not None and latest.calibration is not None and latest.calibration.scale == pytest.approx(0.9)
