"""Helpers of the demo tests: run `hwnas demo` as a subprocess, and check that processes are gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The smallest demo that still shows something: --quick with smaller subsets (the test budget is CPU time).
# One search epoch; found, two matched random networks and the baseline trained 2 epochs on 1,200 images
# (one epoch, 18 steps, leaves some networks at chance).
TINY = [
    "--quick",
    "--epochs",
    "1",
    "--warmup-epochs",
    "0",
    "--subset",
    "400",
    "--train-subset",
    "1200",
    "--val-subset",
    "500",
    "--matched",
    "2",
    "--torch-threads",
    "1",
    "--no-progress",
]


def hwnas_command() -> list[str]:
    exe = Path(sys.executable).with_name("hwnas")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "search"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def start_demo(out: Path, *args: str, stderr: object = subprocess.PIPE) -> subprocess.Popen[str]:
    """`hwnas demo --out OUT ARGS` in its own session (signals from the test reach it alone)."""
    return subprocess.Popen(
        hwnas_command() + ["demo", "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env(),
        cwd=ROOT,
        start_new_session=True,
    )


def services(out: Path) -> dict:
    """The demo's ``services.json`` (empty dict before it exists)."""
    try:
        return json.loads((out / "services.json").read_text())
    except (OSError, ValueError):
        return {}


def alive(pid: int) -> bool:
    """True while a process with this PID exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout_s: float = 15.0) -> list[int]:
    """The PIDs still alive after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def processes_mentioning(text: str) -> list[int]:
    """PIDs of running processes whose command line contains ``text`` (a tmp path, a port)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and alive(int(d.name)):
            found.append(int(d.name))
    return found
