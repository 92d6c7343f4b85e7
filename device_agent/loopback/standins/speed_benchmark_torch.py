"""Stand-in for PyTorch's ``binaries/speed_benchmark_torch``: the same c10 flags, the same output.

Follows pytorch/pytorch ``binaries/speed_benchmark_torch.cc`` (at 0c678301357ded1cde76167cbab8b71866aea98e):
inputs are ``torch.ones(--input_dims)``; ``--warmup`` (default 0) untimed runs, ``--iter`` (default 10)
timed runs measured in whole microseconds; with ``--report_pep`` one ``PyTorchObserver`` line per
iteration, printed after the loop; then ``Main run finished. Microseconds per iter: <x>. Iters per second:
<y>``. Its flags are c10 flags, parsed without gflags on Android (``c10/util/flags_use_no_gflags.cpp`` at
0b6f61b96286d22bb01e15c96167ab36fd1a1642, ``ParseCommandLineFlags``): ``--name=value`` or ``--name value``
(a bool flag too takes the next argument as its value), arguments not starting with ``--`` are ignored, and
the first unknown flag or bad value stops the parse; the messages gathered so far go to stderr and
``main`` prints ``Failed to parse command line flags!`` (stderr) and returns 1.

Build knob (see ``device_agent/loopback/standins/__init__.py``): ``HWNAS_STANDIN_WITHOUT="--pthreadpool_size"``
plays a build that predates those flags (they are not registered, so c10 rejects them).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from device_agent.loopback.standins import build_knobs, fmt_g, strtol

FLAGS: dict[str, Any] = {
    "model": "",
    "input_dims": "",
    "input_type": "",
    "input_memory_format": "contiguous_format",
    "no_inputs": False,
    "use_caching_allocator": False,
    "use_bundled_input": -1,
    "print_output": False,
    "warmup": 0,
    "iter": 10,
    "report_pep": False,
    "pytext_len": 0,
    "vulkan": False,
    # C10 flags of the thread pool, linked into the program and parsed with its own flags
    # (pytorch caffe2/utils/threadpool/ThreadPool.cc): mobile PyTorch sizes its pthreadpool from
    # these, not from OMP_NUM_THREADS.
    "pthreadpool_size": 0,
    "caffe2_threadpool_force_inline": False,
    "caffe2_threadpool_android_cap": 1,
    "caffe2_threadpool_ios_cap": 1,
}


def pool_threads(flags: dict[str, Any], cpus: int, android: bool = True) -> int:
    """The pthreadpool size the program runs with (``caffe2::getDefaultNumThreads``).

    ``--pthreadpool_size`` wins; otherwise every CPU, capped on Android (8 → 4, 6 → 2, ...: one
    thread per big core). ``--caffe2_threadpool_force_inline`` runs everything on the calling thread.
    """
    if flags["caffe2_threadpool_force_inline"]:
        return 1
    if flags["pthreadpool_size"] > 0:
        return int(flags["pthreadpool_size"])
    n = cpus
    if android and flags["caffe2_threadpool_android_cap"]:
        n = {5: 4, 6: 2, 8: 4, 10: 4}.get(n, n // 2 if n > 4 else n)
    return max(1, n)


class FlagError(ValueError):
    """``ParseCommandLineFlags`` returned false; ``str()`` is what it printed on stderr."""


# c10/util/flags_use_no_gflags.cpp: what C10FlagParser::Parse<bool> accepts.
_FALSE = ("false", "False", "FALSE", "0")
_TRUE = ("true", "True", "TRUE", "1")


def parse_flags(argv: list[str], without: tuple[str, ...] = ()) -> dict[str, Any]:
    """``c10::ParseCommandLineFlags`` (no gflags): ``--flag=value`` or ``--flag value``, whatever the type.

    ``without``: flags (``--name``) the build predates, so unknown to it. Raises ``FlagError`` with the text the
    parser prints on stderr when it fails.
    """
    known = {k: v for k, v in FLAGS.items() if f"--{k}" not in without}
    flags = dict(known)
    stream = ["Parsing commandline arguments for c10.\n"]
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            stream.append(
                f"C10 flag: commandline argument does not match --name=var or --name format: {arg}. Ignoring this argument.\n"
            )
            i += 1
            continue
        if "=" not in arg:  # the value is the next argument, even for a bool flag
            key = arg[2:]
            i += 1
            if i == len(argv):
                stream.append(f"C10 flag: reached the last commandline argument, but I am expecting a value for {arg}")
                raise FlagError("".join(stream))
            value = argv[i]
        else:
            key, _, value = arg[2:].partition("=")
        i += 1
        if key not in known:
            stream.append(f"C10 flag: unrecognized commandline argument: {arg}\n")
            raise FlagError("".join(stream))
        default = known[key]
        if isinstance(default, bool):
            if value not in _FALSE + _TRUE:
                stream.append(
                    f"C10 flag error: Cannot convert argument to bool: {value}\n"
                    "Note that if you are passing in a bool flag, you need to explicitly specify it, like "
                    "--arg=True or --arg True. Otherwise, the next argument may be inadvertently used as "
                    "the argument, causing the above error.\n"
                )
                stream.append(f"C10 flag: illegal argument: {arg}\n")
                raise FlagError("".join(stream))
            flags[key] = value in _TRUE
        elif isinstance(default, int):
            flags[key] = strtol(value)  # std::atoi: never fails
        else:
            flags[key] = value
    return flags


def _dims(text: str) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in part.split(",") if d.strip()) for part in text.split(";") if part.strip()]


def main(
    argv: list[str] | None = None,
    out: TextIO | None = None,
    cwd: str | None = None,
    err: TextIO | None = None,
    prog: str = "speed_benchmark_torch",
) -> int:
    """Run like the binary (loads the model every call); return its exit code.

    ``out``/``err`` are its stdout and stderr; given only ``out``, both go there, as ``2>&1`` shows them.
    """
    if out is None:
        out, err = sys.stdout, err or sys.stderr
    err = err or out
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        flags = parse_flags(argv, build_knobs().without)
    except FlagError as exc:
        out.flush()
        err.write(f"{exc}Failed to parse command line flags!\n")  # std::cerr << GlobalInitStream().str(); main's line
        err.flush()
        return 1
    if not flags["model"]:
        err.write("terminate called after throwing an instance of 'c10::Error'\n  what():  Model file is not specified\n")
        return 134
    if flags["input_type"] not in ("", "float"):
        err.write(
            f"terminate called after throwing an instance of 'c10::Error'\n  what():  Unsupported input type: {flags['input_type']}\n"
        )
        return 134
    dims = _dims(flags["input_dims"])
    if not dims and not flags["no_inputs"]:
        err.write("terminate called after throwing an instance of 'c10::Error'\n  what():  Input dims must be specified.\n")
        return 134
    path = Path(flags["model"])
    if cwd and not path.is_absolute():
        path = Path(cwd) / path
    try:
        from device_agent.runtimes.engines import TorchEngine

        # OMP_NUM_THREADS is not read: the program's pool follows its own flags (pool_threads).
        engine = TorchEngine(path, pool_threads(flags, os.cpu_count() or 1), dims[0] if dims else None)
    except Exception as exc:  # noqa: BLE001 - report like the binary, not with a traceback
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        err.write(f"terminate called after throwing an instance of 'c10::Error'\n  what():  {msg}\n")
        return 134
    out.write("Starting benchmark.\nRunning warmup runs.\n")
    engine.burst(flags["warmup"], 0)
    out.write("Main runs.\n")
    iters = max(0, flags["iter"])
    start = time.perf_counter()
    samples = engine.burst(0, iters)
    total_us = (time.perf_counter() - start) * 1e6
    if flags["report_pep"]:
        for ms in samples:
            micros = float(int(ms * 1000.0))  # duration_cast<microseconds> truncates
            out.write(
                "PyTorchObserver " + json.dumps({"type": "NET", "unit": "us", "metric": "latency", "value": fmt_g(micros)}) + "\n"
            )
    if iters:
        out.write(
            f"Main run finished. Microseconds per iter: {fmt_g(total_us / iters)}. "
            f"Iters per second: {fmt_g(1e6 * iters / total_us)}\n"
        )
    return 0


if __name__ == "__main__":
    # The launcher passes its $0: the name the program was started by, which getopt/c10 messages carry.
    sys.exit(main(prog=os.environ.get("HWNAS_STANDIN_ARGV0") or Path(sys.argv[0]).stem))
