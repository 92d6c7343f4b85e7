"""Measuring that amortises its cost: time-sized bursts, samples of K runs, per-run times reduced on the
device, thermal zones read by the batch script itself, float statistics."""

from __future__ import annotations

import random
import statistics
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from device_agent.parsers import ThermalState
from device_agent.protocol import ProtocolConfig, Sizing, measure_batch, plan, regroup, size_burst
from device_agent.runtimes.base import Burst, BurstResult, Item, ProgressFn, Runner
from device_agent.runtimes.batch_output import parse_batch_output, parse_batch_thermal
from device_agent.runtimes.binary import AWK_ORT, AWK_TORCH
from device_agent.stats import summarize, variation

M = "@@B0a1b2c3d@@"


def _items(n: int) -> list[Item]:
    return [Item(f"conv_k3_s1_o{8 + i}@1x1x28x28", Path(f"m{i}.onnx"), (1, 1, 28, 28)) for i in range(n)]


def test_a_sample_is_k_runs_of_at_least_100_us_and_a_burst_fills_its_budget() -> None:
    cfg = ProtocolConfig()
    small = size_burst(0.009, budget_ms=9.0, min_iters=10, cfg=cfg)  # a 9 µs operator
    assert small.sample_runs == 12 and small.sample_runs * 0.009 >= 0.1 > (small.sample_runs - 1) * 0.009
    assert small.iters % small.sample_runs == 0 and 9.0 <= small.iters * 0.009 < 9.0 + 0.009 * small.sample_runs
    big = size_burst(5.0, budget_ms=20.0, min_iters=10, cfg=cfg)  # a 5 ms network: the count floor wins
    assert big == Sizing(10, 1)
    # many runs: K grows so a burst uploads at most max_samples samples
    tiny = size_burst(0.001, budget_ms=250.0, min_iters=10, cfg=cfg)
    assert tiny.iters // tiny.sample_runs <= cfg.max_samples


def test_regroup_means_of_k_consecutive_runs() -> None:
    assert regroup([1.0, 3.0, 2.0, 4.0, 9.0], 2) == [2.0, 3.0]  # the short tail is dropped
    assert regroup([1.0, 2.0], 4) == [1.5]  # fewer runs than K: their mean
    assert regroup([1.0, 2.0], 1) == [1.0, 2.0]


class RunTimes(Runner):
    """Every run of an item takes ``run_ms[key]``; samples follow each burst's K."""

    runtime, runtime_version, threads = "onnxruntime", None, 1

    def __init__(self, run_ms: dict[str, float]) -> None:
        self.run_ms = run_ms
        self.schedules: list[list[Burst]] = []

    def prepare(self, items: Sequence[Item]) -> None:
        pass

    def run(
        self, bursts: Sequence[Burst], stop: threading.Event | None = None, progress: ProgressFn | None = None
    ) -> list[BurstResult]:
        self.schedules.append(list(bursts))
        out = []
        for b in bursts:
            ms = self.run_ms[b.item.key]
            out.append(BurstResult(b, [ms] * (b.iters // b.sample_runs), wall_ms=ms * b.iters))
        return out


def test_first_round_probes_by_count_then_bursts_are_sized_by_the_time_budget() -> None:
    items = _items(3)
    canary = Item("conv_k3_s1_o64@1x64x28x28", Path("c.onnx"), (1, 64, 28, 28))
    run_ms = {items[0].key: 0.01, items[1].key: 0.05, items[2].key: 2.0, canary.key: 0.2}
    runner = RunTimes(run_ms)
    cfg = ProtocolConfig(warmup=10, iterations=50, rounds=5, burst_ms=20.0)
    out = measure_batch(runner, items, cfg, canary, rng=random.Random(0))
    probe, rest = runner.schedules
    assert all(b.probe and b.iters == 10 and b.sample_runs == 1 and b.warmup == 10 for b in probe)
    assert {b.item.key for b in probe} == set(run_ms)  # the canary is probed too, for its own size
    ops = [b for b in rest if not b.canary]
    assert len(ops) == 3 * 5 and all(not b.probe and b.warmup == cfg.burst_warmup for b in ops)
    # the canary's bursts are sized like the operators' (a short one can drift with the host's load alone)
    assert {(b.iters, b.sample_runs) for b in rest if b.canary} == {(100, 1)}
    for b in ops:
        ms = run_ms[b.item.key]
        assert b.iters * ms >= 20.0 or b.iters == 10  # the budget, or the count floor for slow items
        assert b.sample_runs * ms >= 0.1 or b.sample_runs == 1
    assert out.state["protocol"]["burst_ms"] == 20.0
    # K: at least 100 µs per sample, and at most max_samples (100) samples per burst
    assert out.state["protocol"]["sample_runs"] == {items[0].key: 20, items[1].key: 4, items[2].key: 1}
    # the timed wall time of what the table holds: the sized rounds (not the probe, not the canary)
    assert out.timed_wall_ms[items[0].key] == pytest.approx(0.01 * 5 * 2000)
    assert all(r.iterations == 5 * 100 for r in out.results if r.key == items[0].key)


def test_the_budget_follows_the_cost_of_a_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a fixed burst_ms, the budget is burst_cost_factor × what a probe burst cost beyond its runs."""
    from device_agent import protocol

    items = _items(2)
    elapsed = [0.0]  # ms, the runner's own time: 8 ms per burst beyond its timed runs

    class Costly(RunTimes):
        def run(self, bursts, stop=None, progress=None):
            out = super().run(bursts, stop, progress)
            elapsed[0] += 8.0 * len(bursts) + sum(r.wall_ms for r in out)
            return out

    monkeypatch.setattr(protocol, "clock", lambda: elapsed[0] / 1000.0)
    out = measure_batch(
        Costly({items[0].key: 0.01, items[1].key: 0.01}), items, ProtocolConfig(warmup=0, burst_cost_factor=2.5), None
    )
    assert out.state["protocol"]["burst_cost_ms"] == pytest.approx(8.0)
    assert out.state["protocol"]["burst_ms"] == pytest.approx(20.0)


def test_count_mode_plans_like_before() -> None:
    bursts = plan(_items(2), ProtocolConfig(iterations=10, rounds=2, burst_ms=0), None, random.Random(1))
    assert [(b.iters, b.sample_runs, b.probe) for b in bursts] == [(5, 1, False)] * 4


def _batch(body_lines: list[str]) -> str:
    return (
        "\n".join(
            [
                f"{M} t0",
                "/sys/class/thermal/thermal_zone0/type:cpu0-little",
                "/sys/class/thermal/thermal_zone0/temp:39100",
                *body_lines,
                f"{M} t1",
                "/sys/class/thermal/thermal_zone0/type:cpu0-little",
                "/sys/class/thermal/thermal_zone0/temp:41400",
                f"{M} end",
            ]
        )
        + "\n"
    )


def test_batch_output_reduced_on_the_device_gives_samples_and_the_timed_total() -> None:
    item = _items(1)[0]
    burst = Burst(item, 2, 6, sample_runs=3)
    text = _batch(
        [f"{M} b 0", "Session creation time cost: 0.02 s", f"{M} s 0", "S 0.0105", "S 0.0095", "T 6 0.06", f"{M} e 0 0"]
    )
    [res] = parse_batch_output(text, M, [burst], "onnxruntime")
    assert res.error is None and res.samples_ms == [0.0105, 0.0095] and res.wall_ms == pytest.approx(0.06)
    assert parse_batch_thermal(text, M) == {
        "t0": ThermalState(None, {"cpu0-little": 39.1}),
        "t1": ThermalState(None, {"cpu0-little": 41.4}),
    }


def test_torch_samples_get_their_truncated_microseconds_back_from_the_precise_mean() -> None:
    item = _items(1)[0]
    burst = Burst(item, 0, 4, sample_runs=2)
    # runs of 9.6 µs print as 9 (duration_cast truncates); the mean line has the fraction
    body = [
        f"{M} b 0",
        "Starting benchmark.",
        "Running warmup runs.",
        "Main runs.",
        "Main run finished. Microseconds per iter: 9.6. Iters per second: 104167",
        f"{M} s 0",
        "S 0.009",
        "S 0.009",
        "T 4 0.036",
        f"{M} e 0 0",
    ]
    [res] = parse_batch_output(_batch(body), M, [burst], "torchscript")
    assert res.samples_ms == pytest.approx([0.0096, 0.0096]) and res.wall_ms == pytest.approx(0.0384)


@pytest.mark.parametrize("awk_name", ["awk", "original-awk"])
@pytest.mark.parametrize("runtime", ["onnxruntime", "torchscript"])
def test_the_awk_reduction_itself(runtime: str, awk_name: str, tmp_path: Path) -> None:
    """The scripts' awk programs on the programs' own file formats, with the host's awk and with one-true-awk
    (Android's; Debian's original-awk, installed by the Makefile)."""
    import shutil
    import subprocess

    awk = shutil.which(awk_name)
    if awk is None:
        pytest.fail(f"{awk_name} is needed (make test installs it)")
    if runtime == "onnxruntime":
        # As PerformanceResult::DumpToFile writes it with -s (onnxruntime performance_runner.cc at 77e6dc9a):
        # the rows, an empty line, seven statistics lines.
        text = "".join(f"models,{s:g},1234,100,{i}\n" for i, s in enumerate([5e-5, 1e-5, 2e-5, 3e-5, 4e-5]))
        text += "\nMin Latency: 1e-05 s\nMax Latency: 5e-05 s\n" + "".join(
            f"{p} Latency: 4e-05 s\n" for p in ("P50", "P90", "P95", "P99", "P999")
        )
        args = ["-v", "k=2", "-v", "d=1", "-v", "m=MARK", AWK_ORT]
    else:
        text = (
            "Main runs.\n"
            + "".join(
                f'PyTorchObserver {{"type": "NET", "unit": "us", "metric": "latency", "value": "{v}"}}\n'
                for v in (10, 20, 30, 40)
            )
            + "Main run finished. Microseconds per iter: 25.2. Iters per second: 1\n"
        )
        args = ["-v", "k=2", "-v", "m=MARK", AWK_TORCH]
    src = tmp_path / "in"
    src.write_text(text)
    out = subprocess.run([awk, *args, str(src)], capture_output=True, text=True, check=True).stdout.splitlines()
    marker = out.index("MARK")
    reduced = out[marker + 1 :]
    if runtime == "onnxruntime":
        assert reduced == ["S 0.015", "S 0.035", "T 4 0.1 0"]  # the first row (a warm-up run) dropped, no 0 ms run
    else:
        assert out[:marker] == ["Main runs.", "Main run finished. Microseconds per iter: 25.2. Iters per second: 1"]
        assert reduced == ["S 0.015", "S 0.035", "T 4 0.1"]


def test_statistics_in_floats_agree_with_the_statistics_module() -> None:
    rng = random.Random(3)
    bursts = [[rng.uniform(0.009, 0.02) for _ in range(rng.randint(1, 40))] for _ in range(5)]
    flat = [x for b in bursts for x in b]
    r = summarize("conv_k3_s1_o8@1x1x28x28", bursts, warmup=3)
    assert r.median_ms == pytest.approx(statistics.median(flat), rel=1e-12)
    assert r.mean_ms == pytest.approx(statistics.fmean(flat), rel=1e-12)
    assert r.std_ms == pytest.approx(statistics.pstdev(flat), rel=1e-9)
    mins = [min(b) for b in bursts]
    mad = statistics.median(abs(m - statistics.median(mins)) for m in mins)
    assert variation(bursts) == pytest.approx(1.4826 * mad / statistics.median(mins), rel=1e-9)
    assert variation([[1.0], [1.0], [2.0], [1.0]]) == 0.0  # one burst off: not noisy
    assert variation([[1.0], [1.2], [1.4]]) == pytest.approx(1.4826 * 0.2 / 1.2)


@pytest.mark.parametrize("runtime", ["onnxruntime", "torchscript"])
def test_on_the_loopback_phone_samples_are_reduced_there_and_the_script_reads_the_thermal_zones(
    tmp_path: Path, model_cache_dir: Path, runtime: str
) -> None:
    from device_agent.loopback.adbd import LoopbackAdbd
    from device_agent.deviceinfo import read_facts
    from device_agent.loopback.fakephone import load_phone, set_thermal
    from device_agent.models import ModelCache
    from device_agent.platforms.adb import AdbDevice
    from device_agent.runtimes.binary import BinaryRunner
    from device_agent.runtimes.base import RUNTIME_TOOL
    from device_agent.loopback.standins.worker import write_launcher
    from tests.agent.agent_support import FMNIST_KEYS

    cache = ModelCache(model_cache_dir)
    items = [cache.item(k, runtime) for k in FMNIST_KEYS[:2]]
    launcher = write_launcher(RUNTIME_TOOL[runtime], tmp_path / "bin")
    with LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7"), worker=True) as daemon:
        dev = AdbDevice(daemon.serial)
        runner = BinaryRunner(dev, runtime, 1, launcher, read_facts(dev))
        set_thermal(daemon.sandbox.root, temperatures_c={"cpu6-big": 47.5})
        sizes = {it.key: Sizing(12, 4) for it in items}
        bursts = plan(items, ProtocolConfig(iterations=24, rounds=2), None, random.Random(0), sizes, first=False)
        results = runner.run(bursts)
        assert all(r.error is None for r in results), results
        assert [len(r.samples_ms) for r in results] == [3] * 4  # 12 runs in samples of 4, reduced on the phone
        assert all(r.wall_ms > 0 and r.wall_ms == pytest.approx(4 * sum(r.samples_ms), rel=1e-3) for r in results)
        assert runner.last_thermal is not None and runner.last_thermal.temperatures_c["cpu6-big"] == 47.5
        assert runner.state()["threads_flag"] == ("--pthreadpool_size=1" if runtime == "torchscript" else "-x 1")
        dev.close()


def test_one_canary_burst_off_is_contention_two_are_drift() -> None:
    from device_agent.protocol import canary_drift

    canary = Item("conv_k3_s1_o64@1x64x28x28", Path("c.onnx"), (1, 64, 28, 28))

    def results(minima: list[float]) -> list[BurstResult]:
        return [BurstResult(Burst(canary, 2, 4, canary=True), [m, m * 1.1]) for m in minima]

    assert canary_drift(results([1.0, 1.0, 2.0, 1.0, 1.0]))[0] == 0.0  # one burst shared the core
    assert canary_drift(results([1.0, 1.0, 1.3, 1.3, 1.3]))[0] == pytest.approx(0.3 / 1.3)  # the device slowed
    assert canary_drift(results([1.0, 1.5]))[0] == pytest.approx(0.2)  # two bursts: the larger deviation
    probe = [BurstResult(Burst(canary, 10, 10, canary=True, probe=True), [9.0])]
    assert canary_drift(results([1.0, 1.0, 1.0]) + probe)[0] == 0.0  # probe bursts are not compared


def test_without_awk_on_the_phone_every_run_comes_back_and_the_agent_groups_them() -> None:
    item = _items(1)[0]
    burst = Burst(item, 3, 4, sample_runs=2)  # 2 extra warm-up rows first (the program does one itself)
    rows = [f"res/0.csv:models,{s:g},1234,100,{i}" for i, s in enumerate([9e-5, 8e-5, 1e-5, 3e-5, 2e-5, 2e-5])]
    text = _batch([f"{M} b 0", "Average inference time cost: 0.02 ms", f"{M} e 0 0", f"{M} csv", *rows])
    [res] = parse_batch_output(text, M, [burst], "onnxruntime")
    assert res.samples_ms == pytest.approx([0.02, 0.02]) and res.wall_ms == pytest.approx(0.08)


def test_the_agent_asks_for_the_thermal_status_only_when_the_scripts_sysfs_reading_is_not_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from device_agent import jobloop
    from device_agent.config import AgentConfig
    from device_agent.platforms.local import LocalDevice

    asked: list[int] = []
    monkeypatch.setattr(jobloop, "read_thermal", lambda dev: asked.append(1) or ThermalState(0, {"cpu": 40.0}))
    agent = jobloop.Agent(LocalDevice(tmp_path / "device"), AgentConfig(cache_dir=tmp_path / "models"))
    items = _items(1)
    runner = RunTimes({items[0].key: 0.01})
    for _ in range(10):
        agent.measure(items, runner, None)
        runner.last_thermal = ThermalState(None, {"cpu": 40.0})  # what the batch script read from sysfs
    assert len(asked) == 2  # before the first batch, then after 8 batches on sysfs alone
    runner.last_thermal = ThermalState(None, {"cpu": 71.0})  # hot: the status is asked (and waited on)
    agent.measure(items, runner, None)
    assert len(asked) == 3
