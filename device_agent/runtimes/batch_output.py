"""Reading a batch script's output (runtimes/binary.py writes the script): each burst's samples, exit code and errors,
and the sysfs thermal zones read before and after. Pure: text in, results out."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from device_agent import faults, parsers
from device_agent.parsers import ThermalState
from device_agent.protocol import regroup
from device_agent.runtimes.base import Burst, BurstResult

# What onnxruntime_perf_test prints on stderr when it cannot open its result file (performance_runner.cc
# PerformanceResult::DumpToFile); it then prints the statistics on stdout and exits 0.
RESULT_FILE_UNOPENABLE = "failed to open result file"
# A build without logging (EXECUTORCH_ENABLE_LOGGING is off in Release builds unless a preset turns it on) runs
# silently: every key would fail alike, so faults.SETUP names the build that fixes it.
NO_ET_LOG = faults.ET_NO_LOG


def parse_batch_output(text: str, marker: str, bursts: Sequence[Burst], runtime: str) -> list[BurstResult]:
    """Turn a batch script's output into one ``BurstResult`` per finished burst (pure)."""
    begin = re.compile(re.escape(marker) + r" b (\d+)$")
    reduced_at = re.compile(re.escape(marker) + r" s (\d+)$")
    end = re.compile(re.escape(marker) + r" e (\d+) (\d+)$")
    bodies: dict[int, list[str]] = {}
    reduced: dict[int, list[str]] = {}
    codes: dict[int, int] = {}
    csv_lines: list[str] = []
    current: list[str] | None = None
    in_csv = False
    for line in text.splitlines():
        s = line.rstrip("\r")
        if s.startswith(marker):
            in_csv, current = False, None
            if (m := begin.match(s)) is not None:
                current = bodies[int(m.group(1))] = []
            elif (m := reduced_at.match(s)) is not None:
                current = reduced[int(m.group(1))] = []
            elif (m := end.match(s)) is not None:
                codes[int(m.group(1))] = int(m.group(2))
            elif s == f"{marker} csv":
                in_csv = True
            continue
        if in_csv:
            csv_lines.append(s)
        elif current is not None:
            current.append(s)
    per_burst_csv: dict[int, list[str]] = {}
    for line in csv_lines:
        m = re.match(r"^(?:.*/)?res/(\d+)\.csv:(.*)$", line)
        if m:
            per_burst_csv.setdefault(int(m.group(1)), []).append(m.group(2))
    results: list[BurstResult] = []
    for i, burst in enumerate(bursts):
        if i not in codes:
            break  # the run ended here (stopped, or the device went away)
        body = "\n".join(bodies.get(i, []))
        if codes[i] != 0:
            results.append(BurstResult(burst, error=f"{runtime} benchmark exited {codes[i]}: {error_text(body)}"))
            continue
        note = None
        if runtime == "onnxruntime" and RESULT_FILE_UNOPENABLE in body:
            # The program wrote no per-run rows; its stdout has the statistics of the burst: one mean per burst.
            line = next(x.strip() for x in body.splitlines() if RESULT_FILE_UNOPENABLE in x)
            note = f"{line} (one sample per burst: the mean the program printed)"
        try:
            if i in reduced:
                samples, wall_ms, zeros = reduced_samples(runtime, body, reduced[i], burst)
            else:
                samples, wall_ms, zeros = _samples(runtime, body, per_burst_csv.get(i, []), burst)
        except parsers.ParseError as exc:
            results.append(BurstResult(burst, error=str(exc)))
            continue
        results.append(BurstResult(burst, samples, wall_ms=wall_ms, zero_runs=zeros, note=note))
    return results


def error_text(body: str) -> str:
    """A failed burst's output for its error: the lines that name a fault class (faults.salient_lines) wherever
    they are, then the last lines."""
    tail = _tail(body)
    first = [line for line in faults.salient_lines(body) if line not in tail]
    return " | ".join([*first, tail]) if first else tail


def parse_batch_thermal(text: str, marker: str) -> dict[str, ThermalState]:
    """The sysfs thermal readings of a batch script's output, by section (``t0`` before, ``t1`` after)."""
    sections = parsers.split_sections(text, marker)
    out = {}
    for name in ("t0", "t1"):
        zones = parsers.parse_thermal_zones(sections.get(name, ""))
        if zones:
            out[name] = ThermalState(None, zones)
    return out


def truncation_ms(precise_mean_ms: float | None, whole_us_total_ms: float, runs: int) -> float:
    """What ``duration_cast<microseconds>`` cut off each run, on average: the precise mean minus the
    mean of the whole-µs values; 0 unless it is a truncation (0 to 1 µs)."""
    if precise_mean_ms is None or runs <= 0:
        return 0.0
    lost = precise_mean_ms - whole_us_total_ms / runs
    return lost if 0.0 <= lost <= 0.001 + 1e-9 else 0.0


def per_run_ms(runtime: str, body: str, csv_rows: Iterable[str], iters: int) -> list[float]:
    """Each timed run's latency (ms) as precisely as the program gives it.

    ``speed_benchmark_torch`` prints every run in whole microseconds (truncated) but their mean
    with sub-microsecond resolution (``Microseconds per iter``, from a nanosecond timer): the
    per-run values get the truncation back as one offset, so they sum to the precise total.
    """
    if runtime == "executorch":
        # One line per execution, warm-up ones first; %f milliseconds (nanosecond ticks): nothing to give back.
        try:
            runs = parsers.parse_executor_runner(body).samples_ms
        except parsers.ParseError:
            runs = []
        if not runs and iters:
            raise parsers.ParseError(f"{NO_ET_LOG}: {_tail(body)}")
        return runs[-iters:] if iters else []
    if runtime == "torchscript":
        out = parsers.parse_speed_benchmark_torch(body)
        runs = out.samples_ms[-iters:]
        if runs:
            lost = truncation_ms(out.mean_ms, sum(runs), len(runs))
            runs = [r + lost for r in runs]
        return runs or ([out.mean_ms] if out.mean_ms is not None else [])
    summary = parsers.parse_onnxruntime_perf_test(body)
    rows = parsers.parse_ort_result_csv("\n".join(csv_rows))
    if rows and rows[-1]:
        per_run = rows[-1]
        return per_run[len(per_run) - iters :] if len(per_run) > iters else per_run
    # No per-run file (an old binary): the burst mean is all we know.
    return [summary.mean_ms]


def reduced_samples(runtime: str, body: str, lines: Sequence[str], burst: Burst) -> tuple[list[float], float, int]:
    """Samples, timed wall time (ms) and runs of 0 ms from a burst's device-side reduction (``S``/``T`` lines,
    see ``BinaryRunner._burst_line``).

    For ``speed_benchmark_torch`` the whole-µs truncation is given back from its precise mean,
    as in ``per_run_ms``.
    """
    samples: list[float] = []
    runs, total, zeros = 0, 0.0, 0
    for line in lines:
        tag, _, rest = line.strip().partition(" ")
        try:
            if tag == "S":
                samples.append(float(rest))
            elif tag == "T":
                n, t, *z = rest.split()
                runs, total, zeros = int(n), float(t), int(z[0]) if z else 0
        except ValueError:
            continue
    if not runs and runtime == "executorch":
        raise parsers.ParseError(f"{NO_ET_LOG}: {_tail(body)}")
    if not runs:
        raise parsers.ParseError(f"no timed runs in the program's output: {_tail(body)}")
    if runtime == "torchscript":
        lost = truncation_ms(parsers.parse_speed_benchmark_torch(body).mean_ms, total, runs)
        samples = [x + lost for x in samples]
        total += lost * runs
    if not samples:  # fewer runs than a sample: their mean
        samples = [total / runs]
    return samples, total, zeros


def _samples(runtime: str, body: str, csv_rows: Iterable[str], burst: Burst) -> tuple[list[float], float, int]:
    """The burst's samples (means of K runs), the wall time of its timed runs (ms) and its runs of 0 ms read
    from the result file."""
    rows = list(csv_rows)
    runs = per_run_ms(runtime, body, rows, burst.iters)
    zeros = sum(1 for r in runs if r == 0.0) if runtime == "onnxruntime" and rows else 0
    return regroup(runs, burst.sample_runs), sum(runs), zeros


def _tail(text: str, n: int = 300) -> str:
    text = " | ".join(line for line in text.strip().splitlines()[-4:])
    return text[-n:] if text else "no output"


__all__ = ["error_text", "parse_batch_output", "parse_batch_thermal", "per_run_ms", "reduced_samples", "truncation_ms"]
