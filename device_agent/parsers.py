"""Pure parsers of what the device prints: one function per program, tested on captured output.

* ``speed_benchmark_torch`` (pytorch binaries/speed_benchmark_torch.cc): per-iteration
  ``PyTorchObserver {"type": "NET", "unit": "us", "metric": "latency", "value": "<t>"}`` lines
  (value a quoted float string, 6 significant digits, e.g. ``"1.23457e+06"``) and a final
  ``Main run finished. Microseconds per iter: <x>. Iters per second: <y>``.
* ``onnxruntime_perf_test`` (onnxruntime/test/perftest): ``Average inference time cost: <ms> ms``
  (newer builds: ``... cost total: ...``), ``Min/Max/P50/P90/P95/P99/P999 Latency: <s> s`` in
  seconds, and, with a result file, CSV rows ``model,time_cost_s,peak_ws,avg_cpu,run_index``.
* ``getprop``, ``dumpsys thermalservice``, ``grep -H`` of sysfs files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# ---- speed_benchmark_torch ------------------------------------------------------------------
_NUM = r"(-?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"
_OBSERVER = re.compile(r"PyTorchObserver\s*(\{.*\})")
_TORCH_SUMMARY = re.compile(r"Microseconds per iter:\s*" + _NUM + r"\.?\s+Iters per second:\s*" + _NUM)


class ParseError(ValueError):
    """Output that does not look like the program's; carries a short excerpt."""


@dataclass(frozen=True)
class TorchBenchOutput:
    samples_ms: list[float]  # one per measured iteration (empty without --report_pep)
    mean_ms: float | None  # from "Microseconds per iter"


def _to_ms(value: float, unit: str) -> float:
    unit = unit.lower()
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3, "ns": 1e-6}.get(unit)
    if scale is None:
        raise ParseError(f"unknown time unit {unit!r}")
    return value * scale


def _observer_latency(row: dict) -> float | None:
    """Latency in ms of one observer row, new format or old ``{"NET": {"latency": ...}}``."""
    if "value" in row and str(row.get("metric", "latency")) == "latency" and row.get("type", "NET") == "NET":
        return _to_ms(float(row["value"]), str(row.get("unit", "us")))
    net = row.get("NET")
    if isinstance(net, dict):
        lat = net.get("latency", net)
        if isinstance(lat, dict) and "value" in lat:
            return _to_ms(float(lat["value"]), str(lat.get("unit", "us")))
    return None


def parse_speed_benchmark_torch(text: str) -> TorchBenchOutput:
    """Per-iteration latencies (ms) and the mean from ``speed_benchmark_torch`` output."""
    samples: list[float] = []
    for m in _OBSERVER.finditer(text):
        try:
            row = json.loads(m.group(1))
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            value = _observer_latency(row)
            if value is not None:
                samples.append(value)
    mean = None
    m = _TORCH_SUMMARY.search(text)
    if m:
        mean = float(m.group(1)) / 1000.0
    if not samples and mean is None:
        raise ParseError(f"no PyTorchObserver lines and no 'Microseconds per iter' in output: {text[-300:]!r}")
    return TorchBenchOutput(samples, mean)


# ---- onnxruntime_perf_test ------------------------------------------------------------------
_ORT_AVG = re.compile(r"Average inference time cost(?: total)?:\s*" + _NUM + r"\s*ms")
_ORT_LAT = re.compile(r"(Min|Max|P50|P90|P95|P99|P999) Latency:\s*" + _NUM + r"\s*s\b")
_ORT_REQ = re.compile(r"Total inference requests:\s*(\d+)")
_ORT_TOTAL = re.compile(r"Total inference time cost:\s*" + _NUM + r"\s*s")
_ORT_FIRST = re.compile(r"First inference time cost:\s*" + _NUM + r"\s*ms")
_ORT_SESSION = re.compile(r"Session creation time cost:\s*" + _NUM + r"\s*s")
_ORT_RUNS = re.compile(r"^Runs:\s*(\d+)", re.M)


@dataclass(frozen=True)
class OrtBenchOutput:
    mean_ms: float
    requests: int | None = None
    total_s: float | None = None
    first_ms: float | None = None
    session_s: float | None = None
    percentiles_ms: dict[str, float] = field(default_factory=dict)  # min, max, p50, p90, ...


def parse_onnxruntime_perf_test(text: str) -> OrtBenchOutput:
    """Mean latency (ms), request count and percentiles (ms) from ``onnxruntime_perf_test``."""
    m = _ORT_AVG.search(text)
    if not m:
        raise ParseError(f"no 'Average inference time cost' in output: {text[-300:]!r}")
    pct = {name.lower(): float(v) * 1000.0 for name, v in _ORT_LAT.findall(text)}

    def opt(rx: re.Pattern[str], cast=float):  # noqa: ANN001, ANN202
        mm = rx.search(text)
        return cast(mm.group(1)) if mm else None

    requests = opt(_ORT_REQ, int)
    if requests is None:
        requests = opt(_ORT_RUNS, int)
    return OrtBenchOutput(mean_ms=float(m.group(1)), requests=requests, total_s=opt(_ORT_TOTAL),
                          first_ms=opt(_ORT_FIRST), session_s=opt(_ORT_SESSION), percentiles_ms=pct)


def parse_ort_result_csv(text: str) -> list[list[float]]:
    """Per-run latencies (ms) of an ``onnxruntime_perf_test`` result file, one list per invocation.

    The file is appended to by every invocation; each starts again at run index 0.
    """
    runs: list[list[float]] = []
    for line in text.splitlines():
        parts = line.strip().rsplit(",", 4)
        if len(parts) != 5:
            continue
        try:
            seconds, index = float(parts[1]), int(parts[4])
        except ValueError:
            continue
        if index == 0 or not runs:
            runs.append([])
        runs[-1].append(seconds * 1000.0)
    return runs


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
            name, buf = line[len(marker):].strip(), []
        elif name is not None:
            buf.append(line)
    if name is not None:
        sections[name] = "\n".join(buf)
    return sections
