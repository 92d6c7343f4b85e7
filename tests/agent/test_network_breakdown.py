"""Whole networks measured with runtime executorch come with ExecuTorch's per-operator ETDump breakdown: profiled in
a traced pass of its own (runtimes/etdump.py), uploaded with the network's result, served by the API (on SQLite and
PostgreSQL: the ``server`` fixture)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from device_agent.config import AgentConfig
from device_agent.jobloop import Agent
from device_agent.models import ModelCache
from device_agent.platforms.local import LocalDevice
from device_agent.protocol import ProtocolConfig
from hwnas.client import ProfilerClient
from hwnas.schemas import JobCreate, JobState, NetworkSpec
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None,
    reason="ExecuTorch is not installed: pip install 'hwnas[executorch]' (executorch==1.5.1)",
)

# Eight inverted residuals (expand 1x1, depthwise, project 1x1; a residual add where shapes allow) and a skip.
CHOICES = ["ir_k3_e3"] * 8 + ["skip"]
ARCH = {"space": "fbnet-fmnist", "choices": CHOICES}


def _spec() -> NetworkSpec:
    return NetworkSpec(arch_id=f"{uuid.uuid4().hex[:16]}", arch=ARCH, input_shape=[1, 1, 28, 28])


def _kind(name: str) -> str:
    return re.sub(r" #\d+$", "", name)


def test_a_network_profile_lists_its_xnnpack_operators_in_execution_order(model_cache_dir: Path) -> None:
    from device_agent.runtimes.etdump import PROFILE_RUNS, profile_pte

    item = ModelCache(model_cache_dir).network("breakdown-net", ARCH, [1, 1, 28, 28], "executorch")
    breakdown = profile_pte(item.model, item.input_shape, threads=1)
    assert breakdown.runs == PROFILE_RUNS - 1  # the cold first run left out
    ops = breakdown.operators
    assert ops and all(o.backend == "XnnpackBackend" for o in ops)
    kinds = [_kind(o.name) for o in ops]
    # One depthwise convolution per inverted residual, in network order: the stem's convolution comes first.
    assert kinds.count("Convolution (NHWC, F32) DWConv") == 8
    first_conv = next(k for k in kinds if k.startswith("Convolution"))
    assert first_conv != "Convolution (NHWC, F32) DWConv"
    numbers = [int(o.name.rsplit("#", 1)[1]) for o in ops if _kind(o.name) == "Convolution (NHWC, F32) DWConv"]
    assert numbers == sorted(numbers)
    # The operators are parts of the traced execution: together less than it, and most of it.
    total = sum(o.median_ms for o in ops)
    assert breakdown.execute_ms is not None and 0.3 * breakdown.execute_ms < total <= breakdown.execute_ms * 1.02
    assert all(o.min_ms is not None and o.min_ms <= o.median_ms for o in ops)


def test_a_network_measured_with_executorch_is_served_with_its_breakdown(server: LiveServer, model_cache_dir: Path) -> None:
    cfg = AgentConfig(
        once=True,
        poll_s=0.1,
        cache_dir=model_cache_dir,
        measure_overhead=False,
        protocol=ProtocolConfig(warmup=1, iterations=4, rounds=2),
        runtimes=("executorch",),
    )
    agent = Agent(
        LocalDevice(),
        cfg,
        client=ProfilerClient(server.url, token=server.agent_token),
        make_client=lambda: ProfilerClient(server.url, token=server.agent_token),
        local=True,
    )
    agent.connect()
    agent.name = f"breakdown-{uuid.uuid4().hex[:8]}"
    agent.register()
    net = _spec()
    key = "conv_k3_s1_o8@1x1x28x28"
    with server.client() as c:
        job = c.create_job(JobCreate(device=agent.name, runtime="executorch", threads=1, keys=[key], networks=[net]))
    try:
        assert agent.serve() == 1
    finally:
        agent.close()
    with server.client() as c:
        assert c.get_job(job.id).state == JobState.done
        entry = c.get_networks(agent.name, runtime="executorch", threads=1).entries[net.arch_id]
    breakdown = entry.operator_breakdown
    assert breakdown is not None and breakdown.source == "etdump" and breakdown.runs >= 1
    assert [_kind(o.name) for o in breakdown.operators].count("Convolution (NHWC, F32) DWConv") == 8
    # Profiled apart: the untraced measurement is the network's latency, the traced pass only its breakdown.
    assert entry.min_ms is not None and entry.min_ms > 0


def test_each_key_of_a_network_is_found_in_its_breakdown_and_compared_with_itself_alone(model_cache_dir: Path) -> None:
    from device_agent.runtimes.etdump import profile_pte
    from search.arch import Architecture
    from search.in_context import attribute, context_error

    cache = ModelCache(model_cache_dir)
    net = cache.network("breakdown-net", ARCH, [1, 1, 28, 28], "executorch")
    keys = Architecture.from_dict(ARCH).op_keys()
    alone = {k: profile_pte(cache.item(k, "executorch").model, cache.item(k, "executorch").input_shape) for k in set(keys)}
    breakdown = profile_pte(net.model, net.input_shape)
    found = attribute(breakdown, keys, alone)
    assert found is not None and [r.key for r in found] == keys
    # At the tracer's 1 µs resolution the smallest blocks (4x4 maps) may read 0; the large ones do not.
    assert found[0].isolated_ms > 0 and found[0].in_network_ms > 0 and found[1].in_network_ms > 0
    assert sum(r.isolated_ms > 0 for r in found) >= len(keys) // 2
    error = context_error([(keys, breakdown)], alone)
    assert (error.networks, error.unaligned) == (1, 0) and error.pairs > 0 and error.mape_pct is not None
    # Against other per-key times (the table's, say): the same events, compared with those.
    doubled = {k: 2 * sum(r.isolated_ms for r in found if r.key == k) / keys.count(k) for k in set(keys)}
    base = context_error([(keys, breakdown)], alone, min_isolated_ms=0.02)  # the same pairs as doubled's >= 0.04
    halved = context_error([(keys, breakdown)], alone, min_isolated_ms=0.04, reference=doubled)
    assert halved.pairs == base.pairs > 0 and base.bias_pct is not None
    assert halved.bias_pct == pytest.approx(0.5 * base.bias_pct - 50, abs=1e-6)
    # Keys in another order do not line up with the events (the stem's convolution is not a block's): not guessed at.
    assert attribute(breakdown, keys[::-1], alone) is None
    assert context_error([(keys[::-1], breakdown)], alone).unaligned == 1


def test_a_network_measured_over_the_loopback_phone_comes_back_with_its_etdump(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path
) -> None:
    """executor_runner run once more with --etdump_path, the file pulled over ADB and read on the host."""
    from tests.agent.agent_support import FAST_PROTOCOL, agent_cmd, env, register_phone

    port, root, _ = phone
    key = "conv_k3_s1_o8@1x1x28x28"
    net = _spec()
    cache = ModelCache(model_cache_dir)
    cache.item(key, "executorch")
    cache.network(net.arch_id, ARCH, net.input_shape, "executorch")  # exported here, so the agent's run is measuring
    name = register_phone(server, f"127.0.0.1:{port}")
    with server.client() as c:
        job = c.create_job(JobCreate(device=name, runtime="executorch", threads=1, keys=[key], networks=[net]))
    r = subprocess.run(
        agent_cmd(
            "run",
            "--serial",
            f"127.0.0.1:{port}",
            "--server",
            server.url,
            "--token",
            server.agent_token,
            "--cache-dir",
            str(model_cache_dir),
            "--once",
            "--runtime",
            "executorch",
            *FAST_PROTOCOL,
        ),
        capture_output=True,
        text=True,
        env=env(),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    with server.client() as c:
        assert c.get_job(job.id).state == JobState.done, r.stderr[-3000:]
        entry = c.get_networks(name, runtime="executorch", threads=1).entries[net.arch_id]
    breakdown = entry.operator_breakdown
    assert breakdown is not None, r.stderr[-3000:]
    assert [_kind(o.name) for o in breakdown.operators].count("Convolution (NHWC, F32) DWConv") == 8
    assert all(o.backend == "XnnpackBackend" for o in breakdown.operators)
    # Pulled and removed: the phone keeps no ETDump of the profile (the work folder holds models, not results).
    assert not (root / "data/local/tmp/hwnas/res/network.etdump").exists()
