"""A zygote that runs stand-in benchmark calls for the loopback device, each in a fresh process.

Starting Python with onnxruntime and torch takes far longer than a phone takes to start its
benchmark program, so the runtimes are imported once, here; every call is then a ``fork`` of
this process that creates its own session, does only the warm-up runs the real program does,
and exits. A call therefore pays what a call pays on a phone — a new process, a new ONNX
Runtime session or TorchScript load, the program's own warm-up — and nothing is kept warm
between calls, because nothing is on a phone.

The pushed "binary" is a POSIX-sh launcher (``launcher_script``) that talks to it over FIFOs:

1. the launcher creates ``<dir>/r.<pid>`` (a FIFO) and writes one request line to
   ``<dir>/requests``: fields separated by 0x1f — tool, pid, cwd, OMP_NUM_THREADS, argv...;
2. the worker forks; the child runs the tool, writes the exit code to ``r.<pid>.rc``, then the
   output into the FIFO, unlinks the FIFO and exits (and exits at once if the launcher is
   killed, as the program would die with it);
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
    """Answer launcher requests, each in a forked child, until the parent dies."""
    import select

    directory.mkdir(parents=True, exist_ok=True)
    requests = directory / REQUESTS
    for stale in directory.glob("r.*"):
        stale.unlink(missing_ok=True)
    requests.unlink(missing_ok=True)
    os.mkfifo(requests)
    fd = os.open(requests, os.O_RDWR)  # RDWR: never sees EOF when a launcher closes
    # Import the runtimes now (a phone's program is linked before it runs); torch on first use.
    import onnxruntime  # noqa: F401

    import device_agent.runtimes.engines  # noqa: F401

    buf = b""
    children: set[int] = set()
    while True:
        if parent is not None and os.getppid() != parent:
            return
        ready, _, _ = select.select([fd], [], [], 0.5)
        _reap(children)
        if not ready:
            continue
        buf += os.read(fd, 65536)
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            pid = _spawn(directory, line.decode("utf-8", "surrogateescape"))
            if pid:
                children.add(pid)


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def _spawn(directory: Path, line: str) -> int | None:
    """Fork a child that answers one request; the child's pid (None for a malformed request)."""
    fields = line.split(SEP)
    if len(fields) < 4 or fields[0] not in TOOLS or not fields[1].isdigit():
        return None
    tool = fields[0]
    main = _tool_main(tool)  # imported here, before the fork, so a call does not import it again
    if tool == "speed_benchmark_torch":
        try:
            import torch  # noqa: F401 - once in the zygote, like onnxruntime
        except ImportError:
            pass
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        _child(directory, fields, main)
    except BaseException:  # noqa: BLE001 - a child never returns into the server loop
        code = 1
    finally:
        os._exit(code)


def _child(directory: Path, fields: list[str], main: Any) -> None:
    tool, pid, cwd, omp = fields[0], fields[1], fields[2], fields[3]
    argv = fields[4:]
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _watch_launcher(int(pid))
    if omp:
        os.environ["OMP_NUM_THREADS"] = omp
    out = io.StringIO()
    try:
        rc = main(argv, out=out, cwd=cwd)
    except Exception as exc:  # noqa: BLE001 - report like a crashed program
        out.write(f"{tool}: {type(exc).__name__}: {exc}\n")
        rc = 1
    fifo = directory / f"r.{pid}"
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


def _watch_launcher(pid: int) -> None:
    """End this child when its launcher is gone (killed on a stop): a program dies with its shell's kill."""
    import threading

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(143)
            except PermissionError:
                pass
            time.sleep(0.05)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


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
