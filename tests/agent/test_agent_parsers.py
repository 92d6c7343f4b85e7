"""Every parser on captured output of every known variant (tests/agent/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent import parsers
from device_agent.runtimes.base import Burst, Item
from device_agent.runtimes.batch_output import parse_batch_output

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_torch_per_iteration_values_are_quoted_microseconds() -> None:
    out = parsers.parse_speed_benchmark_torch(read("torch_report_pep.txt"))
    assert out.samples_ms == pytest.approx([0.057, 0.052, 0.053, 1234.57])  # "1.23457e+06" us
    assert out.mean_ms == pytest.approx(308.704)


def test_torch_without_report_pep_gives_the_mean_only() -> None:
    out = parsers.parse_speed_benchmark_torch(read("torch_no_pep.txt"))
    assert out.samples_ms == [] and out.mean_ms == pytest.approx(1.52025)


def test_torch_sub_microsecond_mean_beside_whole_microsecond_samples() -> None:
    # a 9 us operator: per-iteration values are duration_cast<microseconds>, the mean a float timer
    out = parsers.parse_speed_benchmark_torch(read("torch_report_pep_fast.txt"))
    assert out.samples_ms == pytest.approx([0.009, 0.008, 0.008, 0.009, 0.008])
    assert all(round(s * 1000) == pytest.approx(s * 1000) for s in out.samples_ms)  # whole microseconds
    assert out.mean_ms == pytest.approx(0.00893417, rel=1e-9)  # "8.93417": kept to the last digit
    assert out.SAMPLE_RESOLUTION_MS == 0.001


def test_torch_observer_line_that_is_not_json_is_a_parse_error() -> None:
    with pytest.raises(parsers.ParseError, match="not JSON"):
        parsers.parse_speed_benchmark_torch('PyTorchObserver {"type": "NET", "value": }\n')


def test_torch_bytecode_rejection_names_the_range_and_the_model_version() -> None:
    text = read("torch_bytecode_rejected.txt")
    assert parsers.parse_bytecode_rejection(text) == parsers.BytecodeRejected(3, 7, 8)
    assert parsers.parse_bytecode_rejection(read("torch_report_pep.txt")) is None
    with pytest.raises(parsers.ParseError):
        parsers.parse_speed_benchmark_torch(text)


def test_torch_garbage_is_a_parse_error() -> None:
    with pytest.raises(parsers.ParseError, match="PyTorchObserver"):
        parsers.parse_speed_benchmark_torch("Segmentation fault\n")


def test_ort_average_and_percentiles_in_seconds() -> None:
    out = parsers.parse_onnxruntime_perf_test(read("ort_average.txt"))
    assert out.mean_ms == pytest.approx(0.0123)
    assert out.requests == 50 and out.session_s == pytest.approx(0.0123) and out.first_ms == 0
    assert out.percentiles_ms["min"] == pytest.approx(0.011)
    assert out.percentiles_ms["p50"] == pytest.approx(0.012)
    assert out.percentiles_ms["p999"] == pytest.approx(0.0205)


def test_ort_newer_average_total_line() -> None:
    out = parsers.parse_onnxruntime_perf_test(read("ort_average_total.txt"))
    assert out.mean_ms == pytest.approx(98.961997)
    assert out.requests == 5 and out.percentiles_ms["p90"] == pytest.approx(100.4)


def test_ort_with_result_file_and_no_stats() -> None:
    out = parsers.parse_onnxruntime_perf_test(read("ort_result_file_no_stats.txt"))
    assert out.mean_ms == pytest.approx(0.02275) and out.percentiles_ms == {}


def test_ort_result_file_as_the_program_writes_it_with_s() -> None:
    # rows of the model's parent folder, then an empty line and the -s stats, per invocation (appended)
    runs = parsers.parse_ort_result_file(read("ort_result_file_s.txt"))
    assert [r.model for r in runs] == ["models", "models"]
    assert runs[0].samples_ms == pytest.approx([0.0231, 0.012345, 0.012291, 0.0124], rel=1e-12)
    assert runs[1].samples_ms == pytest.approx([0.019876, 0.012187], rel=1e-12)
    # sub-microsecond resolution: 12.345 us and 12.291 us stay apart
    assert runs[0].samples_ms[1] - runs[0].samples_ms[2] == pytest.approx(0.000054, abs=1e-9)
    assert runs[0].percentiles_ms == pytest.approx(
        {"min": 0.012291, "max": 0.0231, "p50": 0.0124, "p90": 0.0231, "p95": 0.0231, "p99": 0.0231, "p999": 0.0231}
    )
    assert runs[1].percentiles_ms["min"] == pytest.approx(0.012187)
    for run in runs:  # the file's own stats agree with its rows: sorted[int(n*q)]
        ordered = sorted(run.samples_ms)
        assert run.percentiles_ms["p50"] == pytest.approx(ordered[int(len(ordered) * 0.5)])
    assert parsers.parse_ort_result_csv(read("ort_result_file_s.txt")) == [runs[0].samples_ms, runs[1].samples_ms]


def test_ort_result_file_of_an_older_build_with_latency_is_sec_lines() -> None:
    (run,) = parsers.parse_ort_result_file(read("ort_result_file_old_stats.txt"))
    assert run.model == "test_conv" and run.samples_ms == pytest.approx([0.123456, 0.119])
    assert run.percentiles_ms["min"] == pytest.approx(0.119) and run.percentiles_ms["max"] == pytest.approx(0.123456)


def test_ort_result_file_without_stats_splits_invocations_at_run_index_zero() -> None:
    text = "models,2e-05,1,100,0\nmodels,3e-05,1,100,1\nmodels,4e-05,1,100,0\n"
    assert parsers.parse_ort_result_csv(text) == [pytest.approx([0.02, 0.03]), pytest.approx([0.04])]


def test_ort_missing_average_is_a_parse_error() -> None:
    with pytest.raises(parsers.ParseError, match="Average inference time cost"):
        parsers.parse_onnxruntime_perf_test("Load model from m.onnx failed: No such file\n")


def test_getprop() -> None:
    props = parsers.parse_getprop(read("getprop.txt"))
    assert props["ro.product.model"] == "Pixel 7"
    assert props["ro.build.version.sdk"] == "34"
    assert props["empty.value"] == ""
    assert "persist.sys.multiline" not in props  # multi-line values are skipped, the rest still parses


def test_thermalservice_current_hal_temperatures() -> None:
    state = parsers.parse_thermalservice(read("thermalservice.txt"))
    assert state.status == 1
    assert state.temperatures_c == {"battery": 29.5, "BIG": 47.123, "LITTLE": 41.0}  # NaN sensor dropped
    assert state.max_temp_c == pytest.approx(47.123)


def test_thermalservice_android10_has_cached_only() -> None:
    state = parsers.parse_thermalservice(read("thermalservice_android10.txt"))
    assert state.status == 0 and state.temperatures_c == {"cpu0": 36.6}


def test_thermal_zones_in_millidegrees_and_degrees() -> None:
    zones = parsers.parse_thermal_zones(read("thermal_zones.txt"))
    assert zones == {"cpu-0-0-usr": 41.3, "battery": 31.0, "cpu-0-0-usr#2": 42.1}


def test_cpu_files_and_sections() -> None:
    cpus = parsers.parse_cpu_files(
        "/x/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq:1803000\n"
        "/sys/devices/system/cpu/cpu7/cpufreq/scaling_governor:schedutil\n"
    )
    assert cpus == {0: {"cpuinfo_max_freq": "1803000"}, 7: {"scaling_governor": "schedutil"}}
    assert parsers.split_sections("junk\n@@M a\n1\n2\n@@M b\n", "@@M") == {"a": "1\n2", "b": ""}


def _bursts(n: int) -> list[Burst]:
    item = Item("conv_k3_s1_o8@1x1x28x28", Path("m.onnx"), (1, 1, 28, 28))
    return [Burst(item, 2, 3) for _ in range(n)]


def test_batch_output_of_onnxruntime_uses_the_per_run_file_and_drops_extra_warmup() -> None:
    m = "@@Bx@@"
    text = (
        f"{m} b 0\n{read('ort_result_file_no_stats.txt')}{m} e 0 0\n"
        f"{m} b 1\nLoad model failed\n{m} e 1 255\n"
        f"{m} csv\nres/0.csv:models,5e-05,1,100,0\nres/0.csv:models,2.0e-05,1,100,1\n"
        f"res/0.csv:models,2.1e-05,1,100,2\nres/0.csv:models,2.2e-05,1,100,3\n"
        f"res/0.csv:Min Latency: 2e-05 s\nres/0.csv:P50 Latency: 2.2e-05 s\n{m} end\n"
    )
    results = parse_batch_output(text, m, _bursts(3), "onnxruntime")
    assert len(results) == 2  # burst 2 never ran
    assert results[0].samples_ms == pytest.approx([0.020, 0.021, 0.022])  # first of 4 = extra warm-up
    assert results[1].error is not None and "exited 255" in results[1].error


def test_batch_output_of_torch_and_a_cut_off_run() -> None:
    m = "@@By@@"
    text = f"{m} b 0\n{read('torch_report_pep.txt')}{m} e 0 0\n{m} b 1\nStarting benchmark.\n"
    results = parse_batch_output(text, m, _bursts(2), "torchscript")
    assert len(results) == 1
    assert results[0].samples_ms == pytest.approx([0.052, 0.053, 1234.57])  # the last --iter values
