"""Which failures are the device's or the benchmark program's, and which are the operator's.

A burst that fails because the program cannot start on the phone (deleted, not executable, wrong
ABI, a shared library missing, ``taskset`` refused by offline cores) says nothing about the
operator: failing its key for good on the server would lose a job to a fault that re-staging the
files fixes. Such failures are retried after the files are pushed again; only when they persist is
the job given back with the reason. Everything else (the program ran and rejected the model, or
crashed on it) is the operator's and fails that key with the program's own message.

A ``.ptl`` whose bytecode the phone's lite interpreter does not read is the device's too (every
operator would fail alike), but pushing the same files again cannot cure it: ``fix_for`` names the
``--bytecode-version`` that does, from the range the phone's PyTorch printed.
"""

from __future__ import annotations

import re

from device_agent.parsers import parse_bytecode_rejection

# sh's "cannot execute" and "not found", as the batch script reports them (``benchmark exited N: ...``).
DEVICE_EXIT_CODES = frozenset({126, 127})
# What Android's linker, sh and taskset print when the program itself cannot run.
DEVICE_PATTERNS = (
    r"CANNOT LINK EXECUTABLE",
    r"library \"?[\w.+-]+\"? not found",
    r"error while loading shared libraries",
    r"[Ee]xec format error",
    r"cannot execute binary file",
    r"not executable: (32|64)-bit",
    r"taskset: (failed|sched_setaffinity)",
    r"Permission denied",
    r"Lite Interpreter version number does not match",  # torch/csrc/jit/mobile: bytecode out of its range
)
_EXIT_RX = re.compile(r"benchmark exited (\d+)")
_DEVICE_RX = re.compile("|".join(f"(?:{p})" for p in DEVICE_PATTERNS))


def is_device_fault(reason: str) -> bool:
    """True when ``reason`` (a burst's error) says the program could not run on the device at all."""
    m = _EXIT_RX.search(reason)
    if m is not None and int(m.group(1)) in DEVICE_EXIT_CODES:
        return True
    return _DEVICE_RX.search(reason) is not None


def split_failures(failures: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``failures`` (key → reason) as (the operators' own, the device's)."""
    device = {k: r for k, r in failures.items() if is_device_fault(r)}
    return {k: r for k, r in failures.items() if k not in device}, device


def fix_for(reason: str) -> str:
    """What the user must change when re-staging cannot help ('' when it may): the bytecode version to save at."""
    rejected = parse_bytecode_rejection(reason)
    if rejected is None:
        return ""
    return (f"the phone's PyTorch reads TorchScript bytecode versions {rejected.min_version} to "
            f"{rejected.max_version}, the models were saved at version {rejected.model_version}: run the agent "
            f"with --bytecode-version {rejected.max_version}")
