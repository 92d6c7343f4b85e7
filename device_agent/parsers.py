"""Pure parsers of what the device prints: one function per program, tested on captured output.

Each format follows the program's source as it writes it:

* ``speed_benchmark_torch`` (pytorch/pytorch ``binaries/speed_benchmark_torch.cc``): ``Starting
  benchmark.`` / ``Running warmup runs.`` / ``Main runs.``, then with ``--report_pep true`` one
  ``PyTorchObserver {"type": "NET", "unit": "us", "metric": "latency", "value": "<t>"}`` line per
  iteration, printed after the loop. ``t`` is ``duration_cast<microseconds>`` stored in a float and
  streamed with 6 significant digits: whole microseconds (``"57"``, ``"1.23457e+06"``). The last
  line is ``Main run finished. Microseconds per iter: <x>. Iters per second: <y>`` where ``x`` is
  ``caffe2::Timer::MicroSeconds()`` (nanoseconds / 1000 as a float) over the whole loop divided by
  ``--iter``: the only figure with sub-microsecond resolution. On a phone (libc++) an uncaught
  ``c10::Error`` — e.g. a ``.ptl`` whose bytecode the lite interpreter does not read — ends it with
  ``libc++abi: terminating with uncaught exception of type c10::Error: <message>``.
* ``onnxruntime_perf_test`` (microsoft/onnxruntime ``onnxruntime/test/perftest/performance_runner.cc``
  ``Run()`` and ``PerformanceResult::DumpToFile``): the summary ``Average inference time cost: <ms>
  ms`` (newer builds: ``... cost total: ...``); with ``-s`` (or without a result file) the
  ``Min/Max/P50/P90/P95/P99/P999 Latency: <s> s`` lines in seconds (``sorted[int(n*q)]``). The
  positional result file gets, per invocation (appended), one row per timed run
  ``<model>,<seconds>,<peak working set>,<avg cpu>,<run index>`` where ``<model>`` is the name of
  the model's PARENT FOLDER (``Initialize()``: ``GetLastComponent(GetDirNameFromFilePath(model))``,
  so ``models/x.onnx`` → ``models``) and the seconds are a double with 6 significant digits
  (sub-microsecond); with ``-s`` the same stats lines follow in the file after an empty line.
  Older builds (``performance_result.h``) wrote ``Min Latency is <s> sec``.
* ``executor_runner`` (pytorch/executorch ``examples/portable/executor_runner/executor_runner.cpp``):
  only ``ET_LOG`` lines, on stderr, in the posix PAL's format ``%c %02u:%02u:%02u.%06lu
  executorch:%s:%zu] %s`` (level, time since start, file, line, message). Per execution ``Iteration
  <i> of <n>: <ms> ms`` (``%f``: six decimals of a millisecond, nanosecond ticks), then ``Model
  executed successfully <n> time(s) in <ms> ms.`` (the sum). ``Resetting threadpool with num threads =
  <n>`` names the pool; an event-tracer build ends with ``ETDump written to file '<path>'.``; a failed
  check is an ``F`` line ``In function main(), assert failed (...)`` before the abort.
* ``getprop``, ``dumpsys thermalservice``, ``grep -H`` of sysfs files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# ---- speed_benchmark_torch ------------------------------------------------------------------
_NUM = r"(-?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"
_OBSERVER = re.compile(r"^PyTorchObserver (\{.*\})\s*$", re.M)
_TORCH_SUMMARY = re.compile(r"Microseconds per iter:\s*" + _NUM + r"\.?\s+Iters per second:\s*" + _NUM)
# torch/csrc/jit/mobile (parse_bytecode / import): the lite interpreter's bytecode range check.
_BYTECODE_RANGE = re.compile(
    r"Lite Interpreter version number does not match\. The model version must be between "
    r"(\d+) and (\d+) but the model version is (\d+)"
)


class ParseError(ValueError):
    """Output that does not look like the program's; carries a short excerpt."""


@dataclass(frozen=True)
class TorchBenchOutput:
    samples_ms: list[float]  # one per measured iteration, whole microseconds (empty without --report_pep)
    mean_ms: float | None  # "Microseconds per iter": the loop's float timer over --iter, sub-microsecond

    #: what one per-iteration sample can resolve (``duration_cast<microseconds>``)
    SAMPLE_RESOLUTION_MS = 0.001


def _to_ms(value: float, unit: str) -> float:
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3, "ns": 1e-6}.get(unit.lower())
    if scale is None:
        raise ParseError(f"unknown time unit {unit!r}")
    return value * scale


def parse_speed_benchmark_torch(text: str) -> TorchBenchOutput:
    """Per-iteration latencies (ms) and the sub-microsecond mean (ms) from ``speed_benchmark_torch`` output."""
    samples: list[float] = []
    for m in _OBSERVER.finditer(text):
        try:
            row = json.loads(m.group(1))
        except json.JSONDecodeError:
            raise ParseError(f"a PyTorchObserver line that is not JSON: {m.group(0)[:200]!r}") from None
        if isinstance(row, dict) and row.get("type") == "NET" and row.get("metric") == "latency":
            samples.append(_to_ms(float(row["value"]), str(row.get("unit", "us"))))
    mean = None
    summary = _TORCH_SUMMARY.search(text)
    if summary:
        mean = float(summary.group(1)) / 1000.0
    if not samples and mean is None:
        raise ParseError(f"no PyTorchObserver lines and no 'Microseconds per iter' in output: {text[-300:]!r}")
    return TorchBenchOutput(samples, mean)


@dataclass(frozen=True)
class BytecodeRejected:
    """The phone's lite interpreter refused a model's bytecode version."""

    min_version: int
    max_version: int
    model_version: int


def parse_bytecode_rejection(text: str) -> BytecodeRejected | None:
    """The range the phone's PyTorch reads and the model's version, when its loader said so; else None."""
    m = _BYTECODE_RANGE.search(text)
    return BytecodeRejected(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


# ---- onnxruntime_perf_test ------------------------------------------------------------------
_ORT_AVG = re.compile(r"Average inference time cost(?: total)?:\s*" + _NUM + r"\s*ms")
_ORT_LAT = re.compile(r"^(Min|Max|P50|P90|P95|P99|P999) Latency(?::| is)\s*" + _NUM + r"\s*(?:s|sec)\s*$", re.M)
_ORT_REQ = re.compile(r"Total inference requests:\s*(\d+)")
_ORT_TOTAL = re.compile(r"Total inference time cost:\s*" + _NUM + r"\s*s")
_ORT_FIRST = re.compile(r"First inference time cost:\s*" + _NUM + r"\s*ms")
_ORT_SESSION = re.compile(r"Session creation time cost:\s*" + _NUM + r"\s*s")
_ORT_RUNS = re.compile(r"^Runs:\s*(\d+)", re.M)
_ORT_ROW = re.compile(r"^(.*),\s*" + _NUM + r",\s*(\d+),\s*(-?\d+),\s*(\d+)$")


@dataclass(frozen=True)
class OrtBenchOutput:
    mean_ms: float
    requests: int | None = None
    total_s: float | None = None
    first_ms: float | None = None
    session_s: float | None = None
    percentiles_ms: dict[str, float] = field(default_factory=dict)  # min, max, p50, p90, ...


def _percentiles_ms(text: str) -> dict[str, float]:
    return {name.lower(): float(v) * 1000.0 for name, v in _ORT_LAT.findall(text)}


def parse_onnxruntime_perf_test(text: str) -> OrtBenchOutput:
    """Mean latency (ms), request count and percentiles (ms) from ``onnxruntime_perf_test``'s output."""
    m = _ORT_AVG.search(text)
    if not m:
        raise ParseError(f"no 'Average inference time cost' in output: {text[-300:]!r}")

    def opt(rx: re.Pattern[str], cast=float):
        mm = rx.search(text)
        return cast(mm.group(1)) if mm else None

    requests = opt(_ORT_REQ, int)
    if requests is None:
        requests = opt(_ORT_RUNS, int)
    return OrtBenchOutput(
        mean_ms=float(m.group(1)),
        requests=requests,
        total_s=opt(_ORT_TOTAL),
        first_ms=opt(_ORT_FIRST),
        session_s=opt(_ORT_SESSION),
        percentiles_ms=_percentiles_ms(text),
    )


@dataclass
class OrtResultRun:
    """One invocation's part of a result file."""

    model: str  # first column: the model's parent folder name
    samples_ms: list[float] = field(default_factory=list)  # per timed run, in run order
    percentiles_ms: dict[str, float] = field(default_factory=dict)  # the ``-s`` lines after the rows


def parse_ort_result_file(text: str) -> list[OrtResultRun]:
    """An ``onnxruntime_perf_test`` result file: one ``OrtResultRun`` per invocation that appended to it.

    Each invocation starts again at run index 0; the ``-s`` stats lines belong to the rows before
    them. Empty lines (the one ``-s`` writes before its stats) and anything else are skipped.
    """
    runs: list[OrtResultRun] = []
    for raw in text.splitlines():
        line = raw.strip()
        row = _ORT_ROW.match(line)
        if row is not None:
            model, seconds, index = row.group(1), float(row.group(2)), int(row.group(5))
            if index == 0 or not runs or runs[-1].percentiles_ms:
                runs.append(OrtResultRun(model))
            runs[-1].samples_ms.append(seconds * 1000.0)
            continue
        stats = _percentiles_ms(line)
        if stats and runs:
            runs[-1].percentiles_ms.update(stats)
    return runs


def parse_ort_result_csv(text: str) -> list[list[float]]:
    """Per-run latencies (ms) of an ``onnxruntime_perf_test`` result file, one list per invocation."""
    return [run.samples_ms for run in parse_ort_result_file(text)]


# ---- executor_runner ------------------------------------------------------------------------
# The posix PAL's log line (runtime/platform/default/posix.cpp et_pal_emit_log_message).
_ET_LINE = re.compile(r"^([A-Z]) \d{2,}:\d{2}:\d{2}\.\d{6} executorch:([^:\]]+):(\d+)\] (.*)$")
_ET_ITERATION = re.compile(r"^Iteration (\d+) of (\d+): " + _NUM + r" ms$")
_ET_TOTAL = re.compile(r"^Model executed successfully (\d+) time\(s\) in " + _NUM + r" ms\.$")
_ET_THREADS = re.compile(r"^Resetting threadpool with num threads = (-?\d+)$")
_ET_ETDUMP = re.compile(r"^ETDump written to file '(.*)'\.$")


@dataclass(frozen=True)
class ExecutorRunnerOutput:
    samples_ms: list[float]  # one per execution, in order (warm-up ones included: the program has none of its own)
    executions: int | None  # "Model executed successfully <n> time(s)"
    total_ms: float | None  # ... "in <ms> ms.": the sum of every execution's time
    threads: int | None  # the pool size it reset to (-1 never shows: the program prints the resolved count)
    etdump: str | None  # where an event-tracer build wrote its ETDump
    errors: list[str] = field(default_factory=list)  # messages of E and F lines


def parse_executor_runner(text: str) -> ExecutorRunnerOutput:
    """Per-execution latencies (ms), the summed total and what else ``executor_runner`` logged."""
    samples: list[float] = []
    executions = total = threads = etdump = None
    errors: list[str] = []
    for raw in text.splitlines():
        line = _ET_LINE.match(raw.strip())
        if line is None:
            continue
        level, message = line.group(1), line.group(4)
        if level in ("E", "F"):
            errors.append(message)
        elif (m := _ET_ITERATION.match(message)) is not None:
            samples.append(float(m.group(3)))
        elif (m := _ET_TOTAL.match(message)) is not None:
            executions, total = int(m.group(1)), float(m.group(2))
        elif (m := _ET_THREADS.match(message)) is not None:
            threads = int(m.group(1))
        elif (m := _ET_ETDUMP.match(message)) is not None:
            etdump = m.group(1)
    if not samples and total is None:
        raise ParseError(f"no 'Iteration i of n' and no 'Model executed successfully' in output: {text[-300:]!r}")
    return ExecutorRunnerOutput(samples, executions, total, threads, etdump, errors)


# ---- device facts ---------------------------------------------------------------------------
_PROP = re.compile(r"^\[([^\]]+)\]:\s*\[(.*)\]\s*$")


def parse_getprop(text: str) -> dict[str, str]:
    """``[key]: [value]`` lines of ``getprop`` (a rare multi-line value is skipped)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        m = _PROP.match(line)
        if m:
            props[m.group(1)] = m.group(2)
    return props


@dataclass(frozen=True)
class ThermalState:
    status: int | None  # Android thermal status 0 (none) .. 6 (shutdown); None if unknown
    temperatures_c: dict[str, float]

    @property
    def max_temp_c(self) -> float | None:
        return max(self.temperatures_c.values()) if self.temperatures_c else None


_THERMAL_STATUS = re.compile(r"Thermal Status:\s*(\d+)")
_TEMPERATURE = re.compile(r"Temperature\{mValue=([-0-9.eE+]+),\s*mType=(-?\d+),\s*mName=([^,}]+)")


def parse_thermalservice(text: str) -> ThermalState:
    """Status and current HAL temperatures (falling back to cached ones) of ``dumpsys thermalservice``."""
    m = _THERMAL_STATUS.search(text)
    status = int(m.group(1)) if m else None
    section = text
    if "Current temperatures from HAL:" in text:
        section = text.split("Current temperatures from HAL:", 1)[1]
    temps: dict[str, float] = {}
    for value, _kind, name in _TEMPERATURE.findall(section):
        try:
            v = float(value)
        except ValueError:
            continue
        if v == v and -50.0 < v < 200.0:  # drop NaN and sensors reporting garbage
            temps[name.strip()] = v
    return ThermalState(status, temps)


_ZONE = re.compile(r"thermal_zone(\d+)/(type|temp):(.*)$")


def parse_thermal_zones(text: str) -> dict[str, float]:
    """``grep -H . .../thermal_zone*/type .../temp`` → {zone type: °C} (millidegrees or degrees)."""
    types: dict[int, str] = {}
    temps: dict[int, float] = {}
    for line in text.splitlines():
        m = _ZONE.search(line.strip())
        if not m:
            continue
        idx, what, value = int(m.group(1)), m.group(2), m.group(3).strip()
        if what == "type":
            types[idx] = value
        else:
            try:
                raw = float(value)
            except ValueError:
                continue
            temps[idx] = raw / 1000.0 if abs(raw) >= 200 else raw
    out: dict[str, float] = {}
    for idx, t in sorted(temps.items()):
        if -50.0 < t < 200.0:
            name = types.get(idx, f"thermal_zone{idx}")
            out[name if name not in out else f"{name}#{idx}"] = t
    return out


_CPUFILE = re.compile(r"cpu(\d+)/cpufreq/(\w+):(.*)$")


def parse_cpu_files(text: str) -> dict[int, dict[str, str]]:
    """``grep -H . .../cpu*/cpufreq/<file>`` → {cpu index: {file: value}}."""
    cpus: dict[int, dict[str, str]] = {}
    for line in text.splitlines():
        m = _CPUFILE.search(line.strip())
        if m:
            cpus.setdefault(int(m.group(1)), {})[m.group(2)] = m.group(3).strip()
    return cpus


def split_sections(text: str, marker: str) -> dict[str, str]:
    """Split output at ``<marker> <name>`` lines into {name: text}."""
    sections: dict[str, str] = {}
    name: str | None = None
    buf: list[str] = []
    for line in text.splitlines():
        if line.startswith(marker):
            if name is not None:
                sections[name] = "\n".join(buf)
            name, buf = line[len(marker) :].strip(), []
        elif name is not None:
            buf.append(line)
    if name is not None:
        sections[name] = "\n".join(buf)
    return sections
