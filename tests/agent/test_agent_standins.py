"""The host stand-ins take the binaries' flags and print their output, and pay a phone's per-call cost:
a fresh process (forked by the loopback's zygote), a new session, only the program's own warm-up."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from device_agent import parsers
from device_agent.loopback.adbd import LoopbackAdbd
from device_agent.loopback.fakephone import load_phone
from device_agent.models import ModelCache
from device_agent.platforms.adb import AdbDevice
from device_agent.loopback.standins import onnxruntime_perf_test, speed_benchmark_torch
from device_agent.loopback.standins.worker import write_launcher
from tests.agent.agent_support import env

KEY = "ir_k3_e1_g1_s1_o8@1x8x28x28"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    return ModelCache(tmp_path_factory.mktemp("standin-models"))


def test_onnxruntime_perf_test_output_and_result_file(models: ModelCache, tmp_path: Path) -> None:
    item = models.item(KEY, "onnxruntime")
    out = io.StringIO()
    result = tmp_path / "res.csv"
    rc = onnxruntime_perf_test.main(
        ["-e", "cpu", "-m", "times", "-r", "7", "-x", "1", "-I", "-s", str(item.model), str(result)], out=out
    )
    text = out.getvalue()
    assert rc == 0, text
    assert text.startswith("Setting intra_op_num_threads to 1\n")
    summary = parsers.parse_onnxruntime_perf_test(text)
    assert summary.requests == 7 and set(summary.percentiles_ms) == {"min", "max", "p50", "p90", "p95", "p99", "p999"}
    runs = parsers.parse_ort_result_csv(result.read_text())
    assert len(runs) == 1 and len(runs[0]) == 7
    assert min(runs[0]) == pytest.approx(summary.percentiles_ms["min"], rel=1e-4)
    # the result file is appended to, like the binary does
    onnxruntime_perf_test.main(["-m", "times", "-r", "3", "-I", str(item.model), str(result)], out=io.StringIO())
    assert [len(r) for r in parsers.parse_ort_result_csv(result.read_text())] == [7, 3]


def test_onnxruntime_perf_test_errors_like_the_binary(tmp_path: Path) -> None:
    out = io.StringIO()
    assert onnxruntime_perf_test.main(["-e", "nnapi", "m.onnx"], out=out) == 255
    assert out.getvalue() == "NNAPI is not supported in this build\n\n"  # ort_test_session.cc's ORT_THROW
    out = io.StringIO()
    assert onnxruntime_perf_test.main([], out=out) == 255  # no model: ParseArguments fails, main shows the usage
    assert out.getvalue() == onnxruntime_perf_test.USAGE
    out = io.StringIO()
    assert onnxruntime_perf_test.main(["-m", "times", "-r", "1", str(tmp_path / "missing.onnx")], out=out) != 0


def test_speed_benchmark_torch_output(models: ModelCache) -> None:
    item = models.item(KEY, "torchscript")
    out = io.StringIO()
    rc = speed_benchmark_torch.main(
        [
            f"--model={item.model}",
            "--input_dims",
            "1,8,28,28",
            "--input_type=float",
            "--warmup=2",
            "--iter=6",
            "--report_pep",
            "true",
        ],
        out=out,
    )
    text = out.getvalue()
    assert rc == 0, text
    assert text.splitlines()[:3] == ["Starting benchmark.", "Running warmup runs.", "Main runs."]
    assert text.count('PyTorchObserver {"type": "NET", "unit": "us", "metric": "latency", "value": "') == 6
    parsed = parsers.parse_speed_benchmark_torch(text)
    assert len(parsed.samples_ms) == 6 and all(abs(s * 1000 - round(s * 1000)) < 1e-6 for s in parsed.samples_ms)  # whole us
    assert parsed.mean_ms is not None and parsed.mean_ms > 0


def test_speed_benchmark_torch_takes_the_thread_pool_flags_of_mobile_pytorch(
    models: ModelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = speed_benchmark_torch.parse_flags(["--pthreadpool_size=3", "--caffe2_threadpool_android_cap", "0"])
    assert speed_benchmark_torch.pool_threads(flags, cpus=8) == 3  # the explicit size wins
    default = speed_benchmark_torch.parse_flags([])
    assert [speed_benchmark_torch.pool_threads(default, cpus=n) for n in (2, 4, 6, 8, 10, 12)] == [2, 4, 2, 4, 4, 6]
    assert (
        speed_benchmark_torch.pool_threads(
            speed_benchmark_torch.parse_flags(["--caffe2_threadpool_force_inline", "true"]), cpus=8
        )
        == 1
    )
    # OMP_NUM_THREADS is not what sizes the pool: the program is run with the flag
    seen: list[int] = []
    from device_agent.runtimes import engines

    class Spy(engines.TorchEngine):
        def __init__(self, model, threads, input_shape):
            seen.append(threads)
            super().__init__(model, threads, input_shape)

    monkeypatch.setattr(engines, "TorchEngine", Spy)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    item = models.item(KEY, "torchscript")
    args = [f"--model={item.model}", "--input_dims=1,8,28,28", "--input_type=float", "--iter=2"]
    assert speed_benchmark_torch.main([*args, "--pthreadpool_size=1"], out=io.StringIO()) == 0
    assert speed_benchmark_torch.main(args, out=io.StringIO()) == 0  # new engine every call: a new process
    assert seen == [1, speed_benchmark_torch.pool_threads(default, os.cpu_count() or 1)]


def test_onnxruntime_perf_test_makes_a_session_per_call_and_no_run_before_its_warm_up(
    models: ModelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    from device_agent.runtimes import engines

    made: list[bool] = []
    runs: list[int] = []

    class Spy(engines.OrtEngine):
        def __init__(self, *a, **kw):
            made.append(kw.get("prebind_outputs", True))
            super().__init__(*a, **kw)
            runs.append(0)

        def run_once(self) -> None:
            runs[-1] += 1
            super().run_once()

    monkeypatch.setattr(engines, "OrtEngine", Spy)
    item = models.item(KEY, "onnxruntime")
    for _ in range(2):
        assert onnxruntime_perf_test.main(["-m", "times", "-r", "3", "-x", "1", "-I", str(item.model)], out=io.StringIO()) == 0
    assert made == [False, False]  # a session per call, outputs allocated by the session like the program's
    assert runs == [1, 1]  # the program's one warm-up run, no other


def test_speed_benchmark_torch_flag_errors() -> None:
    out = io.StringIO()
    assert speed_benchmark_torch.main(["--bogus=1"], out=out) == 1
    assert out.getvalue() == (
        "Parsing commandline arguments for c10.\n"
        "C10 flag: unrecognized commandline argument: --bogus=1\n"
        "Failed to parse command line flags!\n"
    )
    out = io.StringIO()
    assert speed_benchmark_torch.main(["--model=x.ptl"], out=out) == 134
    assert "Input dims must be specified" in out.getvalue()


def test_module_entry_point_runs_standalone(models: ModelCache) -> None:
    item = models.item(KEY, "onnxruntime")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_agent.loopback.standins.onnxruntime_perf_test",
            "-m",
            "times",
            "-r",
            "3",
            "-I",
            str(item.model),
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 0 and "Total inference requests: 3" in r.stdout


def test_launcher_uses_the_zygote_and_falls_back_without_it(models: ModelCache, tmp_path: Path) -> None:
    item = models.item(KEY, "onnxruntime")
    launcher = write_launcher("onnxruntime_perf_test", tmp_path / "bin")
    cmd = "cd /data/local/tmp/hwnas && ./bin/onnxruntime_perf_test -m times -r 5 -x 1 -I models/m.onnx"
    for worker in (True, False):
        with LoopbackAdbd(tmp_path / f"phone{worker}", load_phone("generic"), worker=worker) as daemon:
            dev = AdbDevice(daemon.serial)
            dev.push(launcher, "/data/local/tmp/hwnas/bin/onnxruntime_perf_test")
            dev.push(item.model, "/data/local/tmp/hwnas/models/m.onnx")
            if worker:  # the worker imports onnxruntime before it opens its FIFO
                deadline = time.monotonic() + 30
                while not (daemon.sandbox.root / ".phone/worker/requests").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
            res = dev.run(cmd, timeout_s=60)
            assert parsers.parse_onnxruntime_perf_test(res.output).requests == 5
            bad = dev.run(cmd.replace("models/m.onnx", "models/none.onnx"), check=False, timeout_s=60)
            assert bad.rc == 255  # the exit code travels back through the worker too
            dev.close()


def _wait_for_worker(daemon: LoopbackAdbd) -> None:
    deadline = time.monotonic() + 30  # the worker imports onnxruntime before it opens its FIFO
    while not (daemon.sandbox.root / ".phone/worker/requests").exists():
        assert time.monotonic() < deadline, "the stand-in worker did not start"
        time.sleep(0.05)


def test_older_and_minimal_builds_refuse_like_the_real_programs_on_stdout_and_stderr(tmp_path: Path) -> None:
    """Through the loopback phone, with and without the zygote: each stream gets what the program writes there."""
    from device_agent.loopback.standins import KNOB_MINIMAL, KNOB_WITHOUT

    old_ort = write_launcher("onnxruntime_perf_test", tmp_path / "old", {KNOB_WITHOUT: "-I"})
    old_torch = write_launcher("speed_benchmark_torch", tmp_path / "old", {KNOB_WITHOUT: "--pthreadpool_size"})
    minimal = write_launcher("onnxruntime_perf_test", tmp_path / "minimal", {KNOB_MINIMAL: "1"})
    calls = [  # (program, arguments, exit code, stdout, stderr)
        (
            old_ort,
            "-e cpu -m times -r 5 -x 1 -I -s models/m.onnx res.csv",
            255,
            onnxruntime_perf_test.USAGE,
            "./bin/onnxruntime_perf_test: unknown option -- I\n",
        ),  # bionic getopt, then ShowUsage and main's -1
        (
            old_torch,
            "--model=m.ptl --input_dims=1,1,1,1 --iter=1 --pthreadpool_size=1",
            1,
            "",
            "Parsing commandline arguments for c10.\nC10 flag: unrecognized commandline argument: --pthreadpool_size=1\n"
            "Failed to parse command line flags!\n",
        ),
        (minimal, "-e cpu -m times -r 5 -I models/m.onnx res.csv", 255, "", "models/m.onnx is not supported\n"),
    ]
    for worker in (True, False):
        with LoopbackAdbd(tmp_path / f"phone{worker}", load_phone("generic"), worker=worker) as daemon:
            dev = AdbDevice(daemon.serial)
            try:
                if worker:
                    _wait_for_worker(daemon)
                for program, args, rc, out, err in calls:
                    name = "speed_benchmark_torch" if "torch" in program.name else "onnxruntime_perf_test"
                    dev.push(program, f"/data/local/tmp/hwnas/bin/{name}")
                    cmd = f"cd /data/local/tmp/hwnas && ./bin/{name} {args}"
                    only_out = dev.run(f"{cmd} 2>/dev/null", check=False, timeout_s=60)
                    only_err = dev.run(f"{cmd} 2>&1 >/dev/null", check=False, timeout_s=60)
                    both = dev.run(f"{cmd} 2>&1", check=False, timeout_s=60)
                    assert (only_out.rc, only_out.output) == (rc, out), (worker, program)
                    assert (only_err.rc, only_err.output) == (rc, err), (worker, program)
                    assert both.output == err + out  # stderr first: getopt/c10 speak before the usage
            finally:
                dev.close()


def test_c10_flags_take_a_value_in_the_next_argument_and_ignore_single_dash_ones() -> None:
    flags = speed_benchmark_torch.parse_flags(["--iter", "7", "-v", "--report_pep", "True", "--model=m.ptl"])
    assert (flags["iter"], flags["report_pep"], flags["model"]) == (7, True, "m.ptl")
    with pytest.raises(speed_benchmark_torch.FlagError) as bad_bool:
        speed_benchmark_torch.parse_flags(["--report_pep", "--iter=3"])  # a bool flag takes the next argument too
    assert str(bad_bool.value).endswith("C10 flag: illegal argument: --report_pep\n")
    with pytest.raises(speed_benchmark_torch.FlagError) as last:
        speed_benchmark_torch.parse_flags(["--warmup"])
    assert str(last.value).endswith("I am expecting a value for --warmup")  # no newline: the source has none


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_call_waiting_on_a_worker_that_died_ends_when_the_phone_comes_back(tmp_path: Path) -> None:
    """A phone killed mid-call (SIGKILL: no goodbye) runs nothing on after it comes back: its launcher gets end-of-file
    and exits 70, where it once waited forever on its reply FIFO (one stuck process per restart test)."""
    import signal

    from device_agent.loopback.standins.worker import REQUESTS

    wdir = tmp_path / "worker"

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "device_agent.loopback.standins.worker", "--dir", str(wdir)],
            env=env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    worker = start()
    later = None
    launcher = None
    try:
        _wait_for(lambda: (wdir / REQUESTS).exists())
        os.kill(worker.pid, signal.SIGSTOP)  # it will never read the request the launcher writes
        program = write_launcher("onnxruntime_perf_test", tmp_path / "bin")
        launcher = subprocess.Popen(
            ["/bin/sh", str(program), "-e", "cpu", "-m", "times", "-r", "1", "m.onnx", "r.csv"],
            env={**env(), "HWNAS_STANDIN_WORKER": str(wdir)},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_for(lambda: any(wdir.glob("r.*")))  # its reply FIFO: it waits there now
        worker.kill()
        worker.wait(timeout=15)
        with pytest.raises(subprocess.TimeoutExpired):
            launcher.wait(timeout=1.0)  # the worker is gone and nothing ends the wait ...
        later = start()  # ... until the phone comes back
        assert launcher.wait(timeout=60) == 70
    finally:
        if launcher is not None and launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)  # its cat too
            launcher.wait(timeout=15)
        for proc in (worker, later):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)
