"""A warm process that runs stand-in benchmark calls for the loopback device.

Starting Python with onnxruntime and torch takes far longer than an operator takes to run;
a phone binary starts in milliseconds. So the loopback device keeps this worker running and
the pushed "binary" is a POSIX-sh launcher (``launcher_script``) that talks to it over FIFOs:

1. the launcher creates ``<dir>/r.<pid>`` (a FIFO) and writes one request line to
   ``<dir>/requests``: fields separated by 0x1f — tool, pid, cwd, OMP_NUM_THREADS, argv...;
2. the worker runs the tool in-process (sessions cached by file, size and mtime), writes the
   exit code to ``r.<pid>.rc``, then the output into the FIFO, and unlinks the FIFO;
3. the launcher ``cat``s the FIFO and exits with the code it reads (a shell builtin).

Without the worker (or its FIFO) the launcher runs the Python module directly: slower, same
output. The worker dies with its parent (PR_SET_PDEATHSIG) and polls it as a fallback.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import io
import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any

from device_agent.standins import RUNTIME_TOOL, TOOLS

SEP = "\x1f"
REQUESTS = "requests"


def launcher_script(tool: str) -> str:
    """The shell program pushed as the benchmark binary to the loopback device."""
    if tool not in TOOLS:
        raise ValueError(f"unknown stand-in {tool!r}")
    return f"""#!/bin/sh
# hwnas loopback stand-in for {tool}: same flags, same output; the model runs on the
# host with {'onnxruntime' if tool == 'onnxruntime_perf_test' else 'torch'} (see device_agent/standins/worker.py).
w="${{HWNAS_STANDIN_WORKER:-}}"
if [ -n "$w" ] && [ -p "$w/{REQUESTS}" ]; then
  r="$w/r.$$"
  mkfifo "$r" || exit 70
  q="{tool}{SEP}$${SEP}$PWD{SEP}${{OMP_NUM_THREADS:-}}"
  for a in "$@"; do q="$q{SEP}$a"; done
  printf '%s\\n' "$q" > "$w/{REQUESTS}"
  cat "$r"
  rc=70
  [ -f "$r.rc" ] && read -r rc < "$r.rc"
  exit "$rc"
fi
if [ -z "${{HWNAS_STANDIN_PYTHON:-}}" ]; then
  echo "{tool}: this is the hwnas loopback stand-in; on a phone push the real binary (docs/device-agent.md)" >&2
  exit 127
fi
exec "$HWNAS_STANDIN_PYTHON" -m device_agent.standins.{tool} "$@"
"""


def write_launcher(tool: str, directory: Path) -> Path:
    """Write the launcher for ``tool`` into ``directory`` (executable) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / tool
    text = launcher_script(tool)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return path


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _tool_main(tool: str):  # noqa: ANN202
    if tool == "speed_benchmark_torch":
        from device_agent.standins.speed_benchmark_torch import main
    else:
        from device_agent.standins.onnxruntime_perf_test import main
    return main


def _open_reader_end(fifo: Path, timeout_s: float = 10.0) -> int | None:
    """Open the launcher's FIFO for writing once its ``cat`` has opened it (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.set_blocking(fd, True)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.ENXIO, errno.ENOENT) or time.monotonic() > deadline:
                return None
            time.sleep(0.0002)


def serve(directory: Path, parent: int | None = None) -> None:
    """Answer launcher requests until the parent dies."""
    directory.mkdir(parents=True, exist_ok=True)
    requests = directory / REQUESTS
    for stale in directory.glob("r.*"):
        stale.unlink(missing_ok=True)
    requests.unlink(missing_ok=True)
    os.mkfifo(requests)
    fd = os.open(requests, os.O_RDWR)  # RDWR: never sees EOF when a launcher closes
    engines: dict[Any, Any] = {}
    # Import the runtimes now, so the first request does not pay for it.
    import onnxruntime  # noqa: F401

    import device_agent.runtimes.engines  # noqa: F401

    buf = b""
    while True:
        if parent is not None and os.getppid() != parent:
            return
        import select

        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        buf += os.read(fd, 65536)
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            _handle(directory, line.decode("utf-8", "surrogateescape"), engines)
        if len(engines) > 512:
            engines.clear()


def _handle(directory: Path, line: str, engines: dict[Any, Any]) -> None:
    fields = line.split(SEP)
    if len(fields) < 4 or fields[0] not in TOOLS or not fields[1].isdigit():
        return
    tool, pid, cwd, omp = fields[0], fields[1], fields[2], fields[3]
    argv = fields[4:]
    fifo = directory / f"r.{pid}"
    out = io.StringIO()
    old_omp = os.environ.get("OMP_NUM_THREADS")
    if omp:
        os.environ["OMP_NUM_THREADS"] = omp
    try:
        rc = _tool_main(tool)(argv, out=out, engines=engines, cwd=cwd)
    except Exception as exc:  # noqa: BLE001 - a broken call must not end the worker
        out.write(f"{tool}: {type(exc).__name__}: {exc}\n")
        rc = 1
    finally:
        if omp:
            if old_omp is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old_omp
    rc_path = directory / f"r.{pid}.rc"
    tmp = directory / f".rc.{pid}"
    tmp.write_text(f"{rc}\n")
    os.replace(tmp, rc_path)
    try:
        if not stat.S_ISFIFO(os.stat(fifo).st_mode):
            return
    except OSError:
        return
    wfd = _open_reader_end(fifo)
    if wfd is None:
        return
    try:
        data = out.getvalue().encode()
        view = memoryview(data)
        while view:
            n = os.write(wfd, view)
            view = view[n:]
    except OSError:
        pass
    finally:
        os.close(wfd)
        fifo.unlink(missing_ok=True)
    _sweep(directory)


def _sweep(directory: Path) -> None:
    """Remove exit-code files of launchers that are gone."""
    for rc in directory.glob("r.*.rc"):
        pid = rc.name.split(".")[1]
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                rc.unlink(missing_ok=True)
            except PermissionError:
                pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="stand-in worker of the hwnas loopback device")
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--parent", type=int, default=None)
    args = ap.parse_args(argv)
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.dir, args.parent)
    return 0


__all__ = ["launcher_script", "write_launcher", "serve", "RUNTIME_TOOL"]

if __name__ == "__main__":
    sys.exit(main())
