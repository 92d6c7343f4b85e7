"""A run's device state gathers what every batch of the run sends (``history.merge_state``), on each database.

An agent uploads a run in batches, each with the state of its own items — ExecuTorch's delegation per key
above all — so the run must keep every batch's keys, not only the first batch's."""

from __future__ import annotations

import json
import uuid

import sqlalchemy as sa

from hwnas.client import ProfilerClient
from tests.support.app_server import AppServer
from tests.support.measurements import batch, key, result


def _state(database_url: str, run_id: uuid.UUID) -> dict:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT run_uuid, device_state FROM measurement_runs")).all()
    finally:
        engine.dispose()
    # run_uuid is a native UUID on PostgreSQL and text on SQLite: compare as text
    (state,) = [s for u, s in rows if str(u).replace("-", "") == run_id.hex]
    return json.loads(state) if isinstance(state, str) else state


def _batch_state(keys: list[str], delegated: str, temp: float, per_run: list[str]) -> dict:
    return {
        "thermal_before": {"status": 0, "temperatures_c": {"cpu": temp}},
        "binary": "executor_runner",
        "executorch": {
            "backend": "xnnpack",
            "pool_threads": 1,
            "event_tracer": True,
            "delegated": {k: delegated for k in keys},
            "inputs_set_per_run": per_run,
        },
    }


def test_later_batches_of_a_run_add_their_keys_to_its_device_state(server: AppServer, agent: ProfilerClient, device: str) -> None:
    run_id = uuid.uuid4()
    first, second = [key(1), key(2)], [key(3)]
    agent.post_measurements(
        batch(
            device,
            [result(k) for k in first],
            runtime="executorch",
            run_id=run_id,
            device_state=_batch_state(first, "all", 41.0, [key(1)]),
        )
    )
    later = batch(
        device,
        [result(k) for k in second],
        runtime="executorch",
        run_id=run_id,
        device_state={
            **_batch_state(second, "partial", 47.5, [key(3)]),
            "executorch": {
                **_batch_state(second, "partial", 47.5, [key(3)])["executorch"],
                "portable_ops": {key(3): ["aten::add.out"]},
            },
        },
    )
    agent.post_measurements(later)
    state = _state(server.database_url, run_id)
    assert state["executorch"]["delegated"] == {key(1): "all", key(2): "all", key(3): "partial"}
    assert state["executorch"]["inputs_set_per_run"] == [key(1), key(3)]
    assert state["executorch"]["portable_ops"] == {key(3): ["aten::add.out"]}  # a key only a later batch had
    # What describes the run stays as its first batch said.
    assert state["thermal_before"]["temperatures_c"] == {"cpu": 41.0}
    assert state["binary"] == "executor_runner" and state["executorch"]["event_tracer"] is True
    # A retried upload stores nothing twice and changes nothing.
    assert agent.post_measurements(later).duplicates == 1
    assert _state(server.database_url, run_id) == state
