"""A zygote that runs stand-in benchmark calls for the loopback device, each in a fresh process.

Starting Python with onnxruntime and torch takes far longer than a phone takes to start its
benchmark program, so the runtimes are imported once, here; every call is then a ``fork`` of
this process that creates its own session, does only the warm-up runs the real program does,
and exits. A call therefore pays what a call pays on a phone — a new process, a new ONNX
Runtime session or TorchScript load, the program's own warm-up — and nothing is kept warm
between calls, because nothing is on a phone.

The pushed "binary" is a POSIX-sh launcher (``launcher_script``) that talks to it over FIFOs:

1. the launcher creates ``<dir>/r.<pid>`` (a FIFO) and writes one request line to
   ``<dir>/requests``: fields separated by 0x1f — tool, pid, cwd, OMP_NUM_THREADS, whether its
   stdout and stderr are one file (``2>&1``: then the program's two streams come back as one, in the
   order it wrote them), the build knobs (``standins.KNOBS``), its ``$0``, argv...;
2. the worker forks; the child runs the tool, writes the exit code to ``r.<pid>.rc`` and, when the
   streams are apart, what the program wrote on stderr to ``r.<pid>.err``; then its stdout into the
   FIFO; it unlinks the FIFO and exits (and exits at once if the launcher is killed, as the program
   would die with it);
3. the launcher ``cat``s the FIFO, then ``r.<pid>.err`` to its stderr, and exits with the code it
   reads (a shell builtin).

Without the worker (or its FIFO) the launcher runs the Python module directly: slower, same
output. The worker dies with its parent (PR_SET_PDEATHSIG) and polls it as a fallback.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import io
import os
import shlex
import signal
import stat
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from device_agent.loopback.standins import KNOBS, RUNTIME_TOOL, TOOL_ENGINE, TOOLS

SEP = "\x1f"
REQUESTS = "requests"
_FIXED = 6 + len(KNOBS)  # request fields before argv: tool, pid, cwd, OMP_NUM_THREADS, merged, knobs..., $0


def launcher_script(tool: str, knobs: Mapping[str, str] | None = None) -> str:
    """The shell program pushed as the benchmark binary to the loopback device.

    ``knobs`` (``standins.KNOBS`` → value) are set in the launcher itself: a program that plays another
    build wherever it is pushed (an older ``onnxruntime_perf_test``: ``{KNOB_WITHOUT: "-I"}``).
    """
    if tool not in TOOLS:
        raise ValueError(f"unknown stand-in {tool!r}")
    unknown = set(knobs or {}) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown stand-in knob(s) {sorted(unknown)}: use {', '.join(KNOBS)}")
    preset = "".join(f"{k}={shlex.quote(v)}; export {k}\n" for k, v in sorted((knobs or {}).items()))
    fields = SEP.join(f"${{{k}:-}}" for k in KNOBS)
    return f"""#!/bin/sh
# hwnas loopback stand-in for {tool}: same flags, same output; the model runs on the
# host with {TOOL_ENGINE[tool]} (see device_agent/loopback/standins/worker.py).
{preset}w="${{HWNAS_STANDIN_WORKER:-}}"
if [ -n "$w" ] && [ -p "$w/{REQUESTS}" ]; then
  r="$w/r.$$"
  mkfifo "$r" || exit 70
  j=0
  # Called with 2>&1? (-ef: dash, mksh and toybox test have it.) No redirection on this line: it would change fd 2.
  [ /proc/$$/fd/1 -ef /proc/$$/fd/2 ] && j=1
  q="{tool}{SEP}$${SEP}$PWD{SEP}${{OMP_NUM_THREADS:-}}{SEP}$j{SEP}{fields}{SEP}$0"
  for a in "$@"; do q="$q{SEP}$a"; done
  printf '%s\\n' "$q" > "$w/{REQUESTS}"
  cat "$r"
  rc=70
  [ -f "$r.rc" ] && read -r rc < "$r.rc"
  [ -s "$r.err" ] && cat "$r.err" >&2
  rm -f "$r.err"
  exit "$rc"
fi
if [ -z "${{HWNAS_STANDIN_PYTHON:-}}" ]; then
  echo "{tool}: this is the hwnas loopback stand-in; on a phone push the real binary (docs/device-agent.md)" >&2
  exit 127
fi
HWNAS_STANDIN_ARGV0="$0" exec "$HWNAS_STANDIN_PYTHON" -m device_agent.loopback.standins.{tool} "$@"
"""


def write_launcher(tool: str, directory: Path, knobs: Mapping[str, str] | None = None) -> Path:
    """Write the launcher for ``tool`` into ``directory`` (executable) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / tool
    text = launcher_script(tool, knobs)
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


def _tool_main(tool: str):
    if tool == "speed_benchmark_torch":
        from device_agent.loopback.standins.speed_benchmark_torch import main
    elif tool == "executor_runner":
        from device_agent.loopback.standins.executor_runner import main
    else:
        from device_agent.loopback.standins.onnxruntime_perf_test import main
    return main


def _import_executorch() -> None:
    """ExecuTorch's runtime and its program reader, once in the zygote (seconds each: a phone's program is linked
    before it runs). Its thread pool is made lazily, at the first method load, so the forks inherit no threads."""
    try:
        from device_agent.runtimes.executorch_engine import _portable_lib
        from executorch.exir._serialize._program import deserialize_pte_binary  # noqa: F401

        _portable_lib()
    except ImportError:
        pass  # the call reports it, as a program that cannot start


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
    release_waiting(directory)  # a phone that died mid-call (SIGKILL: no goodbye) left launchers waiting
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
            requests.unlink(missing_ok=True)  # later launchers find no worker rather than block writing to none
            release_waiting(directory)
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


def release_waiting(directory: Path) -> None:
    """End the wait of every launcher still reading its reply FIFO: each gets end-of-file, no ``.rc``, and exits 70.

    A phone that goes off ends what runs on it; the stand-in's launcher would otherwise wait forever for a reply
    from a worker that is gone (it blocks opening its FIFO until a writer comes). Opening the FIFO for writing,
    without blocking, succeeds only where a reader waits, and closing it at once is that reader's end-of-file.
    """
    for fifo in directory.glob("r.*"):
        try:
            if not stat.S_ISFIFO(os.stat(fifo).st_mode):
                continue
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader (ENXIO) or already gone
            continue


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
    if len(fields) < _FIXED or fields[0] not in TOOLS or not fields[1].isdigit():
        return None
    tool = fields[0]
    main = _tool_main(tool)  # imported here, before the fork, so a call does not import it again
    if tool == "speed_benchmark_torch":
        try:
            import torch  # noqa: F401 - once in the zygote, like onnxruntime
        except ImportError:
            pass
    elif tool == "executor_runner":
        _import_executorch()
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
    tool, pid, cwd, omp, merged = fields[0], fields[1], fields[2], fields[3], fields[4] == "1"
    knobs = dict(zip(KNOBS, fields[5 : 5 + len(KNOBS)]))
    prog = fields[5 + len(KNOBS)]
    argv = fields[_FIXED:]
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _watch_launcher(int(pid))
    if omp:
        os.environ["OMP_NUM_THREADS"] = omp
    for name, value in knobs.items():  # the build this call plays (the launcher's environment)
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    out = io.StringIO()
    err = out if merged else io.StringIO()  # 2>&1: one stream, in the order the program wrote it
    try:
        rc = main(argv, out=out, err=err, cwd=cwd, prog=prog or tool)
    except Exception as exc:  # noqa: BLE001 - report like a crashed program
        err.write(f"{tool}: {type(exc).__name__}: {exc}\n")
        rc = 1
    fifo = directory / f"r.{pid}"
    if err is not out and err.getvalue():
        tmp = directory / f".err.{pid}"
        tmp.write_text(err.getvalue())
        os.replace(tmp, directory / f"r.{pid}.err")
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
    """Remove exit-code and stderr files of launchers that are gone."""
    for rc in [*directory.glob("r.*.rc"), *directory.glob("r.*.err")]:
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
