"""Stand-in for ExecuTorch's ``executor_runner``: the same gflags, the same log lines.

Follows pytorch/executorch ``examples/portable/executor_runner/executor_runner.cpp`` as built for a
phone by docs/device-agent.md (XNNPACK, ``ET_USE_THREADPOOL``, the POSIX PAL, logging at Info, the
event tracer on). The runtime's ExecuTorch is 1.5.1 (git 3b606839); that revision of the file was not
in the stored sources, so the messages come from the stored revision 018a3a52 (newer; the older stored
fefc4a2a has the same load messages) and the file:line values are not verified for 1.5.1 (nothing
reads them: the parser keys on the messages). What 1.5.1 itself prints was checked where its installed
library prints it (``threadpool.cpp:66 Resetting threadpool to N threads.``, error codes 0x22 / 0x12).

* Flags are gflags: ``--name=value`` / ``--name value`` (``-name`` too), bools also ``--name`` /
  ``--noname``; an unknown flag prints ``ERROR: unknown command line flag '<name>'`` and exits 1, as
  does a value the flag's type rejects; arguments left over are logged ``Extra commandline args: ...``
  (exit 1).
* Every message is an ``ET_LOG`` line on stderr, posix PAL format (``runtime/platform/default/posix.cpp``):
  ``%c %02u:%02u:%02u.%06lu executorch:%s:%zu] %s`` — level (I, E, F), time since the runtime started,
  file name, line, message.
* ``--cpu_threads`` (default -1: the performant cores) resets the thread pool when > 0; 1 also runs
  everything on the calling thread (``NoThreadPoolGuard``).
* Each of ``--num_executions`` runs prepares its inputs (ones, outside the clock), times
  ``method->execute()`` alone and logs ``Iteration i of n: <ms> ms``; then ``Model executed
  successfully n time(s) in <sum> ms.``. No warm-up of its own.
* A file that is not a program: ``Failed to parse model file <path>``, exit 1. A missing file, a method
  that cannot load or run: an ``F`` line (``In function main(), assert failed (<cond>): <msg>``) and
  ``abort()`` (SIGABRT: the shell says 134).
* ``--print_output`` ``none`` | ``summary`` | ``all`` (stdout); ``all`` is the program's printf per
  element. ``summary`` (``evalue_edge_items``) is approximated: print_evalue.cpp was not read.
* Event tracer: the ETDump of the run is written to ``--etdump_path`` (default ``model.etdump``, relative
  to the working folder) and logged. ``HWNAS_STANDIN_WITHOUT="--etdump_path"`` plays a build without the
  event tracer (the flag is then unknown, no ETDump is written, and runs are not traced).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from device_agent.loopback.standins import build_knobs

FILE = "executor_runner.cpp"
# Lines of the ET_LOG / ET_CHECK calls at 018a3a52 (see the module docstring: not verified for 1.5.1).
LINE = {
    "extra": 407,
    "print_output": 421,
    "threads": 434,
    "open": 539,
    "parse": 549,
    "loaded": 551,
    "method": 561,
    "buffer": 617,
    "load_method": 672,
    "load_time": 678,
    "iteration": 862,
    "executed": 872,
    "outputs": 879,
    "execute": 855,
    "etdump_open": 309,
    "etdump_written": 316,
    "etdump_failed": 969,
}
THREADPOOL = ("threadpool.cpp", 66)  # printed so by 1.5.1's own library (its pybindings log the same call)
ACCESS_FAILED, INVALID_PROGRAM = 0x22, 0x12  # runtime/core/error.h, as 1.5.1's loader reports them

# name -> (gflags type, default); 1.5.1's flags of a threadpool + event-tracer build (no bundled IO, no VGF).
FLAGS: dict[str, tuple[str, Any]] = {
    "model_path": ("string", "model.pte"),
    "data_path": ("string", ""),
    "inputs": ("string", ""),
    "input_shapes": ("string", ""),
    "output_file": ("string", ""),
    "server_mode": ("bool", False),
    "print_output": ("string", "summary"),
    "num_executions": ("uint32", 1),
    "method_name": ("string", ""),
    "etdump_path": ("string", "model.etdump"),
    "cpu_threads": ("int32", -1),
}


class FlagError(ValueError):
    """gflags refused the command line; ``str()`` is what it printed."""


def _value(kind: str, name: str, text: str) -> Any:
    if kind == "string":
        return text
    if kind == "bool":
        if text.lower() in ("true", "t", "yes", "y", "1"):
            return True
        if text.lower() in ("false", "f", "no", "n", "0"):
            return False
    else:
        try:
            number = int(text, 0)
        except ValueError:
            number = None
        limits = (0, 2**32 - 1) if kind == "uint32" else (-(2**31), 2**31 - 1)
        if number is not None and limits[0] <= number <= limits[1] and not (kind == "uint32" and text.startswith("-")):
            return number
    raise FlagError(f"ERROR: illegal value '{text}' specified for {kind} flag '{name}'\n")


def parse_flags(argv: list[str], without: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """gflags' ``ParseCommandLineFlags(remove_flags=true)``: (flags, the arguments that are not flags)."""
    known = {k: v for k, v in FLAGS.items() if f"--{k}" not in without}
    flags = {k: default for k, (_, default) in known.items()}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            rest.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            rest.append(arg)  # gflags moves program arguments to the end and parses on
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in known and name.startswith("no") and name[2:] in known and known[name[2:]][0] == "bool" and not eq:
            flags[name[2:]] = False
            continue
        if name not in known:
            raise FlagError(f"ERROR: unknown command line flag '{name}'\n")
        kind = known[name][0]
        if not eq:
            if kind == "bool":
                flags[name] = True
                continue
            if i == len(argv):
                raise FlagError(f"ERROR: flag '{arg}' is missing its argument\n")
            value = argv[i]
            i += 1
        flags[name] = _value(kind, name, value)
    return flags, rest


class _Log:
    """ET_LOG through the posix PAL: one line per message on stderr, time since the runtime started."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.start = time.monotonic_ns()

    def __call__(self, level: str, where: str | tuple[str, int], message: str) -> None:
        file, line = where if isinstance(where, tuple) else (FILE, LINE[where])
        us = (time.monotonic_ns() - self.start) // 1000
        sec, us = divmod(us, 1_000_000)
        minute, sec = divmod(sec, 60)
        hour, minute = divmod(minute, 60)
        self.err.write(f"{level} {hour:02d}:{minute:02d}:{sec:02d}.{us:06d} executorch:{file}:{line}] {message}\n")
        self.err.flush()

    def check_failed(self, where: str, cond: str, message: str) -> int:
        """ET_CHECK_MSG: the Fatal line, then abort() (the shell reports 128 + SIGABRT)."""
        self("F", where, f"In function main(), assert failed ({cond}): {message}")
        return 134


def _performant_cores() -> int:
    # cpuinfo_utils get_num_performant_cores(): on a host without ARM core ids, every CPU.
    return os.cpu_count() or 1


def _planned_buffer_sizes(path: Path) -> list[int]:
    """The method's memory-planned buffer sizes, read from the program (buffer 0 is reserved)."""
    try:
        from executorch.exir._serialize._program import deserialize_pte_binary

        plan = deserialize_pte_binary(path.read_bytes()).program.execution_plan[0]
        return [int(s) for s in plan.non_const_buffer_sizes[1:]]
    except Exception:  # noqa: BLE001 - informational lines only
        return []


def _print_outputs(mode: str, outputs: list[Any], out: TextIO) -> None:
    import torch

    if mode == "all":
        for i, value in enumerate(outputs):
            if not isinstance(value, torch.Tensor):
                out.write(f"Output[{i}]: Not Tensor\n")
                continue
            flat = value.reshape(-1)
            for j, v in enumerate(flat.tolist()):
                if value.dtype == torch.int32:
                    out.write(f"Output[{i}][{j}]: (int) {v}\n")
                elif value.dtype == torch.float32:
                    out.write(f"Output[{i}][{j}]: (float) {v:f}\n")
                elif value.dtype == torch.int8:
                    out.write(f"Output[{i}][{j}]: (char) {v}\n")
                elif value.dtype == torch.bool:
                    out.write(f"Output[{i}][{j}]: (bool) {'true ' if v else 'false'} (0x{int(v):x})\n")
    elif mode == "summary":  # approximated (module docstring)
        for i, value in enumerate(outputs):
            if isinstance(value, torch.Tensor):
                values = value.reshape(-1).tolist()
                items = values if len(values) <= 200 else [*values[:100], "...", *values[-100:]]
                body = ", ".join(x if isinstance(x, str) else f"{x:g}" for x in items)
                out.write(f"Output {i}: tensor(sizes={list(value.shape)}, [{body}])\n")
            else:
                out.write(f"Output {i}: {value}\n")


def main(
    argv: list[str] | None = None,
    out: TextIO | None = None,
    cwd: str | None = None,
    err: TextIO | None = None,
    prog: str = "executor_runner",
) -> int:
    """Run like the program (loads the model every call); return its exit code.

    ``out``/``err`` are its stdout and stderr; given only ``out``, both go there, as ``2>&1`` shows them.
    """
    if out is None:
        out, err = sys.stdout, err or sys.stderr
    err = err or out
    argv = list(sys.argv[1:] if argv is None else argv)
    without = build_knobs().without
    tracer = "--etdump_path" not in without
    try:
        flags, rest = parse_flags(argv, without)
    except FlagError as exc:
        err.write(str(exc))
        return 1
    from device_agent.runtimes.executorch_engine import _portable_lib

    # Linked into a phone's program, the runtime is there before main(); here its import (seconds) comes first.
    portable_lib = _portable_lib()
    log = _Log(err)  # runtime_init() comes first in main(): the clock starts before the flags are read
    if rest:
        log("E", "extra", "Extra commandline args: " + " ".join(rest))
        return 1
    if flags["print_output"] not in ("none", "summary", "all"):
        log("E", "print_output", f"Unknown --print_output mode '{flags['print_output']}'. Expected 'none', 'summary', or 'all'.")
        return 1
    threads = _performant_cores() if flags["cpu_threads"] == -1 else flags["cpu_threads"]
    log("I", "threads", f"Resetting threadpool with num threads = {threads}")
    if threads > 0:
        log("I", THREADPOOL, f"Resetting threadpool to {threads} threads.")
        portable_lib._unsafe_reset_threadpool(threads)

    model = Path(flags["model_path"])
    path = model if model.is_absolute() or not cwd else Path(cwd) / model
    if not os.access(path, os.R_OK) or path.is_dir():
        return log.check_failed("open", "file_loader.ok()", f"FileDataLoader::from() failed: 0x{ACCESS_FAILED:x}")
    before_load = time.perf_counter_ns()
    try:
        program = portable_lib._load_program(str(path), enable_etdump=tracer)
    except RuntimeError:
        log("E", "parse", f"Failed to parse model file {flags['model_path']}")
        return 1
    log("I", "loaded", f"Model file {flags['model_path']} is loaded.")
    name = flags["method_name"] or program.get_method_name(0)
    log("I", "method", f"Using method {name}")
    for i, size in enumerate(_planned_buffer_sizes(path)):
        log("I", "buffer", f"Setting up planned buffer {i}, size {size}.")
    try:
        method = program.load_method(name)
    except Exception:  # noqa: BLE001 - the program's abort, not a traceback
        return log.check_failed(
            "load_method", "method.ok()", f"Loading of method {name} failed with status 0x{INVALID_PROGRAM:x}"
        )
    log("I", "load_time", f"Model loaded in {(time.perf_counter_ns() - before_load) / 1e6:f} ms.")

    import torch

    meta = method.method_meta()
    shapes = [(tuple(meta.input_tensor_meta(i).sizes()), meta.input_tensor_meta(i).dtype()) for i in range(meta.num_inputs())]
    executions = flags["num_executions"]
    spent_ns = 0
    # prepare_input_tensors: inputs of ones set before every run, outside the clock (memory planning may have reused
    # an input's buffer, and set_input copies into it). The ones are made once: the same bytes reach the method every
    # run, without a torch.ones call per run in Python (~20 µs, more than many of the operators take; the program
    # fills its buffers in C).
    ones = [torch.ones(shape, dtype=_dtype(code)) for shape, code in shapes]
    for i in range(executions):
        method.set_inputs(ones)
        t0 = time.perf_counter_ns()
        try:
            method.execute()
        except Exception:  # noqa: BLE001
            return log.check_failed(
                "execute", "status == Error::Ok", f"Execution of method {name} failed with status 0x{INVALID_PROGRAM:x}"
            )
        elapsed = time.perf_counter_ns() - t0
        spent_ns += elapsed
        log("I", "iteration", f"Iteration {i + 1} of {executions}: {elapsed / 1e6:f} ms")
    log("I", "executed", f"Model executed successfully {executions} time(s) in {spent_ns / 1e6:f} ms.")
    outputs = list(method.get_outputs())
    log("I", "outputs", f"{len(outputs)} outputs: ")
    _print_outputs(flags["print_output"], outputs, out)
    if tracer:
        etdump = Path(flags["etdump_path"])
        target = etdump if etdump.is_absolute() or not cwd else Path(cwd) / etdump
        try:
            with open(target, "wb"):
                pass
        except OSError:
            log("E", "etdump_open", f"Failed to open ETDump file at {flags['etdump_path']}.")
            return log.check_failed("etdump_failed", "status == Error::Ok", "Failed to save ETDump file.")
        program.write_etdump_result_to_file(str(target))
        log("I", "etdump_written", f"ETDump written to file '{flags['etdump_path']}'.")
    return 0


def _dtype(code: Any) -> Any:
    """A torch dtype for ExecuTorch's ScalarType code (the runner's inputs are ones of the input's type)."""
    import torch

    table = {
        0: torch.uint8,
        1: torch.int8,
        2: torch.int16,
        3: torch.int32,
        4: torch.int64,
        5: torch.float16,
        6: torch.float32,
        7: torch.float64,
        11: torch.bool,
    }
    return table.get(int(code), torch.float32)


def _own_stderr() -> TextIO:
    """This process's stderr for the program's lines alone: the library's native log lines (its own format,
    written to fd 2) go to /dev/null, as a phone's program has only its own logger."""
    sys.stderr.flush()
    ours = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    return os.fdopen(ours, "w")


if __name__ == "__main__":
    # The launcher passes its $0: the name the program was started by.
    sys.exit(main(out=sys.stdout, err=_own_stderr(), prog=os.environ.get("HWNAS_STANDIN_ARGV0") or Path(sys.argv[0]).stem))
