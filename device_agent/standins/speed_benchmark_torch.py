"""Stand-in for PyTorch's ``binaries/speed_benchmark_torch``: same gflags, same stdout.

Semantics kept: inputs are ``torch.ones(--input_dims)``; ``--warmup`` (default 0) untimed
runs, ``--iter`` (default 10) timed runs measured in whole microseconds; with
``--report_pep`` one ``PyTorchObserver`` line per iteration, printed after the loop; then
``Main run finished. Microseconds per iter: <x>. Iters per second: <y>``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from device_agent.standins import fmt_g

FLAGS: dict[str, Any] = {
    "model": "", "input_dims": "", "input_type": "", "input_memory_format": "contiguous_format",
    "no_inputs": False, "use_caching_allocator": False, "use_bundled_input": -1, "print_output": False,
    "warmup": 0, "iter": 10, "report_pep": False, "pytext_len": 0, "vulkan": False,
    # C10 flags of the thread pool, linked into the program and parsed with its own flags
    # (pytorch caffe2/utils/threadpool/ThreadPool.cc): mobile PyTorch sizes its pthreadpool from
    # these, not from OMP_NUM_THREADS.
    "pthreadpool_size": 0, "caffe2_threadpool_force_inline": False, "caffe2_threadpool_android_cap": 1,
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
    pass


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "t", "yes", "y"):
        return True
    if low in ("0", "false", "f", "no", "n"):
        return False
    raise FlagError(f"illegal value '{text}' specified for bool flag")


def parse_flags(argv: list[str]) -> dict[str, Any]:
    """gflags syntax: ``--flag=value``, ``--flag value``, ``--flag`` / ``--noflag`` for booleans."""
    flags = dict(FLAGS)
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            continue  # gflags leaves positional arguments alone
        body = arg.lstrip("-")
        name, eq, value = body.partition("=")
        if name not in flags and name.startswith("no") and name[2:] in flags and isinstance(FLAGS[name[2:]], bool):
            flags[name[2:]] = False
            continue
        if name not in flags:
            raise FlagError(f"unknown command line flag '{name}'")
        default = FLAGS[name]
        if isinstance(default, bool):
            if eq:
                flags[name] = _bool(value)
            elif i < len(argv) and argv[i].lower() in ("true", "false", "1", "0"):
                flags[name] = _bool(argv[i])
                i += 1
            else:
                flags[name] = True
            continue
        if not eq:
            if i >= len(argv):
                raise FlagError(f"flag '--{name}' is missing its argument")
            value = argv[i]
            i += 1
        if isinstance(default, int):
            try:
                flags[name] = int(value)
            except ValueError:
                raise FlagError(f"illegal value '{value}' specified for int32 flag '{name}'") from None
        else:
            flags[name] = value
    return flags


def _dims(text: str) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in part.split(",") if d.strip()) for part in text.split(";") if part.strip()]


def main(argv: list[str] | None = None, out: TextIO | None = None, cwd: str | None = None) -> int:
    """Run like the binary (loads the model every call); return its exit code."""
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        flags = parse_flags(argv)
    except FlagError as exc:
        out.write(f"ERROR: {exc}\n")
        return 1
    if not flags["model"]:
        out.write("terminate called after throwing an instance of 'c10::Error'\n  what():  Model file is not specified\n")
        return 134
    if flags["input_type"] not in ("", "float"):
        out.write(f"terminate called after throwing an instance of 'c10::Error'\n  what():  Unsupported input type: {flags['input_type']}\n")
        return 134
    dims = _dims(flags["input_dims"])
    if not dims and not flags["no_inputs"]:
        out.write("terminate called after throwing an instance of 'c10::Error'\n  what():  Input dims must be specified.\n")
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
        out.write(f"terminate called after throwing an instance of 'c10::Error'\n  what():  {msg}\n")
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
            out.write("PyTorchObserver " + json.dumps({"type": "NET", "unit": "us", "metric": "latency",
                                                       "value": fmt_g(micros)}) + "\n")
    if iters:
        out.write(f"Main run finished. Microseconds per iter: {fmt_g(total_us / iters)}. "
                  f"Iters per second: {fmt_g(1e6 * iters / total_us)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
