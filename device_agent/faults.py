"""Which failures are the device's or the benchmark program's, and which are the operator's.

A burst that fails because the program cannot start on the phone (deleted, not executable, wrong
ABI, a shared library missing) says nothing about the operator: failing its key for good on the server
would lose a job to a fault that re-staging the files fixes. Such failures are retried after the files
are pushed again; only when they persist is the job given back with the reason. Everything else (the
program ran and rejected the model, or crashed on it) is the operator's and fails that key with the
program's own message. ``classify`` names the class of a burst's error:

* ``DEVICE``: the program cannot run (exit 126/127, the linker, the loader). Re-stage, then give back.
* ``SETUP``: the program runs but refuses how the agent calls it — a flag its build predates (ONNX
  Runtime prints its usage and exits 255, ``speed_benchmark_torch`` prints ``Failed to parse command line
  flags!`` and exits 1), or the model format (a minimal ONNX Runtime build reads ``.ort`` only). Every
  key would fail alike and pushing again cannot cure it: the job goes back at once and the agent stops
  with what to build (``setup_fix``).
* ``STORAGE``: the phone refuses to write in the work folder (EPERM ``Operation not permitted``, EROFS
  ``Read-only file system``). Re-stage once, then give the job back.
* ``PINNING``: ``taskset`` refused the mask (cores offline or outside the cpuset). The program never
  ran; the runner measures unpinned from then on, recorded in every batch's device state.
* ``OPERATOR``: anything else.

A ``.ptl`` whose bytecode the phone's lite interpreter does not read is the device's too (every
operator would fail alike), but pushing the same files again cannot cure it: ``fix_for`` names the
``--bytecode-version`` that does, from the range the phone's PyTorch printed.
"""

from __future__ import annotations

import re

from device_agent.parsers import parse_bytecode_rejection

OPERATOR, DEVICE, SETUP, STORAGE, PINNING = "operator", "device", "setup", "storage", "pinning"

# sh's "cannot execute" and "not found", as the batch script reports them (``benchmark exited N: ...``).
DEVICE_EXIT_CODES = frozenset({126, 127})
# What Android's linker and sh print when the program itself cannot run.
DEVICE_PATTERNS = (
    r"CANNOT LINK EXECUTABLE",
    r"library \"?[\w.+-]+\"? not found",
    r"error while loading shared libraries",
    r"[Ee]xec format error",
    r"cannot execute binary file",
    r"not executable: (32|64)-bit",
    r"Permission denied",
    # A script stand-in deleted between exec and the shell opening it (a binary keeps running): its file is gone.
    r"cannot open \S+: No such file",
    r"Lite Interpreter version number does not match",  # torch/csrc/jit/mobile: bytecode out of its range
)
# The program refusing its command line or its model's format (sources in setup_fix).
SETUP_PATTERNS = (
    r"perf_test \[options\.\.\.\] model_path \[result_file\]",  # ORT ShowUsage(): ParseArguments returned false
    r"unknown option -- \S|invalid option -- '\S'",  # getopt's own line before it (bionic / glibc)
    r"Failed to parse command line flags!",  # speed_benchmark_torch main(): c10::ParseCommandLineFlags failed
    r"C10 flag: (?:unrecognized commandline argument|illegal argument)",
    # absl (onnxruntime_perf_test of the absl-flags era) and gflags (a C10_USE_GFLAGS speed_benchmark_torch)
    r"ERROR: [Uu]nknown command line flag '[^']+'",
    r"\S+\.onnx is not supported",  # ORT performance_runner.cc CreateModelInfo in a minimal build
    r"ONNX format model is not supported in this build",  # ORT inference_session.cc, ORT_MINIMAL_BUILD
    r"executor_runner logged no 'Iteration' lines",  # ET_LOG compiled out (runtimes/batch_output.py NO_ET_LOG)
)
# What the agent says when executor_runner exited 0 without its per-execution log lines.
ET_NO_LOG = "executor_runner logged no 'Iteration' lines (a build without ET_LOG: EXECUTORCH_ENABLE_LOGGING off)"
STORAGE_PATTERNS = (r"Operation not permitted", r"Read-only file system")
# toybox taskset (toys/other/taskset.c): perror_exit("failed to %s pid %d's affinity", "set", pid).
PINNING_PATTERNS = (r"taskset: failed to set pid -?\d+'s affinity", r"taskset: sched_setaffinity")
_EXIT_RX = re.compile(r"benchmark exited (\d+)")


def _rx(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_DEVICE_RX, _SETUP_RX, _STORAGE_RX, _PINNING_RX = (
    _rx(DEVICE_PATTERNS),
    _rx(SETUP_PATTERNS),
    _rx(STORAGE_PATTERNS),
    _rx(PINNING_PATTERNS),
)
_ANY_RX = _rx(DEVICE_PATTERNS + SETUP_PATTERNS + STORAGE_PATTERNS + PINNING_PATTERNS)


def classify(reason: str) -> str:
    """The class of a burst's error (``OPERATOR``, ``DEVICE``, ``SETUP``, ``STORAGE`` or ``PINNING``).

    Pinning first (taskset's own error may carry an errno text), then the program refusing its call,
    then the storage errno texts, then the program not running at all.
    """
    if _PINNING_RX.search(reason):
        return PINNING
    if _SETUP_RX.search(reason):
        return SETUP
    if _STORAGE_RX.search(reason):
        return STORAGE
    m = _EXIT_RX.search(reason)
    if (m is not None and int(m.group(1)) in DEVICE_EXIT_CODES) or _DEVICE_RX.search(reason):
        return DEVICE
    return OPERATOR


def salient_lines(text: str, limit: int = 3) -> list[str]:
    """The lines of a program's output that name a fault class (the first ``limit``): a burst's error keeps
    them even when they are not among its last lines (a usage text follows getopt's line)."""
    return [line.strip() for line in text.splitlines() if _ANY_RX.search(line)][:limit]


def is_device_fault(reason: str) -> bool:
    """True when ``reason`` (a burst's error) is not the operator's (any class but ``OPERATOR``)."""
    return classify(reason) != OPERATOR


def split_failures(failures: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``failures`` (key → reason) as (the operators' own, the device's)."""
    device = {k: r for k, r in failures.items() if is_device_fault(r)}
    return {k: r for k, r in failures.items() if k not in device}, device


def fix_for(reason: str) -> str:
    """What the user must change when re-staging cannot help ('' when it may): the bytecode version to save at."""
    rejected = parse_bytecode_rejection(reason)
    if rejected is None:
        return ""
    return (
        f"the phone's PyTorch reads TorchScript bytecode versions {rejected.min_version} to "
        f"{rejected.max_version}, the models were saved at version {rejected.model_version}: run the agent "
        f"with --bytecode-version {rejected.max_version}"
    )


# The flags the agent passes (runtimes/binary.py), named in the fixes.
ORT_FLAGS = "-e cpu -m times -r N -x THREADS -I -s MODEL RESULT_FILE"
TORCH_FLAGS = (
    "--model= --input_dims= --input_type=float --warmup= --iter= --report_pep=true "
    "--use_caching_allocator=true --pthreadpool_size="
)
_GETOPT_RX = re.compile(r"unknown option -- (\S)|invalid option -- '(\S)'|option requires an argument -- (\S)")
_C10_RX = re.compile(r"C10 flag: (?:unrecognized commandline argument|illegal argument): (--[^=\s|]+)")
_FLAGS_LIB_RX = re.compile(r"ERROR: [Uu]nknown command line flag '([^']+)'")


def setup_fix(reason: str) -> str:
    """What to build, for a ``SETUP`` fault: which flag or format the program refused and the build that takes it.

    The messages are the programs' own: bionic's getopt (``<argv0>: unknown option -- I``, OpenBSD
    getopt_long.c) then ONNX Runtime's ShowUsage (``perf_test [options...] model_path [result_file]``,
    onnxruntime/test/perftest/command_args_parser.cc) and exit 255; c10's ``C10 flag: unrecognized
    commandline argument: --x=1`` then ``Failed to parse command line flags!`` and exit 1
    (c10/util/flags_use_no_gflags.cpp, binaries/speed_benchmark_torch.cc); a minimal ONNX Runtime build's
    ``<model> is not supported`` (performance_runner.cc CreateModelInfo).
    """
    if re.search(r"\S+\.onnx is not supported|ONNX format model is not supported in this build", reason):
        return (
            "onnxruntime_perf_test is a minimal ONNX Runtime build (--minimal_build), which reads only ORT-format "
            "models (.ort), and the agent measures .onnx models: build onnxruntime_perf_test without "
            "--minimal_build and pass it with --benchmark-binary"
        )
    if reason.startswith("executorch") or "executor_runner logged no" in reason:
        return _executor_runner_fix(reason)
    m = _GETOPT_RX.search(reason)
    if m is not None:
        flag = "-" + next(g for g in m.groups() if g)
        return (
            f"onnxruntime_perf_test rejects {flag}: its build predates a flag the agent passes ({ORT_FLAGS}); "
            f"build onnxruntime_perf_test from a newer ONNX Runtime (one whose usage lists {flag}) and pass it "
            "with --benchmark-binary"
        )
    if _SETUP_RX.search(reason) and "perf_test [options...]" in reason:
        return (
            f"onnxruntime_perf_test rejected its command line ({ORT_FLAGS}) and printed its usage: build it from a "
            "newer ONNX Runtime and pass it with --benchmark-binary"
        )
    m = _C10_RX.search(reason) or _FLAGS_LIB_RX.search(reason)
    if m is not None and reason.startswith("onnxruntime"):  # the burst's error names its runtime first
        flag = f"-{m.group(1)}"
        return (
            f"onnxruntime_perf_test rejects {flag}: its build predates a flag the agent passes ({ORT_FLAGS}); "
            f"build onnxruntime_perf_test from a newer ONNX Runtime and pass it with --benchmark-binary"
        )
    if m is not None:
        flag = m.group(1) if m.group(1).startswith("--") else f"--{m.group(1)}"
        return (
            f"speed_benchmark_torch rejects {flag}: its build predates a flag the agent passes ({TORCH_FLAGS}); "
            f"build speed_benchmark_torch from a newer PyTorch (one that has {flag}) and pass it with "
            "--benchmark-binary"
        )
    return (
        f"speed_benchmark_torch rejected its command line flags ({TORCH_FLAGS}): build it from a newer PyTorch "
        "and pass it with --benchmark-binary"
    )


ET_FLAGS = "--model_path= --num_executions= --cpu_threads= --print_output=none"


def _executor_runner_fix(reason: str) -> str:
    """``setup_fix`` for ExecuTorch's ``executor_runner``: gflags' ``ERROR: unknown command line flag '<name>'``
    (exit 1), or a build whose ``ET_LOG`` lines are compiled out."""
    build = "build it as docs/device-agent.md says (ExecuTorch 1.5.1) and pass it with --benchmark-binary"
    if "executor_runner logged no" in reason:
        return (
            "executor_runner printed none of its log lines, which carry the per-run times: its build has logging "
            f"off; add -DEXECUTORCH_ENABLE_LOGGING=ON -DEXECUTORCH_PAL_DEFAULT=posix and {build}"
        )
    m = _FLAGS_LIB_RX.search(reason)
    flag = f"--{m.group(1)}" if m is not None else "a flag"
    return f"executor_runner rejects {flag}: its build predates a flag the agent passes ({ET_FLAGS}); {build}"
