"""Stand-in for ONNX Runtime's ``onnxruntime_perf_test``: the same getopt flags, the same output.

What it prints follows microsoft/onnxruntime ``onnxruntime/test/perftest`` byte for byte:

* ``command_args_parser.cc`` at 8f117002e87abb66dc6d7340425b40c6386017e8 (``ParseArguments``): POSIX
  ``getopt`` with ``k:b:m:e:r:t:p:x:y:c:d:o:u:i:f:F:S:T:AMPIDZvhsqz``. Any error — an unknown option,
  ``-h``, a bad value, no model or more than two positional arguments — returns false; ``main.cc`` (at
  0bd42bd53f3c24a93d0621afcb3b791531d6e4c4) then prints ``ShowUsage()`` on stdout and returns -1: exit
  status 255. An unknown option or a missing argument first gets the C library's getopt message on
  stderr: Android's bionic uses OpenBSD's ``getopt_long.c`` (``<argv[0]>: unknown option -- I``).
* ``performance_runner.cc`` at 77e6dc9a376cf9764d51b7c3e518e46ac3aa0141: ``CreateModelInfo`` (a
  minimal build, ``ORT_MINIMAL_BUILD``, reads only ``.ort``: anything else throws ``<model> is not
  supported``, printed by ``main``'s catch on stderr, exit 255); exactly one untimed warm-up run;
  ``Run()``'s summary on stdout; ``PerformanceResult::DumpToFile`` appends one
  ``<model folder>,<seconds>,<peak working set>,<cpu>,<run index>`` row per timed run to the result file
  and, with ``-s`` (on by default without a result file), an empty line and seven ``<name> Latency: <s> s``
  lines to the file and to stdout. A result file that cannot be opened prints ``failed to open result file
  '<path>'. will dump stats to output.`` on stderr; the ``Avg CPU usage:``/``Peak working set size:``/
  ``Runs:`` lines and the statistics then go to stdout, and the program exits 0.
* ``ort_test_session.cc``: ``Setting intra_op_num_threads to <n>`` (``-x`` > 0) when the session is made.

Kept semantically: ``-m duration|times`` (default duration), ``-r`` repeats, ``-t`` seconds (of summed
run time, as ``RunFixDuration``), ``-e cpu``, ``-x`` threads, ``-I`` generated inputs (free dims 1),
``-Z``/``-D`` spinning, ``-o`` optimisation level. The other options are parsed and ignored.

Build knobs, for emulating the builds users have (environment variables; the loopback launcher passes
them to the zygote, see worker.py): ``HWNAS_STANDIN_WITHOUT="-I"`` — an older build whose getopt string
lacks those options; ``HWNAS_STANDIN_MINIMAL=1`` — a minimal build, which refuses ``.onnx`` models.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, Generator
from contextlib import nullcontext
from pathlib import Path
from typing import TextIO

from device_agent.loopback.standins import build_knobs, fmt_g, strtol

# command_args_parser.cc at 8f117002: the getopt string of ParseArguments.
OPTSTRING = "k:b:m:e:r:t:p:x:y:c:d:o:u:i:f:F:S:T:AMPIDZvhsqz"
# ShowUsage() at 8f117002, abridged: its first lines verbatim, then the lines of the options the agent
# and this stand-in use, then its last line (the execution-provider help in between is left out).
USAGE = (
    "perf_test [options...] model_path [result_file]\n"
    "Options:\n"
    "\t-m [test_mode]: Specifies the test mode. Value could be 'duration' or 'times'.\n"
    "\t\tProvide 'duration' to run the test for a fix duration, and 'times' to repeated for a certain times. \n"
    "\t-M: Disable memory pattern.\n"
    "\t-A: Disable memory arena\n"
    "\t-I: Generate tensor input binding (Free dimensions are treated as 1.)\n"
    "\t-c [parallel runs]: Specifies the (max) number of runs to invoke simultaneously. Default:1.\n"
    "\t-r [repeated_times]: Specifies the repeated times if running in 'times' test mode.Default:1000.\n"
    "\t-t [seconds_to_run]: Specifies the seconds to run for 'duration' mode. Default:600.\n"
    "\t-s: Show statistics result, like P75, P90. If no result_file provided this defaults to on.\n"
    "\t-x [intra_op_num_threads]: Sets the number of threads used to parallelize the execution within nodes, "
    "A value of 0 means ORT will pick a default. Must >=0.\n"
    "\t-D [Disable thread spinning]: disable spinning entirely for thread owned by onnxruntime intra-op thread pool.\n"
    "\t-Z [Force thread to stop spinning between runs]: disallow thread from spinning during runs to reduce cpu usage.\n"
    "\t-h: help\n"
)
PROVIDERS = (
    "cpu",
    "cuda",
    "dnnl",
    "openvino",
    "tensorrt",
    "qnn",
    "snpe",
    "nnapi",
    "coreml",
    "dml",
    "acl",
    "armnn",
    "rocm",
    "migraphx",
    "xnnpack",
    "vitisai",
)
# ort_test_session.cc: what a build without the provider throws, e.g. ORT_THROW("NNAPI is not supported in this build\n").
_PROVIDER_NAMES = {
    "cuda": "CUDA",
    "dnnl": "DNNL",
    "openvino": "OpenVINO",
    "tensorrt": "TensorRT",
    "qnn": "QNN",
    "snpe": "SNPE",
    "nnapi": "NNAPI",
    "coreml": "CoreML",
    "dml": "DirectML",
    "acl": "Acl",
    "armnn": "ArmNN",
    "rocm": "ROCM",
    "migraphx": "MIGraphX",
    "xnnpack": "Xnnpack",
    "vitisai": "VitisAI",
}
STAT_LINES = (("Min", None), ("Max", None), ("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99), ("P999", 0.999))


class _UsageError(Exception):
    """ParseArguments returned false."""


def _getopt(
    argv: list[str], optstring: str, prog: str, warn: Callable[[str], None]
) -> Generator[tuple[str, str | None], None, int]:
    """POSIX getopt as bionic does it (no permuting: the first operand ends the options); yields (option, value)
    and leaves the operands' index in ``argv`` as the generator's return value."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return i + 1
        if not arg.startswith("-") or arg == "-":
            return i
        j = 1
        while j < len(arg):
            c = arg[j]
            j += 1
            pos = optstring.find(c)
            if c == ":" or pos < 0:
                warn(f"{prog}: unknown option -- {c}\n")  # getopt_long.c: illoptchar
                raise _UsageError
            if optstring[pos + 1 : pos + 2] == ":":
                if j < len(arg):
                    value = arg[j:]
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    warn(f"{prog}: option requires an argument -- {c}\n")  # getopt_long.c: recargchar
                    raise _UsageError
                yield c, value
                break
            yield c, None
        i += 1
    return i


class Config:
    """The parts of PerformanceTestConfig this stand-in acts on."""

    def __init__(self) -> None:
        self.mode = "duration"
        self.repeats = 1000
        self.seconds = 600
        self.threads = 0
        self.stats = False
        self.spin = True
        self.spin_between_runs = True
        self.opt_level = 99
        self.provider = "cpu"
        self.model = ""
        self.result_file = ""


def _dimension_override(value: str) -> bool:
    """ParseDimensionOverride: ``name:value`` with an integer value > 0."""
    at = value.find(":")
    if at < 0 or at >= len(value) - 1:
        return False
    try:
        return int(value[at + 1 :].strip().split()[0]) > 0
    except (ValueError, IndexError):
        return False


def drop_options(optstring: str, letters: str) -> str:
    """The getopt string of an older build that predates the options ``letters`` (their ``:`` go too)."""
    for letter in letters:
        at = optstring.find(letter)
        if letter != ":" and at >= 0:
            end = at + 2 if optstring[at + 1 : at + 2] == ":" else at + 1
            optstring = optstring[:at] + optstring[end:]
    return optstring


def parse_arguments(argv: list[str], prog: str, warn: Callable[[str], None], without: str = "") -> Config:
    """``CommandLineParser::ParseArguments``; raises ``_UsageError`` where it returns false."""
    cfg = Config()
    options = _getopt(argv, drop_options(OPTSTRING, without), prog, warn)
    while True:
        try:
            c, value = next(options)
        except StopIteration as done:
            optind = done.value
            break
        v = value or ""
        if c in "fF":
            if not _dimension_override(v):
                raise _UsageError
        elif c == "m":
            if v not in ("duration", "times"):
                raise _UsageError
            cfg.mode = v
        elif c == "e":
            if v not in PROVIDERS:
                raise _UsageError
            cfg.provider = v
        elif c == "r":
            cfg.repeats = strtol(v) % 2**64  # a size_t: a negative count wraps, only 0 is refused
            if cfg.repeats <= 0:
                raise _UsageError
            cfg.mode = "times"
        elif c == "t":
            cfg.seconds = strtol(v) % 2**64
            if cfg.repeats <= 0:  # sic: the source checks repeated_times here
                raise _UsageError
            cfg.mode = "duration"
        elif c == "s":
            cfg.stats = True
        elif c == "x":
            cfg.threads = strtol(v)
            if cfg.threads < 0:
                raise _UsageError
        elif c == "y":
            if strtol(v) < 0:
                raise _UsageError
        elif c == "c":
            if strtol(v) % 2**64 <= 0:
                raise _UsageError
        elif c == "o":
            level = strtol(v)
            if level not in (0, 1, 2, 99) and not level > 99:
                raise _UsageError
            cfg.opt_level = min(level, 99)
        elif c == "D":
            cfg.spin = False
        elif c == "Z":
            cfg.spin_between_runs = False
        elif c == "h":
            raise _UsageError
        # k b p u i d q z S T M A P v I: accepted, nothing this stand-in acts on
    operands = argv[optind:]
    if len(operands) == 2:
        cfg.result_file = operands[1]
    elif len(operands) == 1:
        cfg.stats = True
    else:
        raise _UsageError
    cfg.model = operands[0]
    return cfg


def _stats(costs: list[float]) -> str:
    """The seven statistics lines of DumpToFile's ``output_stats`` (``sorted[int(n * q)]``, seconds)."""
    ordered = sorted(costs)
    n = len(ordered)
    lines = []
    for name, q in STAT_LINES:
        if q is None:  # Min and Max
            value = ordered[0] if name == "Min" else ordered[-1]
        else:
            value = ordered[int(n * q)]
        lines.append(f"{name} Latency: {fmt_g(value)} s\n")
    return "".join(lines)


def main(
    argv: list[str] | None = None,
    out: TextIO | None = None,
    cwd: str | None = None,
    err: TextIO | None = None,
    prog: str = "onnxruntime_perf_test",
) -> int:
    """Run like the binary (a fresh session, one warm-up run); return its exit code.

    ``out``/``err`` are its stdout and stderr; given only ``out``, both go there, as ``2>&1`` shows them.
    """
    if out is None:
        out, err = sys.stdout, err or sys.stderr
    err = err or out

    def to_err(text: str) -> None:
        out.flush()  # stdout was flushed by the std::endl before each stderr write of the program
        err.write(text)
        err.flush()

    argv = list(sys.argv[1:] if argv is None else argv)
    knobs = build_knobs()
    try:
        cfg = parse_arguments(
            argv, prog, to_err, without="".join(f[1:] for f in knobs.without if f.startswith("-") and not f.startswith("--"))
        )
    except _UsageError:
        out.write(USAGE)
        return 255
    model = Path(cfg.model)
    if cwd and not model.is_absolute():
        model = Path(cwd) / model
    result_path = Path(cfg.result_file) if cfg.result_file else None
    if cwd and result_path is not None and not result_path.is_absolute():
        result_path = Path(cwd) / result_path
    # CreateModelInfo: a full build reads .onnx and .ort, a minimal build .ort only; anything else throws.
    suffix = cfg.model.rpartition(".")[2] if "." in cfg.model else ""
    if suffix not in (("ort",) if knobs.minimal else ("onnx", "ort")):
        to_err(f"{cfg.model} is not supported\n")
        return 255
    import onnxruntime  # noqa: F401 - imported before the clock starts, as the binary is linked

    from device_agent.runtimes.engines import OrtEngine

    if cfg.provider != "cpu":
        to_err(f"{_PROVIDER_NAMES[cfg.provider]} is not supported in this build\n\n")
        return 255
    if cfg.threads > 0:
        out.write(f"Setting intra_op_num_threads to {cfg.threads}\n")
    if not cfg.spin_between_runs:
        out.write("Disabling intra-op thread spinning between runs\n")
    t0 = time.perf_counter()
    try:
        # A new session every call, outputs allocated by the session on every run: what the
        # program does. No cache across calls: each call is a new process on a phone.
        engine = OrtEngine(
            model,
            threads=cfg.threads or (os.cpu_count() or 1),
            spin=cfg.spin and cfg.spin_between_runs,
            opt_level=cfg.opt_level,
            prebind_outputs=False,
        )
    except Exception as exc:  # noqa: BLE001 - main()'s catch prints what() on stderr
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        to_err(f"{first}\n")
        return 255
    session_s = time.perf_counter() - t0
    first_start = time.perf_counter()
    engine.run_once()  # the one warm-up run
    first_ms = int((time.perf_counter() - first_start) * 1000)
    costs: list[float] = []
    wall_start = time.perf_counter()
    if cfg.mode == "times":
        costs = [ms / 1000.0 for ms in engine.burst(0, cfg.repeats)]
    else:
        total = 0.0
        while total < cfg.seconds:  # RunFixDuration: until the summed run time reaches the duration
            ms = engine.burst(0, 1)[0]
            costs.append(ms / 1000.0)
            total += ms / 1000.0
    wall = time.perf_counter() - wall_start
    n = len(costs)
    total_s = sum(costs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cpu = 100
    # PerformanceRunner::Run()
    out.write(
        f"Session creation time cost: {fmt_g(session_s)} s\n"
        f"First inference time cost: {first_ms} ms\n"
        f"Total inference time cost: {fmt_g(total_s)} s\n"
        f"Total inference requests: {n}\n"
        f"Average inference time cost: {fmt_g(total_s / n * 1000) if n else 'nan'} ms\n"
        f"Total inference run time: {fmt_g(wall)} s\n"
        f"Number of inferences per second: {fmt_g(n / wall) if wall > 0 else 'inf'} \n"
        f"Avg CPU usage: {cpu} %\n"
        f"Peak working set size: {peak} bytes\n"
    )
    out.flush()  # std::endl
    # PerformanceResult::DumpToFile(result_file, f_dump_statistics)
    stats = cfg.stats
    fh = None
    if result_path is not None:
        try:
            fh = open(result_path, "a")
        except OSError:
            to_err(f"failed to open result file '{cfg.result_file}'. will dump stats to output.\n")
            stats = True
    with fh if fh is not None else nullcontext():
        if fh is not None:
            # The model column is the model's folder name, as the program writes it (it names a
            # test-data folder there).
            name = Path(cfg.model).parent.name
            name = "" if name == "test_" else name
            fh.write("".join(f"{name},{fmt_g(c)},{peak},{cpu},{i}\n" for i, c in enumerate(costs)))
        else:
            out.write(f"Avg CPU usage:{cpu}\nPeak working set size:{peak}\nRuns:{n}\n")
        if costs and stats:
            if fh is not None:
                fh.write("\n" + _stats(costs))
            out.write(_stats(costs))
    return 0


if __name__ == "__main__":
    # The launcher passes its $0: the name the program was started by, which getopt/c10 messages carry.
    sys.exit(main(prog=os.environ.get("HWNAS_STANDIN_ARGV0") or Path(sys.argv[0]).stem))
