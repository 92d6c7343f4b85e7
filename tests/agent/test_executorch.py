"""Runtime ``executorch`` on the host: a ``.pte`` per operator key (XNNPACK delegate) that runs and matches eager
PyTorch, the delegation read back per key, the thread pool, the model cache per ExecuTorch version, and a job
measured end to end by ``device-agent run --local --runtime executorch`` against a live server (on phones:
test_executor_runner.py).

The tests that need the optional package skip (with the install line) only where it is absent; the ones about
its absence run everywhere, hiding it from a subprocess as an environment without it would."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from device_agent.errors import ConfigError
from device_agent.models import ModelCache
from device_agent.runtimes.base import check_phone_runtime, check_runtime
from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import JobCreate, JobState
from tests.agent.agent_support import FAST_PROTOCOL, agent_cmd, env, executorch_run_states
from tests.support.live_server import LiveServer, start_live_server

HAVE_EXECUTORCH = importlib.util.find_spec("executorch") is not None
needs_executorch = pytest.mark.skipif(
    not HAVE_EXECUTORCH, reason="ExecuTorch is not installed: pip install 'hwnas[executorch]' (executorch==1.5.1)"
)

# One of each kind of operator the spaces use: a conv stem, inverted residuals (plain and grouped with
# channel shuffle), a skip that projects (1x1 conv, stride 2), a pool, the classifier head.
KEYS = [
    "conv_k3_s1_o8@1x1x28x28",
    "ir_k3_e6_g1_s2_o16@1x8x28x28",
    "ir_k5_e3_g2_s1_o16@1x16x14x14",
    "skip_s2_o24@1x16x14x14",
    "maxpool_k3_s2_o16@1x8x28x28",
    "gap_fc_o10@1x128x4x4",
]

# Hides the package from the interpreter that runs the command, as on a machine without the extra: None in
# sys.modules is Python's "not importable" (import raises ModuleNotFoundError, find_spec answers None).
HIDE_EXECUTORCH = "import sys\nsys.modules['executorch'] = None\n"


def _eager(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """What the operator's module (the weights the cache exported: seed 0) gives for the engine's input (ones)."""
    from search.export import op_module

    module, _ = op_module(key)
    with torch.no_grad():
        return module(torch.ones(shape))


@needs_executorch
@pytest.mark.parametrize("key", KEYS)
def test_each_key_becomes_a_pte_that_xnnpack_runs_and_matches_eager(key: str, model_cache_dir: Path) -> None:
    from device_agent.runtimes.executorch_engine import ExecuTorchEngine

    item = ModelCache(model_cache_dir).item(key, "executorch")
    assert item.model.suffix == ".pte" and item.model.parent.name.startswith("pte-et1.5.1")
    engine = ExecuTorchEngine(item.model, threads=1, input_shape=item.input_shape)
    assert not engine.inputs_set_per_run  # one delegate call keeps its input: bound once, execute() alone
    engine.burst(2, 6, 2)
    engine.run_once()  # the measured path, after a burst: the input is intact
    got = engine.outputs()[0]
    want = _eager(key, item.input_shape)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) < 1e-4
    # Every operator of these blocks is one XNNPACK delegate call: nothing left to the portable kernels.
    assert engine.delegation == {"delegated": "all", "backends": ["XnnpackBackend"], "delegate_calls": 1, "portable_ops": []}
    samples = engine.burst(2, 6, 2)
    assert len(samples) == 3 and all(s > 0 for s in samples)


@needs_executorch
def test_a_program_with_nothing_to_run_says_empty(model_cache_dir: Path) -> None:
    from search.export import pte_delegation

    cache = ModelCache(model_cache_dir)
    # A skip without projection returns its input; the empty model is an Identity.
    for item in (cache.item("skip_s1_o16@1x16x14x14", "executorch"), cache.overhead("executorch")):
        assert pte_delegation(item.model)["delegated"] == "empty"


class _Chain(torch.nn.Module):
    """Elementwise steps with no delegate: memory planning hands the dead input's buffer to a later step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (((x + 1) * 2 - 3) * 4 + 5) * 6


@needs_executorch
def test_a_program_whose_runs_overwrite_its_input_gets_it_set_before_every_run(tmp_path: Path) -> None:
    from executorch.exir import to_edge

    from device_agent.runtimes.executorch_engine import ExecuTorchEngine
    from search.export import pte_delegation

    x = torch.ones(1, 8, 16, 16)
    path = tmp_path / "chain.pte"
    path.write_bytes(to_edge(torch.export.export(_Chain(), (x,))).to_executorch().buffer)  # portable kernels only
    engine = ExecuTorchEngine(path, threads=1, input_shape=tuple(x.shape))
    assert engine.delegation["delegated"] == "none" and "aten::add.out" in engine.delegation["portable_ops"]
    assert engine.inputs_set_per_run  # two runs at load disagreed: its input buffer is reused
    assert len(engine.burst(3, 6, 1)) == 6
    # The burst's last run still read the ones: the eager result (54 everywhere), not what a reused buffer holds.
    assert torch.equal(engine.outputs()[0], _Chain()(x))
    assert pte_delegation(path)["delegate_calls"] == 0


@needs_executorch
def test_models_are_cached_by_key_and_executorch_version(model_cache_dir: Path) -> None:
    from importlib.metadata import version

    cache = ModelCache(model_cache_dir)
    first = cache.item(KEYS[0], "executorch")
    stamp = first.model.stat().st_mtime_ns
    again = ModelCache(model_cache_dir).item(KEYS[0], "executorch")  # another agent on this host
    assert again.model == first.model and again.model.stat().st_mtime_ns == stamp  # not exported again
    assert first.model.parent.name == f"pte-et{version('executorch')}"
    assert cache.path(KEYS[0], "onnxruntime").parent != first.model.parent


@needs_executorch
def test_thread_pool_is_sized_before_each_load_and_a_stale_method_is_reloaded(model_cache_dir: Path) -> None:
    from device_agent.runtimes.executorch_engine import ExecuTorchEngine, pool_threads

    item = ModelCache(model_cache_dir).item(KEYS[1], "executorch")
    want = _eager(KEYS[1], item.input_shape)
    two = ExecuTorchEngine(item.model, threads=2, input_shape=item.input_shape)
    assert pool_threads() == 2
    one = ExecuTorchEngine(item.model, threads=1, input_shape=item.input_shape)  # resizes (frees) the pool
    assert pool_threads() == 1
    # The 2-thread method was bound to the freed pool: running it must load it again on a pool of 2.
    two.run_once()
    assert pool_threads() == 2
    assert float((two.outputs()[0] - want).abs().max()) < 1e-4
    one.run_once()
    assert pool_threads() == 1
    assert float((one.outputs()[0] - want).abs().max()) < 1e-4


@needs_executorch
def test_local_runner_records_threads_and_delegation_per_key(model_cache_dir: Path) -> None:
    from device_agent.runtimes.base import Burst
    from device_agent.runtimes.local import LocalRunner

    cache = ModelCache(model_cache_dir)
    items = [cache.item(KEYS[0], "executorch"), cache.item("skip_s1_o16@1x16x14x14", "executorch")]
    runner = LocalRunner("executorch", threads=1)
    assert runner.runtime_version is not None and runner.runtime_version.startswith("1.5.1")
    runner.prepare(items)
    results = runner.run([Burst(it, warmup=2, iters=4, sample_runs=2) for it in items])
    assert [r.error for r in results] == [None, None]
    assert all(len(r.samples_ms) == 2 and min(r.samples_ms) > 0 and r.wall_ms > 0 for r in results)
    state = runner.state()
    assert state["threads"] == 1 and state["clock"] == "thread_cpu"
    assert state["executorch"] == {
        "backend": "xnnpack",
        "pool_threads": 1,
        "delegated": {KEYS[0]: "all", "skip_s1_o16@1x16x14x14": "empty"},
        "portable_ops": {},
        "inputs_set_per_run": [],
    }
    runner.forget(items[:1])
    assert list(runner.state()["executorch"]["delegated"]) == ["skip_s1_o16@1x16x14x14"]  # type: ignore[index]


@needs_executorch
def test_phones_take_executorch_through_executor_runner() -> None:
    # Its phone program is wired (tests/agent/test_executor_runner.py); the models are still built on this host.
    assert check_phone_runtime("executorch") == "executorch"
    assert check_phone_runtime("onnxruntime") == "onnxruntime"
    with pytest.raises(ConfigError, match="unknown runtime 'tflite': use one of onnxruntime, torchscript, executorch"):
        check_runtime("tflite")


def test_without_the_package_the_runtime_is_refused_with_the_install_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(KEYS[0] + "\n")
    code = HIDE_EXECUTORCH + (
        "from device_agent.cli import main\n"
        f"sys.argv = ['device-agent', 'profile', '--local', '--runtime', 'executorch', '--keys', {str(keys)!r}, "
        f"'--cache-dir', {str(tmp_path / 'cache')!r}]\n"
        "main()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=180)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "pip install 'hwnas[executorch]'" in r.stdout + r.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.pte"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    srv = start_live_server(tmp_path=tmp_path / "srv")
    try:
        yield srv
    finally:
        srv.stop()


@needs_executorch
def test_run_local_executorch_fills_a_table_with_delegation(server: LiveServer, model_cache_dir: Path) -> None:
    from device_agent.deviceinfo import read_facts
    from device_agent.platforms.local import LocalDevice

    keys = KEYS[:4]
    cache = ModelCache(model_cache_dir)
    for k in keys:  # exported here (seconds each), so the agent's run is about measuring
        cache.item(k, "executorch")
    cache.overhead("executorch")
    facts = read_facts(LocalDevice())
    name = facts.default_name()
    with server.client("agent") as c:
        c.put_device(name, facts.device_info())
    with server.client() as c:
        job = c.create_job(JobCreate(device=name, runtime="executorch", threads=1, keys=keys))
    base = agent_cmd(
        "run",
        "--local",
        "--server",
        server.url,
        "--token",
        server.agent_token,
        "--cache-dir",
        str(model_cache_dir),
        "--once",
        *FAST_PROTOCOL,
    )
    # An agent not asked for executorch gives the job back untouched (it serves onnxruntime/torchscript).
    r = subprocess.run(base, capture_output=True, text=True, env=env(), timeout=180)
    assert r.returncode == 0, r.stderr
    assert "wants executorch" in r.stderr
    with server.client() as c:
        assert c.get_job(job.id).done == 0
    server.end_lease(job.id)  # the lease it gave back ends now rather than in a moment
    r = subprocess.run([*base, "--runtime", "executorch"], capture_output=True, text=True, env=env(), timeout=300)
    assert r.returncode == 0, r.stderr
    with server.client() as c:
        done = c.get_job(job.id)
        assert done.state == JobState.done and done.done == len(keys)
        lut = c.get_lut(name, runtime="executorch", threads=1).lut
    assert lut is not None and lut.runtime == "executorch" and lut.runtime_version is not None
    assert lut.runtime_version.startswith("1.5.1")
    assert set(lut.entries) == set(keys)
    assert all(0 < e.median_ms < 1000 and e.min_ms is not None and 0 < e.min_ms <= e.median_ms for e in lut.entries.values())
    assert lut.overhead_ms is not None and lut.overhead_ms > 0
    states = executorch_run_states(server.database_url, name)
    assert len(states) == 1
    recorded = states[0]["executorch"]
    assert recorded["backend"] == "xnnpack" and recorded["pool_threads"] == 1
    assert {k: recorded["delegated"][k] for k in keys} == {k: "all" for k in keys}
    assert recorded["delegated"][OVERHEAD_KEY] == "empty"
    assert recorded["inputs_set_per_run"] == [] and recorded["portable_ops"] == {}
