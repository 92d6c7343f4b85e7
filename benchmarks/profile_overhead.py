"""How much time does building a latency table cost beyond the measuring itself?

Builds the table of every distinct operator key of the small Fashion-MNIST space
(``fbnet-fmnist``) with the device agent's protocol (defaults: a probe round, then 5 shuffled
interleaved rounds of bursts sized by time — 4 × the measured per-burst cost — in samples of K
runs lasting >= 100 µs; canary, CV re-measure, empty-model overhead):

(a) ``--local``: in-process ONNX Runtime with pre-bound inputs (the agent's LocalRunner);
(b) through a loopback ADB device in a separate process: models and the stand-in
    ``onnxruntime_perf_test`` pushed over real ADB, one shell invocation per batch.

``--runtime executorch`` (or ``torchscript``) builds the same tables with that runtime: ExecuTorch's
Python runtime locally, the ``executor_runner`` stand-in over ADB. An ExecuTorch export takes seconds
per key (ONNX: hundredths), so the export is reported apart: ``export_s_per_key`` (mean over the keys,
the first one's ExecuTorch import included in ``export_first_key_s``) and ``export_cached_s`` (the
second build of the same keys, from the cache).

Figures (one clock, the wall clock):
* ``local_overhead_ratio`` / ``adb_overhead_ratio`` = wall time of the build divided by the
  wall time of the timed runs behind the table's samples (the runners report it: the local
  runner times them with ``perf_counter`` whatever clock its samples use, a device program's
  per-run times are wall times): what the build costs beyond the measuring itself. Models are
  exported before the clock starts (they are cached by key on the host; the export time is
  reported apart), no server upload.
* ``repeatability``: median over keys of |Δ| / value between two local builds of the
  table (value = ``min_ms``, the burst-minimum estimator the table is built on); the same
  for the median and for the ADB path are reported beside it.
* ``zero_runs``: runs of 0 ms read from any ``onnxruntime_perf_test`` result file during the
  device builds (the runners count them: the third field of the device-side awk's ``T`` line, or
  the rows themselves without awk). A real run never takes 0 s, so anything but 0 is a parse gone
  wrong — e.g. the ``-s`` statistics lines after the rows read as runs (issue 24).

The loopback phone's stand-in programs pay what a phone's do per call: a fresh process (forked
from a zygote that has the runtimes imported), a new ONNX Runtime session or TorchScript load,
only the program's own warm-up runs (device_agent/loopback/standins/worker.py).

Context figures (not targets): the load average at the start (other work on the host
inflates every ratio), the per-model setup the ratio contains (``*_setup_s``: ONNX Runtime
sessions locally, the MD5 check of the pushed files on the device), the cost of one device
burst beyond its timed runs (``adb_ms_per_burst``, what a persistent runner could save), the
burst budget the protocol chose, and the same ratios for 16 operators of the 224x224 FBNet space
(``*_fbnet224``), whose operators take 0.1-5 ms instead of microseconds.
``--protocol count`` measures with the protocol before time sizing (every burst 10 runs,
samples of one run, a canary every 8 bursts), for the before/after comparison.

    python benchmarks/profile_overhead.py            # all keys
    python benchmarks/profile_overhead.py --quick    # 24 keys
    python benchmarks/profile_overhead.py --protocol count --out /tmp/before.json
    python benchmarks/profile_overhead.py --runtime executorch   # -> profile_overhead_executorch.json

Writes benchmarks/results/profile_overhead.json (``profile_overhead_<runtime>.json`` for another runtime)
and prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
RESULTS = HERE / "results" / "profile_overhead.json"
TARGETS = {"local_overhead_ratio": "<= 1.5", "adb_overhead_ratio": "<= 2", "repeatability": "<= 0.03", "zero_runs": "== 0"}


def space_keys(space_name: str, quick: bool, limit: int | None = None) -> list[str]:
    from search.space import get_space

    space = get_space(space_name)
    keys = sorted(
        {layer.spec(c).key for layer in space.layers() for c in layer.candidates} | {s.key for s in space.fixed_specs()}
    )
    if limit is not None:
        step = max(1, len(keys) // limit)
        return keys[::step][:limit]
    return keys[::4][:24] if quick else keys


def build(
    device: Any, keys: list[str], cache_dir: Path, local: bool, protocol: Any, runtime: str = "onnxruntime"
) -> tuple[float, dict[str, Any], Any]:
    """One table build; returns (wall seconds, results by key, agent)."""
    from device_agent.config import AgentConfig
    from device_agent.jobloop import Agent

    agent = Agent(device, AgentConfig(cache_dir=cache_dir, protocol=protocol, runtimes=(runtime,)), local=local)
    agent.connect()
    agent.runner(runtime, 1)  # imports the runtime before the clock starts
    start = time.perf_counter()
    results = agent.measure_keys(keys, runtime, 1, upload=False)
    wall = time.perf_counter() - start
    agent.close()
    return wall, results, agent


def timed_s(agent: Any) -> float:
    """Wall time of the timed runs behind the build's samples (the agent sums what its runner reports)."""
    return agent.timings["timed_wall_s"]


def rel_delta(a: dict[str, Any], b: dict[str, Any], field: str) -> float:
    common = [k for k in a if k in b and not k.startswith("__")]
    return statistics.median(abs(getattr(a[k], field) - getattr(b[k], field)) / getattr(a[k], field) for k in common)


def wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("loopback device did not start")


def export_all(cache: Any, keys: list[str], runtime: str) -> dict[str, float]:
    """Build every key's model (then the empty model), timed; then again from the cache."""
    t0 = time.perf_counter()
    first = None
    for k in keys:
        cache.item(k, runtime)
        if first is None:
            first = time.perf_counter() - t0  # includes importing the exporter (ExecuTorch: seconds)
    cache.overhead(runtime)
    export_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    for k in keys:
        cache.item(k, runtime)
    cache.overhead(runtime)
    return {
        "export_s": round(export_s, 2),
        "export_s_per_key": round(export_s / (len(keys) + 1), 4),
        "export_first_key_s": round(first or 0.0, 2),
        "export_cached_s": round(time.perf_counter() - t1, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="24 keys instead of all")
    ap.add_argument(
        "--protocol",
        choices=("time", "count"),
        default="time",
        help="time: the agent's protocol; count: bursts of a fixed count (the protocol before)",
    )
    ap.add_argument(
        "--runtime",
        choices=("onnxruntime", "torchscript", "executorch"),
        default="onnxruntime",
        help="the runtime whose tables are built (executorch needs pip install 'hwnas[executorch]')",
    )
    ap.add_argument("--out", type=Path, default=None, help="results file (default: benchmarks/results/...)")
    args = ap.parse_args()
    runtime = args.runtime
    out = args.out or (RESULTS if runtime == "onnxruntime" else RESULTS.with_name(f"profile_overhead_{runtime}.json"))
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from device_agent.models import ModelCache
    from device_agent.platforms.adb import AdbDevice
    from device_agent.platforms.local import LocalDevice
    from device_agent.protocol import ProtocolConfig

    protocol = ProtocolConfig() if args.protocol == "time" else ProtocolConfig(burst_ms=0, canary_every=8)
    work = Path(tempfile.mkdtemp(prefix="hwnas-profile-overhead-"))
    cache_dir = work / "models"
    cache = ModelCache(cache_dir)
    keys = space_keys("fbnet-fmnist", args.quick)
    keys224 = space_keys("fbnet", args.quick, limit=8 if args.quick else 16)
    from device_agent.runtimes.base import check_runtime

    check_runtime(runtime)  # the install line before anything is built
    exports = export_all(cache, keys + keys224, runtime)

    figures: dict[str, Any] = {
        "runtime": runtime,
        "keys": len(keys),
        **exports,
        "protocol": {
            "kind": args.protocol,
            "warmup": protocol.warmup,
            "iterations": protocol.iterations,
            "rounds": protocol.rounds,
            "canary_every": protocol.canary_every,
            "burst_ms": protocol.burst_ms,
            "burst_cost_factor": protocol.burst_cost_factor,
            "sample_ms": protocol.sample_ms,
        },
    }
    try:
        figures["load_average_start"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass

    def local_build(ks: list[str]) -> tuple[float, dict[str, Any], Any]:
        return build(LocalDevice(work / "local-device"), ks, cache_dir, True, protocol, runtime)

    # (a) local, twice
    wall_a, res_a, agent_a = local_build(keys)
    wall_a2, res_a2, agent_a2 = local_build(keys)
    timed_a = timed_s(agent_a)
    setup_a = agent_a.timings.get("prepare_s", 0.0) + agent_a.timings.get("stage_s", 0.0)
    figures.update(
        {
            "local_wall_s": round(wall_a, 3),
            "local_timed_s": round(timed_a, 3),
            "local_overhead_ratio": round(wall_a / timed_a, 3),
            "local_overhead_ratio_second_build": round(wall_a2 / timed_s(agent_a2), 3),
            "local_setup_s": round(setup_a, 3),
            "local_overhead_ratio_without_setup": round((wall_a - setup_a) / timed_a, 3),
            "median_key_ms": round(statistics.median(r.median_ms for r in res_a.values()), 5),
            "repeatability": round(rel_delta(res_a, res_a2, "min_ms"), 4),
            "repeatability_median_ms": round(rel_delta(res_a, res_a2, "median_ms"), 4),
        }
    )
    wall_c, res_c, agent_c = local_build(keys224)
    figures["local_overhead_ratio_fbnet224"] = round(wall_c / timed_s(agent_c), 3)
    figures["median_key_ms_fbnet224"] = round(statistics.median(r.median_ms for r in res_c.values()), 4)

    # (b) through a loopback ADB device in its own process
    from tests.agent.agent_support import agent_cmd, env
    from tests.support.ports import free_port

    port = free_port()
    proc = subprocess.Popen(
        agent_cmd("loopback-device", "--port", str(port), "--root", str(work / "phone")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
        start_new_session=True,
    )
    try:
        wait_port(port)
        worker_fifo = work / "phone" / ".phone" / "worker" / "requests"
        deadline = time.monotonic() + 60
        while not worker_fifo.exists() and time.monotonic() < deadline:  # the zygote imports onnxruntime
            time.sleep(0.05)
        serial = f"127.0.0.1:{port}"
        # The first build pushes the files (and the zygote imports the runtime at its first call).
        wall_b0, _, agent_b0 = build(AdbDevice(serial), keys + keys224, cache_dir, False, protocol, runtime)
        wall_b, res_b, agent_b = build(AdbDevice(serial), keys, cache_dir, False, protocol, runtime)
        wall_d, res_d, agent_d = build(AdbDevice(serial), keys224, cache_dir, False, protocol, runtime)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    timed_b = timed_s(agent_b)
    setup_b = agent_b.timings.get("prepare_s", 0.0) + agent_b.timings.get("stage_s", 0.0)
    bursts = agent_b.timings.get("bursts", 0)
    figures.update(
        {
            "adb_wall_s": round(wall_b, 3),
            "adb_timed_s": round(timed_b, 3),
            "adb_overhead_ratio": round(wall_b / timed_b, 3),
            "adb_setup_s": round(setup_b, 3),
            "adb_overhead_ratio_without_setup": round((wall_b - setup_b) / timed_b, 3),
            "adb_first_build_wall_s": round(wall_b0, 3),
            "adb_bursts": bursts,
            "adb_ms_per_burst": round((wall_b - setup_b - timed_b) * 1000 / bursts, 3) if bursts else None,
            "adb_repeatability_vs_local": round(rel_delta(res_a, res_b, "min_ms"), 4),
            "adb_overhead_ratio_fbnet224": round(wall_d / timed_s(agent_d), 3),
            "adb_burst_budget_ms": agent_b.timings.get("burst_ms"),
            "local_burst_budget_ms": agent_a.timings.get("burst_ms"),
            # every device build's result files (the agents' runners count them; measure() keeps the tally)
            "zero_runs": sum(int(a.timings.get("zero_runs", 0)) for a in (agent_b0, agent_b, agent_d)),
        }
    )
    met = {
        "local_overhead_ratio": figures["local_overhead_ratio"] <= 1.5,
        "adb_overhead_ratio": figures["adb_overhead_ratio"] <= 2.0,
        "repeatability": figures["repeatability"] <= 0.03,
        "zero_runs": figures["zero_runs"] == 0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"figures": figures, "targets": TARGETS, "met": met}, indent=2) + "\n")
    print(
        f"profile_overhead ({runtime}): {len(keys)} fbnet-fmnist keys, median {figures['median_key_ms']} ms: "
        f"local {figures['local_overhead_ratio']}x (target <= 1.5), adb {figures['adb_overhead_ratio']}x "
        f"(target <= 2), repeatability {figures['repeatability']} (target <= 0.03), zero_runs "
        f"{figures['zero_runs']} (target == 0); fbnet224 context: "
        f"local {figures['local_overhead_ratio_fbnet224']}x, adb {figures['adb_overhead_ratio_fbnet224']}x; export "
        f"{figures['export_s_per_key']} s/key (cached second build {figures['export_cached_s']} s); met: "
        + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in met.items())
    )


if __name__ == "__main__":
    main()
