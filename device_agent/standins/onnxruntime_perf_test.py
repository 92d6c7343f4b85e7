"""Stand-in for ONNX Runtime's ``onnxruntime_perf_test``: same getopt flags, same summary.

Kept: ``-m duration|times`` (default duration), ``-r`` repeats (sets times), ``-t`` seconds
(sets duration, default 600), ``-e cpu``, ``-x``/``-y`` threads, ``-I`` generated inputs (free
dims 1), ``-s`` statistics (on by default without a result file), ``-Z``/``-D`` spinning,
``-o`` optimisation level; exactly one untimed warm-up run; percentiles as
``sorted[int(n*q)]`` in seconds; a result file gets ``model,time_s,peak_ws,cpu,run_index``
rows appended. Accepted and ignored: ``-A -M -P -v -p -T -S -c -f -F -C -i``.
"""

from __future__ import annotations

import getopt
import os
import resource
import sys
import time
from pathlib import Path
from typing import TextIO

from device_agent.standins import fmt_g

_SHORT = "m:e:r:t:p:x:y:c:d:o:u:i:f:F:S:T:C:AMPIDZvhsqznlR:X:E:"
USAGE = "usage: onnxruntime_perf_test [options...] model_path [result_file]\n"


def main(argv: list[str] | None = None, out: TextIO | None = None, cwd: str | None = None) -> int:
    """Run like the binary (a fresh session, one warm-up run); return its exit code."""
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, args = getopt.gnu_getopt(argv, _SHORT)
    except getopt.GetoptError as exc:
        out.write(f"{exc}\n{USAGE}")
        return 255
    mode, repeats, seconds = "duration", 1000, 600.0
    threads, stats, spin, opt_level = 0, False, True, 99
    for flag, value in opts:
        try:
            if flag == "-m":
                if value not in ("duration", "times"):
                    out.write(f"unknown mode {value}\n{USAGE}")
                    return 255
                mode = value
            elif flag == "-r":
                repeats, mode = int(value), "times"
            elif flag == "-t":
                seconds, mode = float(value), "duration"
            elif flag == "-e" and value != "cpu":
                out.write(f"{value} execution provider is not available in this stand-in (only cpu)\n")
                return 255
            elif flag == "-x":
                threads = int(value)
                out.write(f"Setting intra_op_num_threads to {threads}\n")
            elif flag == "-o":
                opt_level = int(value)
            elif flag == "-s":
                stats = True
            elif flag in ("-Z", "-D"):
                spin = False
                if flag == "-Z":
                    out.write("Disabling intra-op thread spinning between runs\n")
            elif flag == "-h":
                out.write(USAGE)
                return 0
        except ValueError:
            out.write(f"invalid value for {flag}: {value}\n{USAGE}")
            return 255
    if not args or len(args) > 2:
        out.write(USAGE)
        return 255
    model = Path(args[0])
    result_file = Path(args[1]) if len(args) == 2 else None
    if cwd:
        model = model if model.is_absolute() else Path(cwd) / model
        if result_file is not None and not result_file.is_absolute():
            result_file = Path(cwd) / result_file
    if result_file is None:
        stats = True
    import onnxruntime  # noqa: F401 - imported before the clock starts, as the binary is linked

    from device_agent.runtimes.engines import OrtEngine

    t0 = time.perf_counter()
    try:
        # A new session every call, outputs allocated by the session on every run: what the
        # program does. No cache across calls: each call is a new process on a phone.
        engine = OrtEngine(model, threads=threads or (os.cpu_count() or 1), spin=spin, opt_level=opt_level,
                           prebind_outputs=False)
    except Exception as exc:  # noqa: BLE001 - report like the binary
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        out.write(f"{first}\n")
        return 255
    session_s = time.perf_counter() - t0
    first_start = time.perf_counter()
    engine.run_once()  # the one warm-up run
    first_ms = int((time.perf_counter() - first_start) * 1000)
    costs: list[float] = []
    wall_start = time.perf_counter()
    if mode == "times":
        costs = [ms / 1000.0 for ms in engine.burst(0, max(0, repeats))]
    else:
        while time.perf_counter() - wall_start < seconds:
            costs.extend(ms / 1000.0 for ms in engine.burst(0, 1))
    wall = time.perf_counter() - wall_start
    n = len(costs)
    total = sum(costs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.write(f"Session creation time cost: {fmt_g(session_s)} s\n")
    out.write(f"First inference time cost: {first_ms} ms\n")
    out.write(f"Total inference time cost: {fmt_g(total)} s\n")
    out.write(f"Total inference requests: {n}\n")
    out.write(f"Average inference time cost: {fmt_g(total / n * 1000 if n else 0.0)} ms\n")
    out.write(f"Total inference run time: {fmt_g(wall)} s\n")
    out.write(f"Number of inferences per second: {fmt_g(n / wall if wall > 0 else 0.0)}\n")
    out.write("Avg CPU usage: 100 %\n")
    out.write(f"Peak working set size: {peak} bytes\n")
    if result_file is not None:
        # The model column is the model's folder name, as the program writes it (it names a
        # test-data folder there).
        model_column = Path(args[0]).parent.name
        with open(result_file, "a") as fh:
            for i, c in enumerate(costs):
                fh.write(f"{model_column},{fmt_g(c)},{peak},100,{i}\n")
            if stats and n:
                # PerformanceResult::DumpToFile with -s: an empty line, then seven statistics lines, in the file too.
                ordered = sorted(costs)
                fh.write("\n")
                fh.write(f"Min Latency is {fmt_g(ordered[0])}sec\n")
                fh.write(f"Max Latency is {fmt_g(ordered[-1])}sec\n")
                for name, q in (("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99), ("P999", 0.999)):
                    fh.write(f"{name} Latency is {fmt_g(ordered[int(n * q)])}sec\n")
    if stats and n:
        ordered = sorted(costs)
        out.write(f"Min Latency: {fmt_g(ordered[0])} s\n")
        out.write(f"Max Latency: {fmt_g(ordered[-1])} s\n")
        for name, q in (("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99), ("P999", 0.999)):
            out.write(f"{name} Latency: {fmt_g(ordered[min(n - 1, int(n * q))])} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
