"""A small adbd on 127.0.0.1: the loopback ADB device.

It speaks ADB wire protocol v1 (CNXN, optional AUTH, OPEN, OKAY, WRTE, CLSE) and serves
``shell:``, ``exec:`` and ``sync:`` (STAT, SEND, RECV, LIST, QUIT) well enough for both the
``adb-shell`` package and Google's ``adb`` client. It advertises no features, so clients
fall back to the v1 shell (no exit codes: callers append ``; echo <marker>$?``) and sync v1.
Commands run with ``mksh`` as ``/system/bin/sh -c`` (Android's shell, with its error messages)
inside a ``Sandbox``, each in a session of its own as adbd starts them; the phone it pretends to
be is a ``FakePhone``. Like real adbd, closing a
``shell:<command>`` stream (or the whole connection) does not kill the command: its output pipe
is closed, so it dies of SIGPIPE only when it next writes (``kill_on_close=True`` restores the
old, kinder behaviour of killing the process group at once). One thread per connection reads packets; every stream (a shell process or a
sync session) has its own thread, so a stream waiting for the host's OKAY never blocks the
reader that delivers it.
"""

from __future__ import annotations

import logging
import os
import pty
import select
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from device_agent import scriptpid
from device_agent.loopback import auth as adbauth
from device_agent.loopback import wire
from device_agent.loopback.sandbox import Sandbox
from device_agent.loopback.sync import SyncSession
from device_agent.loopback.fakephone import PHONE_DIR, FakePhone, host_tools, unlock

log = logging.getLogger(__name__)

ANDROID_SH = "/system/bin/sh"

OKAY_WAIT_S = 10.0  # bounded: after a client-side timeout a WRTE is never acknowledged


class _ByteReader:
    """Bytes of one stream's WRTEs, read back at message boundaries the client never promised."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._eof = False

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._buf += data
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def read(self, n: int) -> bytes:
        with self._cond:
            while len(self._buf) < n:
                if self._eof:
                    raise EOFError
                self._cond.wait()
            out = bytes(self._buf[:n])
            del self._buf[:n]
            return out


class _Stream:
    """One open service: our id, the host's id, flow control and the close handshake."""

    def __init__(self, conn: "_Connection", local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.okay = threading.Event()
        self.closed = threading.Event()
        self.reader = _ByteReader()
        self.proc: subprocess.Popen[bytes] | None = None
        self.kind = "shell"
        self.interactive = False  # ``shell:`` with no command: a PTY on a phone, hung up (killed) on close
        self.tty: int | None = None  # the interactive shell's PTY master: the host's keystrokes go there
        self.tty_lock = threading.Lock()  # a write never meets a closed (and maybe reused) descriptor

    def write(self, data: bytes) -> bool:
        """Send ``data`` as WRTEs no larger than the peer accepts, one OKAY at a time."""
        step = self.conn.max_payload
        for i in range(0, len(data), step):
            if self.closed.is_set():
                return False
            self.okay.clear()
            self.conn.send(wire.WRTE, self.local_id, self.remote_id, data[i : i + step])
            deadline = time.monotonic() + OKAY_WAIT_S
            while not self.okay.wait(0.05):
                if self.closed.is_set() or self.conn.dead.is_set() or time.monotonic() > deadline:
                    break
        return not self.closed.is_set()

    def close_from_device(self) -> None:
        """We are done (process exited, sync QUIT): tell the host once."""
        if not self.closed.is_set():
            self.closed.set()
            self.reader.close()
            self.conn.forget(self)
            self.conn.send(wire.CLSE, self.local_id, self.remote_id)

    def close_from_host(self) -> None:
        """The host closed: answer once; the command runs on unless killed on close (see ``hang_up``)."""
        if not self.closed.is_set():
            self.closed.set()
            self.reader.close()
            self.conn.forget(self)
            self.conn.send(wire.CLSE, self.local_id, self.remote_id)
        self.hang_up()

    def hang_up(self) -> None:
        """What adbd does to the command when its stream goes: nothing for ``shell:<cmd>`` (no SIGHUP),
        a hang-up for an interactive shell; ``kill_on_close`` kills either at once."""
        if self.conn.server.kill_on_close or self.interactive:
            self.kill()

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class _Connection:
    """One host connection: handshake, then packets dispatched to streams."""

    def __init__(self, server: "LoopbackAdbd", sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.max_payload = wire.MAX_PAYLOAD_V1
        self.dead = threading.Event()
        self._send_lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_id = 1
        self._online = False
        self._token = b""

    # -- plumbing ---------------------------------------------------------------------------
    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        packet = wire.encode(command, arg0, arg1, data)
        with self._send_lock:
            try:
                self.sock.sendall(packet)
            except OSError:
                self.dead.set()

    def forget(self, stream: _Stream) -> None:
        with self._streams_lock:
            self._streams.pop(stream.local_id, None)

    def _stream(self, local_id: int) -> _Stream | None:
        with self._streams_lock:
            return self._streams.get(local_id)

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.server.stopping.is_set():
                packet = wire.read_packet(self.sock)
                self._dispatch(packet)
        except (wire.ProtocolError, OSError):
            pass
        finally:
            self.dead.set()
            with self._streams_lock:
                streams = list(self._streams.values())
                self._streams.clear()
            for s in streams:
                s.closed.set()
                s.reader.close()
                s.hang_up()
            try:
                self.sock.close()
            except OSError:
                pass

    def _dispatch(self, p: wire.Packet) -> None:
        if p.command == wire.CNXN:
            self.max_payload = max(wire.MAX_PAYLOAD_V1, min(p.arg1, wire.MAX_PAYLOAD))
            if self.server.auth_required:
                self._token = adbauth.new_token()
                self.send(wire.AUTH, wire.AUTH_TOKEN, 0, self._token)
            else:
                self._go_online()
            return
        if p.command == wire.AUTH:
            self._auth(p)
            return
        if not self._online:
            return  # nothing before the handshake counts
        if p.command == wire.OPEN:
            self._open(p)
        elif p.command == wire.OKAY:
            s = self._stream(p.arg1)
            if s is not None:
                if s.remote_id == 0:
                    s.remote_id = p.arg0
                s.okay.set()
        elif p.command == wire.WRTE:
            s = self._stream(p.arg1)
            if s is not None:
                self.send(wire.OKAY, s.local_id, s.remote_id)
                if s.kind == "sync":
                    s.reader.feed(p.data)
                else:
                    with s.tty_lock:
                        try:
                            if s.tty is not None:
                                os.write(s.tty, p.data)
                        except OSError:
                            pass
        elif p.command == wire.CLSE:
            s = self._stream(p.arg1)
            if s is not None:
                s.close_from_host()

    def _go_online(self) -> None:
        self._online = True
        self.send(wire.CNXN, wire.VERSION, wire.MAX_PAYLOAD, self.server.phone.banner())

    def _auth(self, p: wire.Packet) -> None:
        if not self.server.auth_required or self._online:
            return
        if p.arg0 == wire.AUTH_SIGNATURE:
            for key in self.server.known_keys():
                if adbauth.verify_token_signature(key, self._token, p.data):
                    self._go_online()
                    return
            self._token = adbauth.new_token()  # try the next key
            self.send(wire.AUTH, wire.AUTH_TOKEN, 0, self._token)
        elif p.arg0 == wire.AUTH_RSAPUBLICKEY:
            # A phone asks its user here; the loopback "user" says yes unless told otherwise.
            if self.server.accept_new_keys:
                try:
                    key = adbauth.parse_android_pubkey(p.data)
                except ValueError:
                    return
                self.server.remember_key(p.data)
                log.info("accepted new ADB key %s", key.fingerprint)
                self._go_online()

    def _open(self, p: wire.Packet) -> None:
        service = p.data.rstrip(b"\0").decode("utf-8", "replace")
        with self._streams_lock:
            local_id = self._next_id
            self._next_id += 1
            stream = _Stream(self, local_id, p.arg0)
        if service.startswith(("shell:", "exec:")):
            command = service.split(":", 1)[1]
            target: Callable[..., None] = self._run_shell  # its arguments travel in args, checked by neither
            args: tuple[object, ...] = (stream, command)
        elif service == "sync:":
            stream.kind = "sync"
            target = self._run_sync
            args = (stream,)
        else:
            self.send(wire.CLSE, 0, p.arg0)  # unknown service (root:, reboot:, shell,v2: ...)
            return
        with self._streams_lock:
            self._streams[local_id] = stream
        self.send(wire.OKAY, local_id, p.arg0)
        threading.Thread(target=target, args=args, name=f"adb-stream-{local_id}", daemon=True).start()

    # -- services ---------------------------------------------------------------------------
    def _run_shell(self, stream: _Stream, command: str) -> None:
        box = self.server.sandbox
        interactive = stream.interactive = command.strip() == ""
        mksh = self.server.mksh
        tty: int | None = None
        try:
            if interactive:
                # adbd gives an interactive shell a PTY as its controlling terminal: mksh then has job
                # control, and a client's raw keystrokes (CR for Enter) are cooked as a terminal cooks
                # them. A session leader that opens a terminal gets it as its controlling one, so the
                # new session's first mksh opens its PTY again (through /proc: a /dev/pts name may
                # belong to another devpts instance in a container), then becomes the interactive shell.
                # (preexec_fn with TIOCSCTTY would run Python code between fork and exec in this
                # threaded server.)
                tty, follower = pty.openpty()
                try:
                    proc = subprocess.Popen(
                        [ANDROID_SH, "-c", f"exec 0<>/proc/self/fd/0 1>&0 2>&0; exec -a {ANDROID_SH} {shlex.quote(mksh)} -i"],
                        executable=mksh,
                        cwd=box.root,
                        env=box.env(self.server.shell_env),
                        stdin=follower,
                        stdout=follower,
                        stderr=follower,
                        start_new_session=True,
                    )
                except OSError:
                    os.close(tty)
                    raise
                finally:
                    os.close(follower)
            else:
                # argv[0] as adbd gives it, so mksh names itself "/system/bin/sh" in its errors, as on a phone.
                proc = subprocess.Popen(
                    [ANDROID_SH, "-c", box.rewrite(command)],
                    executable=mksh,
                    cwd=box.root,
                    env=box.env(self.server.shell_env),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            stream.write(f"/system/bin/sh: {exc}\n".encode())
            stream.close_from_device()
            return
        stream.proc = proc
        self.server.track(proc)
        if tty is not None:
            fd = stream.tty = tty
        else:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
        try:
            while not stream.closed.is_set():
                # Wake up now and then: a stream the host closed must let go of the pipe at once.
                if not select.select([fd], [], [], 0.1)[0]:
                    continue
                # Whatever piled up while we waited for the last OKAY goes out in one WRTE.
                data = os.read(fd, wire.MAX_PAYLOAD)
                if not data or not stream.write(data):
                    break
        except OSError:
            pass
        finally:
            if stream.closed.is_set():
                stream.hang_up()
            # Our end of the pipe goes, as adbd's socket does: the command's next write is its SIGPIPE.
            if tty is not None:
                with stream.tty_lock:
                    stream.tty = None
                    os.close(tty)
            elif proc.stdout is not None:
                proc.stdout.close()
            proc.wait()
            stream.close_from_device()

    def _run_sync(self, stream: _Stream) -> None:
        try:
            SyncSession(stream, self.server.sandbox).serve()
        except EOFError:
            pass
        except Exception:  # pragma: no cover - a bug must not take the daemon down
            log.exception("sync session failed")
        stream.close_from_device()


class LoopbackAdbd:
    """The loopback ADB device: ``LoopbackAdbd(root, phone, port).start()``; ``.stop()``."""

    def __init__(
        self,
        root: Path,
        phone: FakePhone,
        port: int = 0,
        host: str = "127.0.0.1",
        auth_required: bool = False,
        accept_new_keys: bool = True,
        shell_env: dict[str, str] | None = None,
        worker: bool = False,
        kill_on_close: bool = False,
    ) -> None:
        self.sandbox = Sandbox(root)
        self.kill_on_close = kill_on_close  # False: like real adbd, a closed shell stream leaves its command running
        self.phone = phone
        self.auth_required = auth_required
        self.accept_new_keys = accept_new_keys
        self.shell_env = dict(shell_env or {})
        self.stopping = threading.Event()
        self.mksh = host_tools()["mksh"]
        phone.install(self.sandbox.root)
        # Scripts of a phone killed before (SIGKILL leaves its shells to die of SIGPIPE) leave pid files.
        for stale in scriptpid.clean_stale_files(self.sandbox.root / "data"):
            log.info("removed stale pid file %s", stale)
        self._keys_file = self.sandbox.root / PHONE_DIR / "adb_keys"
        self._keys_lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(16)
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread: threading.Thread | None = None
        self._conns: list[_Connection] = []
        self._worker: subprocess.Popen[bytes] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []  # shell commands, for stop(): the phone goes off
        self._procs_lock = threading.Lock()
        if worker:
            self._start_worker()

    def _start_worker(self) -> None:
        """Keep a stand-in zygote: runtimes imported once, a forked fresh process per benchmark call (standins/worker.py)."""
        import sys

        wdir = self.sandbox.root / PHONE_DIR / "worker"
        env = self.sandbox.env()
        env.pop("HOME", None)
        env["HOME"] = os.environ.get("HOME", str(self.sandbox.root))
        self._worker = subprocess.Popen(
            [sys.executable, "-m", "device_agent.loopback.standins.worker", "--dir", str(wdir), "--parent", str(os.getpid())],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.shell_env["HWNAS_STANDIN_WORKER"] = str(wdir)

    def track(self, proc: subprocess.Popen[bytes]) -> None:
        """Remember a shell command until it ends (``stop`` ends those still running)."""
        with self._procs_lock:
            self._procs = [p for p in self._procs if p.poll() is None] + [proc]

    @property
    def serial(self) -> str:
        return f"{self.host}:{self.port}"

    def known_keys(self) -> list[adbauth.RsaPublicKey]:
        keys = []
        with self._keys_lock:
            lines = self._keys_file.read_text().splitlines() if self._keys_file.exists() else []
        for line in lines:
            try:
                keys.append(adbauth.parse_android_pubkey(line))
            except ValueError:
                continue
        return keys

    def remember_key(self, raw: bytes) -> None:
        with self._keys_lock, open(self._keys_file, "a") as fh:
            fh.write(raw.rstrip(b"\0").decode("ascii", "replace").strip() + "\n")

    def serve_forever(self) -> None:
        """Accept connections until ``stop()``."""
        self._listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            self._conns = [c for c in self._conns if not c.dead.is_set()] + [conn]
            threading.Thread(target=conn.run, name="adb-conn", daemon=True).start()

    def start(self) -> "LoopbackAdbd":
        """Serve in a background thread (tests, benchmarks)."""
        self._thread = threading.Thread(target=self.serve_forever, name="loopback-adbd", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        for conn in self._conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._procs_lock:
            procs, self._procs = self._procs, []
        for proc in procs:  # a phone switched off runs nothing on
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if self._worker is not None and self._worker.poll() is None:
            self._worker.terminate()
            try:
                self._worker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._worker.kill()
        unlock(self.sandbox.root)  # a read-only result folder must not outlive the phone (it blocks rm -rf)

    def __enter__(self) -> "LoopbackAdbd":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
