"""What the phone is (through the loopback device) and the binary runner on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device_agent.loopback.adbd import LoopbackAdbd
from device_agent.loopback.sandbox import Sandbox
from device_agent.deviceinfo import read_facts, slug
from device_agent.errors import ConfigError
from device_agent.loopback.fakephone import load_phone
from device_agent.models import ModelCache
from device_agent.platforms import open_device
from device_agent.platforms.adb import AdbDevice
from device_agent.protocol import ProtocolConfig, plan
from device_agent.runtimes.binary import INLINE_LIMIT, BinaryRunner
from device_agent.loopback.standins.worker import write_launcher
from tests.agent.agent_support import FMNIST_KEYS


def test_facts_of_a_pixel_7(loopback: LoopbackAdbd) -> None:
    dev = AdbDevice(loopback.serial)
    facts = read_facts(dev)
    info = facts.device_info()
    assert (info.manufacturer, info.model, info.soc, info.abi) == ("Google", "Pixel 7", "gs201", "arm64-v8a")
    assert info.os_version == "Android 14 (SDK 34)" and info.cpu_cores == 8
    assert info.cpu_max_freqs_khz == [1803000] * 4 + [2348000] * 2 + [2850000] * 2
    assert [c.cpus for c in facts.clusters] == [(6, 7), (4, 5), (0, 1, 2, 3)]
    assert facts.taskset_mask(1) == "c0" and facts.taskset_mask(4) == "f0"
    assert facts.governors == ["schedutil"] and facts.thermal.status == 0
    assert facts.default_name() == "google-pixel-7-00hw"
    assert facts.device_info().props["android"]["ro.build.version.incremental"] == "hwnas.loopback"  # the badge's
    assert info.props["clusters"][0] == {"cpus": [6, 7], "max_freq_khz": 2850000}
    dev.close()


@pytest.mark.parametrize(
    "phone, mask, name", [("galaxy-a51", "f0", "samsung-sm-a515f-wnas"), ("generic", None, "hwnas-loopback-0001")]
)
def test_other_phones(tmp_path: Path, phone: str, mask: str | None, name: str) -> None:
    with LoopbackAdbd(tmp_path / phone, load_phone(phone)) as daemon:
        facts = read_facts(AdbDevice(daemon.serial))
        assert facts.taskset_mask(1) == mask and facts.default_name() == name


def test_phone_from_a_json_file_and_bad_names(tmp_path: Path) -> None:
    path = tmp_path / "phone.json"
    path.write_text(load_phone("generic").to_json().replace('"Loopback"', '"Custom 1"'))
    assert load_phone(str(path)).model == "Custom 1"
    with pytest.raises(ConfigError, match="unknown phone"):
        load_phone("nokia-3310")
    with pytest.raises(ConfigError, match="spaces"):
        Sandbox(tmp_path / "with space")


def test_sandbox_rewrites_device_paths_only_where_a_word_starts(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    r = str(box.root)
    assert box.rewrite("cd /data/local/tmp && cat /sys/x") == f"cd {r}/data/local/tmp && cat {r}/sys/x"
    assert box.rewrite("D=/data/local/tmp/hwnas sh f") == f"D={r}/data/local/tmp/hwnas sh f"
    assert box.rewrite("ls /usr/data /x/sys $HOME/data") == "ls /usr/data /x/sys $HOME/data"
    assert box.rewrite("cat '/proc/cpuinfo'") == f"cat '{r}/proc/cpuinfo'"


def test_local_host_is_a_device_too() -> None:
    dev = open_device(None, local=True)
    dev.connect()
    facts = read_facts(dev)
    assert facts.kind == "local" and facts.default_name().startswith("host-")
    assert facts.device_info().cpu_cores and facts.device_info().abi
    assert dev.run("echo hi").output == "hi\n"
    assert slug("Google Pixel 7 Pro!") == "google-pixel-7-pro"


@pytest.mark.parametrize("runtime", ["onnxruntime", "torchscript"])
def test_binary_runner_pushes_once_and_measures(tmp_path: Path, model_cache_dir: Path, runtime: str) -> None:
    cache = ModelCache(model_cache_dir)
    items = [cache.item(k, runtime) for k in FMNIST_KEYS[:3]]
    launcher = write_launcher("onnxruntime_perf_test" if runtime == "onnxruntime" else "speed_benchmark_torch", tmp_path / "bin")
    with LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7"), worker=True) as daemon:
        dev = AdbDevice(daemon.serial)
        facts = read_facts(dev)
        runner = BinaryRunner(dev, runtime, 1, launcher, facts)
        runner.prepare(items)
        workdir = daemon.sandbox.root / "data/local/tmp/hwnas"
        assert sorted(p.name for p in (workdir / "models").iterdir()) == sorted(i.model.name for i in items)
        assert os.access(workdir / "bin" / launcher.name, os.X_OK)
        # a fresh runner finds the same files by MD5 and pushes nothing
        stamp = {p: p.stat().st_mtime_ns for p in (workdir / "models").iterdir()}
        again = BinaryRunner(dev, runtime, 1, launcher, facts)
        again.prepare(items)
        assert {p: p.stat().st_mtime_ns for p in (workdir / "models").iterdir()} == stamp
        bursts = plan(items, ProtocolConfig(warmup=2, iterations=4, rounds=2), None)
        results = again.run(bursts)
        assert [r.burst for r in results] == bursts
        assert all(r.error is None and len(r.samples_ms) == r.burst.iters for r in results), results
        assert again.state()["taskset"] == "c0"
        dev.close()


def test_without_a_binary_the_runner_runs_the_phones_own_program(tmp_path: Path, model_cache_dir: Path) -> None:
    """No --benchmark-binary: the program installed in the phone's work folder runs (the loopback phone's are its
    stand-ins), with the version beside it; none there is a ConfigError naming both ways to give one."""
    from device_agent.models import md5_of

    item = ModelCache(model_cache_dir).item(FMNIST_KEYS[0], "onnxruntime")
    with LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7"), worker=True) as daemon:
        dev = AdbDevice(daemon.serial)
        facts = read_facts(dev)
        installed = daemon.sandbox.root / "data/local/tmp/hwnas/bin/onnxruntime_perf_test"
        before = installed.read_bytes()
        runner = BinaryRunner(dev, "onnxruntime", 1, None, facts)
        runner.prepare([item])
        assert installed.read_bytes() == before  # run where it is, not replaced by a push
        assert runner.runtime_version is not None and runner.runtime_version.endswith("+loopback")
        assert runner.state()["binary_md5"] == md5_of(installed)
        results = runner.run(plan([item], ProtocolConfig(warmup=1, iterations=2, rounds=1), None))
        assert results and all(r.error is None and r.samples_ms for r in results), results
        given = BinaryRunner(dev, "onnxruntime", 1, None, facts, runtime_version="1.22.0")
        given.prepare([])
        assert given.runtime_version == "1.22.0"  # --runtime-version wins over the file on the phone
        installed.unlink()  # someone cleaned /data/local/tmp
        runner.forget_files()
        with pytest.raises(
            ConfigError,
            match="--benchmark-binary PATH, or install it on the phone as /data/local/tmp/hwnas/bin/onnxruntime_perf_test",
        ):
            runner.prepare([item])
        dev.close()


def test_long_schedules_go_as_a_pushed_script_and_failures_are_per_burst(tmp_path: Path, model_cache_dir: Path) -> None:
    cache = ModelCache(model_cache_dir)
    item = cache.item(FMNIST_KEYS[0], "onnxruntime")
    launcher = write_launcher("onnxruntime_perf_test", tmp_path / "bin")
    with LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7"), worker=True) as daemon:
        dev = AdbDevice(daemon.serial)
        runner = BinaryRunner(dev, "onnxruntime", 1, launcher, read_facts(dev))
        bursts = plan([item], ProtocolConfig(warmup=1, iterations=40, rounds=40), None)
        assert len(runner.script(bursts, "@@M@@")) > INLINE_LIMIT
        results = runner.run(bursts)
        assert len(results) == 40 and all(len(r.samples_ms) == 1 for r in results)
        assert (daemon.sandbox.root / "data/local/tmp/hwnas/batch.sh").exists()
        # a model the binary cannot load fails its bursts, not the batch
        (daemon.sandbox.root / "data/local/tmp/hwnas" / runner.remote_model(item)).write_bytes(b"not onnx")
        runner._ready.add(runner.remote_model(item))  # pretend it was pushed: the device has a broken file
        broken = runner.run(plan([item], ProtocolConfig(warmup=1, iterations=2, rounds=2), None))
        assert len(broken) == 2 and all(r.error and "exited" in r.error for r in broken)
        dev.close()
