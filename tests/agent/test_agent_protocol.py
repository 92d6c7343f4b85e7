"""The measurement protocol: shuffled interleaved rounds, canary drift, CV re-measure, stop, cool-down.

The decisions are tested with count-sized bursts (``burst_ms=0``); time sizing: test_agent_sizing.py.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from device_agent.loopback.adbd import LoopbackAdbd
from device_agent.deviceinfo import read_thermal
from device_agent.loopback.fakephone import set_thermal
from device_agent.models import ModelCache
from device_agent.parsers import ThermalState
from device_agent.platforms.adb import AdbDevice
from device_agent.protocol import CoolDown, ProtocolConfig, canary_drift, measure_batch, plan
from device_agent.runtimes.base import Burst, BurstResult, Item, ProgressFn, Runner
from device_agent.runtimes.local import LocalRunner
from device_agent.stats import burst_minimum, summarize, variation
from tests.agent.agent_support import FMNIST_KEYS


def _items(n: int) -> list[Item]:
    return [Item(f"conv_k3_s1_o{8 + i}@1x1x28x28", Path(f"m{i}.onnx"), (1, 1, 28, 28)) for i in range(n)]


def test_plan_interleaves_every_item_once_per_round_in_fresh_orders() -> None:
    items = _items(6)
    canary = Item("skip_s1_o8@1x8x28x28", Path("c.onnx"), (1, 8, 28, 28))
    cfg = ProtocolConfig(warmup=10, iterations=50, rounds=5, burst_warmup=2, canary_every=4, burst_ms=0)
    bursts = plan(items, cfg, canary, random.Random(1))
    ops = [b for b in bursts if not b.canary]
    assert len(ops) == 30
    rounds = [ops[i * 6 : (i + 1) * 6] for i in range(5)]
    assert all({b.item.key for b in r} == {it.key for it in items} for r in rounds)
    assert len({tuple(b.item.key for b in r) for r in rounds}) > 1  # shuffled, not the same order
    per_item = Counter()
    for b in ops:
        per_item[b.item.key] += b.iters
    assert set(per_item.values()) == {50}
    assert [b.warmup for b in rounds[0]] == [10] * 6 and {b.warmup for r in rounds[1:] for b in r} == {2}
    # canary first, after every 4 operator bursts, and last
    assert bursts[0].canary and bursts[-1].canary
    gaps = [len(list(g)) for g in "".join("c" if b.canary else "o" for b in bursts).split("c") if g]
    assert max(gaps) <= 4


class ScriptedRunner(Runner):
    """A runner whose timings come from a function: to drive the protocol's decisions exactly."""

    runtime, runtime_version, threads = "onnxruntime", None, 1

    def __init__(self, timing) -> None:
        self.timing = timing
        self.calls = 0

    def prepare(self, items: Sequence[Item]) -> None:
        pass

    def run(
        self, bursts: Sequence[Burst], stop: threading.Event | None = None, progress: ProgressFn | None = None
    ) -> list[BurstResult]:
        self.calls += 1
        out = []
        for i, b in enumerate(bursts):
            if stop is not None and stop.is_set():
                break
            out.append(BurstResult(b, [self.timing(self.calls, i, b)] * b.iters))
            if progress:
                progress(i + 1, len(bursts))
        return out


def test_canary_drift_measures_the_batch_again() -> None:
    items = _items(4)
    canary = Item("skip_s1_o8@1x8x28x28", Path("c.onnx"), (1, 8, 28, 28))

    def timing(call: int, index: int, b: Burst) -> float:
        if b.canary:
            return 1.0 + (0.3 if call == 1 and index > 5 else 0.0)  # the device slowed down mid-batch once
        return 2.0

    runner = ScriptedRunner(timing)
    out = measure_batch(runner, items, ProtocolConfig(iterations=4, rounds=2, canary_every=2, burst_ms=0), canary)
    assert runner.calls == 2
    assert out.state["canary"]["remeasured_batches"] == 1 and out.state["suspect"] is False
    assert sorted(r.key for r in out.results) == sorted(i.key for i in items)


def test_drift_that_stays_marks_the_batch_suspect() -> None:
    runner = ScriptedRunner(lambda call, index, b: (1.0 + index * 0.1) if b.canary else 2.0)
    out = measure_batch(
        runner,
        _items(4),
        ProtocolConfig(iterations=4, rounds=2, canary_every=2, burst_ms=0),
        Item("skip_s1_o8@1x8x28x28", Path("c.onnx"), (1, 8, 28, 28)),
    )
    assert out.state["suspect"] is True and out.state["canary"]["drift"] > 0.1
    assert len(out.results) == 4  # still uploaded, flagged in device_state


def test_noisy_operator_gets_more_rounds_and_its_value_is_the_median_over_all() -> None:
    noisy = _items(2)[1].key
    seen = Counter()

    def timing(call: int, index: int, b: Burst) -> float:
        if b.item.key == noisy and call == 1:
            seen[call] += 1
            return 1.0 + 0.5 * (seen[call] % 2)  # burst minima 1.5 / 1.0: robust CV 30%
        return 1.0

    runner = ScriptedRunner(timing)
    out = measure_batch(runner, _items(2), ProtocolConfig(iterations=4, rounds=2, burst_ms=0), None)
    assert out.state["cv_remeasured"] == {noisy: 1}  # minima 1.5, 1.0, 1.0, 1.0: one off, the median holds
    assert out.state["cv"][noisy] == 0.0 and len(out.bursts[noisy]) == 4
    assert {r.key: r.min_ms for r in out.results}[noisy] == 1.0


def test_stop_keeps_operators_with_enough_bursts_and_leaves_the_rest_pending() -> None:
    stop = threading.Event()
    items = _items(3)

    def timing(call: int, index: int, b: Burst) -> float:
        if index == 6:  # 3 rounds of 3: after the second round, stop
            stop.set()
        return 1.0

    out = measure_batch(ScriptedRunner(timing), items, ProtocolConfig(iterations=6, rounds=3, burst_ms=0), None, stop=stop)
    assert out.stopped and len(out.results) == 3 and out.unfinished == []
    stop.clear()

    def early(call: int, index: int, b: Burst) -> float:
        if index == 1:
            stop.set()
        return 1.0

    out = measure_batch(ScriptedRunner(early), items, ProtocolConfig(iterations=6, rounds=3, burst_ms=0), None, stop=stop)
    assert out.stopped and out.results == [] and sorted(out.unfinished) == sorted(i.key for i in items)


def test_real_local_runner_measures_every_operator(tmp_path: Path, model_cache_dir: Path) -> None:
    cache = ModelCache(model_cache_dir)
    items = [cache.item(k, "onnxruntime") for k in FMNIST_KEYS[:4]]
    runner = LocalRunner("onnxruntime", 1)
    seen: list[tuple[int, int]] = []
    out = measure_batch(
        runner, items, ProtocolConfig(warmup=3, iterations=8, rounds=4), items[0], progress=lambda d, t: seen.append((d, t))
    )
    assert sorted(r.key for r in out.results) == sorted(FMNIST_KEYS[:4])
    for r in out.results:
        # a probe burst of 2 runs, then 3 bursts sized by time: many samples of K runs each
        assert r.iterations == len(r.samples_ms or []) > 4
        assert 0 < r.min_ms <= r.median_ms <= r.p90_ms  # type: ignore[operator]
        assert out.timed_wall_ms[r.key] > 0
    assert out.state["protocol"]["burst_ms"] >= ProtocolConfig().min_burst_ms
    assert set(out.state["protocol"]["sample_runs"]) == set(FMNIST_KEYS[:4])
    assert seen and seen[-1][0] == seen[-1][1]
    assert len(out.state["canary"]["burst_min_ms"]) >= 2


def test_summary_statistics() -> None:
    bursts = [[3.0, 1.0, 2.0], [5.0, 4.0, 6.0]]
    r = summarize("conv_k3_s1_o8@1x1x28x28", bursts, warmup=7)
    assert r.median_ms == 3.5 and r.mean_ms == 3.5
    assert r.p10_ms == pytest.approx(1.5) and r.p90_ms == pytest.approx(5.5)
    assert r.min_ms == 2.5  # median of the burst minima 1 and 4
    assert r.std_ms == pytest.approx(1.7078, rel=1e-3) and r.iterations == 6 and r.warmup == 7
    assert burst_minimum(bursts) == 2.5
    assert variation([[1.0, 9.0], [1.0, 7.0]]) == 0.0  # minima agree: steady, whatever the outliers
    assert canary_drift([])[0] == 0.0


def test_cool_down_waits_until_the_phone_is_cool(loopback: LoopbackAdbd) -> None:
    dev = AdbDevice(loopback.serial)
    root = loopback.sandbox.root
    set_thermal(root, status=2)
    polls: list[int] = []

    def sleep(_s: float) -> None:  # the phone cools down while we wait
        polls.append(1)
        if len(polls) == 2:
            set_thermal(root, status=0)

    waited, state = CoolDown(poll_s=0.0).wait(lambda: read_thermal(dev), sleep=sleep)
    assert len(polls) == 2 and state.status == 0
    set_thermal(root, temperatures_c={"cpu6-big": 71.0})
    assert CoolDown(max_temp_c=55).hot(read_thermal(dev))
    assert not CoolDown(max_temp_c=None).hot(ThermalState(0, {"cpu": 90.0}))
    dev.close()
