"""Distributed-search tests: real torchrun launches of 2 gloo processes on CPU, one thread each, tiny subsets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.torch_tests import one_thread_seeded, tiny_space  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("worker.py")
LAUNCH_TIMEOUT_S = 120


def worker_env() -> dict[str, str]:
    """One thread per process (the machine is shared) and this checkout on the path."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)  # a test run under torchrun must not leak its own group into the children
    return env


def torchrun(
    script_args: list[str], nproc: int = 2, script: Path = WORKER, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node N SCRIPT ARGS`` (``worker.py`` by default; ``env`` added to the
    environment of torchrun and its workers); fails the test on a non-zero exit."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(script), *script_args]
    proc = subprocess.run(
        cmd, env={**worker_env(), **(env or {})}, cwd=ROOT, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S
    )
    assert proc.returncode == 0, f"torchrun exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def hwnas(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``python -m search ARGS`` as a user runs it (so ``--nproc`` really starts torchrun)."""
    return subprocess.run(
        [sys.executable, "-m", "search", *args],
        env=worker_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
