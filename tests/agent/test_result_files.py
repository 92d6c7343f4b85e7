"""onnxruntime_perf_test's result file exactly as ``PerformanceResult::DumpToFile`` writes it — with and without
``-s``, and the fallback when the file cannot be opened — and the agent reading every form.

Source: microsoft/onnxruntime ``onnxruntime/test/perftest/performance_runner.cc`` at 77e6dc9a: one
``<model folder>,<seconds>,<peak working set>,<cpu>,<run index>`` row per timed run; with ``-s`` an empty
line, then ``Min/Max/P50/P90/P95/P99/P999 Latency: <seconds> s`` (``sorted[int(n * q)]``), in the file and
on stdout; a file that cannot be opened: ``failed to open result file '<path>'. will dump stats to
output.`` on stderr, then ``Avg CPU usage:``/``Peak working set size:``/``Runs:`` and the statistics on
stdout, exit 0.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from device_agent import parsers
from device_agent.models import ModelCache
from device_agent.runtimes.base import Burst, Item
from device_agent.runtimes.batch_output import parse_batch_output
from device_agent.runtimes.binary import AWK_ORT
from device_agent.loopback.standins import fmt_g, onnxruntime_perf_test

KEY = "ir_k3_e1_g1_s1_o8@1x8x28x28"
ROW = re.compile(r"^(?P<model>[^,]*),(?P<seconds>[0-9.e+-]+),(?P<peak>\d+),(?P<cpu>\d+),(?P<index>\d+)$")
STATS = [("Min", None), ("Max", None), ("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99), ("P999", 0.999)]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ModelCache(tmp_path_factory.mktemp("result-file-models")).item(KEY, "onnxruntime").model


def _perf_test(*args: str) -> tuple[int, str, str]:
    """The stand-in with its stdout and stderr apart."""
    out, err = io.StringIO(), io.StringIO()
    rc = onnxruntime_perf_test.main(list(args), out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def _rows(lines: list[str]) -> list[re.Match[str]]:
    rows = [ROW.match(line) for line in lines]
    assert all(rows), lines
    return rows  # type: ignore[return-value]


def _expected_stats(seconds: list[str]) -> list[str]:
    """The seven lines DumpToFile's output_stats writes for these rows (as printed: 6 significant digits)."""
    ordered = sorted(float(s) for s in seconds)
    ends = {"Min": ordered[0], "Max": ordered[-1]}
    return [f"{name} Latency: {fmt_g(ends[name] if q is None else ordered[int(len(ordered) * q)])} s" for name, q in STATS]


def test_with_s_the_rows_then_an_empty_line_then_seven_statistics_lines(model: Path, tmp_path: Path) -> None:
    result = tmp_path / "res.csv"
    rc, out, err = _perf_test("-e", "cpu", "-m", "times", "-r", "7", "-x", "1", "-I", "-s", str(model), str(result))
    assert rc == 0 and err == "", out + err
    text = result.read_text()
    assert text.endswith(" s\n")
    lines = text.split("\n")
    rows = _rows(lines[:7])
    assert [int(r["index"]) for r in rows] == list(range(7))
    assert {r["model"] for r in rows} == {model.parent.name}  # the model's folder, as Initialize() names it
    assert all(float(r["seconds"]) > 0 for r in rows)
    assert lines[7] == ""
    stats = _expected_stats([r["seconds"] for r in rows])
    assert lines[8:15] == stats and lines[15:] == [""]
    # the same seven lines close stdout, after Run()'s summary
    assert out.splitlines()[-7:] == stats
    assert "Number of inferences per second: " in out and out.count(" \n") >= 1  # the summary's trailing blank


def test_without_s_only_the_rows(model: Path, tmp_path: Path) -> None:
    result = tmp_path / "res.csv"
    rc, out, err = _perf_test("-m", "times", "-r", "3", "-I", str(model), str(result))
    assert rc == 0 and err == ""
    lines = result.read_text().splitlines()
    assert len(lines) == 3 and [int(r["index"]) for r in _rows(lines)] == [0, 1, 2]
    assert "Latency" not in out
    # a second call appends, its run index starting at 0 again
    _perf_test("-m", "times", "-r", "2", "-I", "-s", str(model), str(result))
    assert [len(run.samples_ms) for run in parsers.parse_ort_result_file(result.read_text())] == [3, 2]


def test_without_a_result_file_the_statistics_go_to_stdout(model: Path) -> None:
    rc, out, err = _perf_test("-m", "times", "-r", "4", "-I", str(model))
    assert rc == 0 and err == ""
    lines = out.splitlines()
    at = lines.index("Runs:4")
    assert re.fullmatch(r"Avg CPU usage:\d+", lines[at - 2]) and re.fullmatch(r"Peak working set size:\d+", lines[at - 1])
    assert [line.split(" Latency: ")[0] for line in lines[at + 1 :]] == [name for name, _ in STATS]


def test_an_unopenable_result_file_is_said_on_stderr_and_the_statistics_come_on_stdout(model: Path, tmp_path: Path) -> None:
    result = tmp_path / "no-such-folder" / "res.csv"
    rc, out, err = _perf_test("-m", "times", "-r", "5", "-I", str(model), str(result))  # no -s: forced on
    assert rc == 0
    assert err == f"failed to open result file '{result}'. will dump stats to output.\n"
    lines = out.splitlines()
    assert "Runs:5" in lines and [line.split(" Latency: ")[0] for line in lines[-7:]] == [n for n, _ in STATS]
    assert not result.parent.exists()


def test_the_agent_reads_the_file_with_s_without_zero_runs(model: Path, tmp_path: Path) -> None:
    result = tmp_path / "res.csv"
    _perf_test("-m", "times", "-r", "6", "-I", "-s", str(model), str(result))
    text = result.read_text()
    rows = [float(r["seconds"]) * 1000 for r in _rows(text.splitlines()[:6])]
    [run] = parsers.parse_ort_result_file(text)
    assert run.samples_ms == pytest.approx(rows) and min(run.samples_ms) > 0  # the statistics lines are no runs
    assert run.percentiles_ms["min"] == pytest.approx(min(rows), rel=1e-5)
    for awk_name in ("awk", "original-awk"):  # the host's and one-true-awk (Android's)
        awk = shutil.which(awk_name)
        if awk is None:
            pytest.fail(f"{awk_name} is needed (make test installs it)")
        out = subprocess.run(
            [awk, "-v", "k=2", "-v", "d=0", "-v", "m=M", AWK_ORT, str(result)], capture_output=True, text=True, check=True
        ).stdout.split()
        t = out.index("T")
        assert out[t + 1 :] == ["6", out[t + 2], "0"]  # 6 runs, none of 0 ms
        assert [float(x) for x in out[1:t] if x != "S"] == pytest.approx(
            [(rows[0] + rows[1]) / 2, (rows[2] + rows[3]) / 2, (rows[4] + rows[5]) / 2], rel=1e-5
        )


def test_the_awk_counts_runs_of_0_ms() -> None:
    awk = shutil.which("original-awk") or shutil.which("awk")
    assert awk is not None
    text = "models,0,1,100,0\nmodels,1e-05,1,100,1\n\nMin Latency: 0 s\n"
    out = subprocess.run(
        [awk, "-v", "k=1", "-v", "d=0", "-v", "m=M", AWK_ORT], input=text, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[-1] == "T 2 0.01 1"


def test_the_open_failure_fallback_is_one_mean_per_burst_and_noted() -> None:
    marker = "@@B0a1b2c3d@@"
    item = Item("conv_k3_s1_o8@1x1x28x28", Path("m.onnx"), (1, 1, 28, 28))
    body = [
        "Session creation time cost: 0.01 s",
        "First inference time cost: 0 ms",
        "Total inference time cost: 0.0002 s",
        "Total inference requests: 10",
        "Average inference time cost: 0.02 ms",
        "Total inference run time: 0.0003 s",
        "Number of inferences per second: 33333.3 ",
        "Avg CPU usage: 100 %",
        "Peak working set size: 1 bytes",
        "failed to open result file 'res/0.csv'. will dump stats to output.",
        "Avg CPU usage:100",
        "Peak working set size:1",
        "Runs:10",
        *(f"{n} Latency: 2e-05 s" for n, _ in STATS),
    ]
    text = "\n".join([f"{marker} b 0", *body, f"{marker} e 0 0", f"{marker} csv"]) + "\n"
    [res] = parse_batch_output(text, marker, [Burst(item, 1, 10, sample_runs=2)], "onnxruntime")
    assert res.error is None and res.samples_ms == [0.02] and res.zero_runs == 0
    assert res.note is not None and "failed to open result file 'res/0.csv'" in res.note


def test_on_the_loopback_phone_an_unwritable_result_folder_falls_back_and_is_recorded(
    tmp_path: Path, model_cache_dir: Path
) -> None:
    """The phone refuses writes in the result folder (EPERM): the real program's fallback, noted in the batch state."""
    from device_agent.loopback.adbd import LoopbackAdbd
    from device_agent.deviceinfo import read_facts
    from device_agent.loopback.fakephone import load_phone, unlock
    from device_agent.platforms.adb import AdbDevice
    from device_agent.runtimes.binary import BinaryRunner
    from device_agent.loopback.standins.worker import write_launcher

    cache = ModelCache(model_cache_dir)
    item = cache.item(KEY, "onnxruntime")
    phone = load_phone("pixel-7")
    phone.readonly_results = True
    root = tmp_path / "phone"
    try:
        with LoopbackAdbd(root, phone, worker=True) as daemon:
            dev = AdbDevice(daemon.serial)
            try:
                runner = BinaryRunner(
                    dev, "onnxruntime", 1, write_launcher("onnxruntime_perf_test", tmp_path / "bin"), read_facts(dev)
                )
                results = runner.run([Burst(item, 2, 12, sample_runs=3), Burst(item, 2, 12, sample_runs=3)])
            finally:
                dev.close()
    finally:
        unlock(root)
    assert [r.error for r in results] == [None, None]
    assert all(len(r.samples_ms) == 1 and r.samples_ms[0] > 0 for r in results)  # the burst's mean
    assert all(r.note and "failed to open result file 'res/" in r.note for r in results)
    note = runner.state()["result_file"]
    assert isinstance(note, str) and "will dump stats to output" in note
