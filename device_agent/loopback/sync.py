"""The loopback daemon's ``sync:`` service: STAT, LIST, SEND, RECV and QUIT of sync v1 over one stream.

Paths are the phone's, mapped into the sandbox (``Sandbox.host_path``); a SEND lands in a temporary file
renamed into place when whole, as adbd writes it.
"""

from __future__ import annotations

import os
import stat
import struct
from typing import TYPE_CHECKING

from device_agent.loopback.sandbox import Sandbox

if TYPE_CHECKING:
    from device_agent.loopback.adbd import _Stream as Stream

SYNC_DATA_MAX = 64 * 1024


class SyncSession:
    """The sync v1 sub-protocol over one stream (SYNC.TXT, file_sync_protocol.h)."""

    def __init__(self, stream: Stream, sandbox: Sandbox) -> None:
        self.stream = stream
        self.box = sandbox
        self.out = bytearray()

    def _flush(self) -> None:
        if self.out:
            self.stream.write(bytes(self.out))
            self.out.clear()

    def _fail(self, message: str) -> None:
        msg = message.encode()
        self.out += b"FAIL" + struct.pack("<I", len(msg)) + msg
        self._flush()

    def serve(self) -> None:
        read = self.stream.reader.read
        while True:
            header = read(8)
            sid, length = header[:4], struct.unpack("<I", header[4:])[0]
            if sid == b"QUIT":
                return
            if length > 4096:
                self._fail("path too long")
                return
            arg = read(length).decode("utf-8", "surrogateescape")
            if sid == b"STAT":
                self._stat(arg)
            elif sid == b"LIST":
                self._list(arg)
            elif sid == b"SEND":
                self._send(arg)
            elif sid == b"RECV":
                self._recv(arg)
            else:
                self._fail(f"unknown sync request {sid!r}")
                return

    def _stat(self, path: str) -> None:
        try:
            st = os.lstat(self.box.host_path(path))
            self.out += b"STAT" + struct.pack(
                "<3I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF
            )
        except OSError:
            self.out += b"STAT" + bytes(12)  # all zero: does not exist
        self._flush()

    def _list(self, path: str) -> None:
        host = self.box.host_path(path)
        names = [".", ".."]
        try:
            names += sorted(os.listdir(host))
        except OSError:
            names = []
        for name in names:
            try:
                st = os.lstat(host / name)
            except OSError:
                continue
            raw = name.encode("utf-8", "surrogateescape")
            self.out += (
                b"DENT"
                + struct.pack("<4I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF, len(raw))
                + raw
            )
            if len(self.out) >= self.stream.conn.max_payload:
                self._flush()
        self.out += b"DONE" + bytes(16)
        self._flush()

    def _send(self, spec: str) -> None:
        path, _, mode_text = spec.rpartition(",")
        try:
            mode = int(mode_text)
        except ValueError:
            path, mode = spec, 0o100644
        host = self.box.host_path(path)
        error = ""
        tmp = host.with_name(f".{host.name}.part{os.getpid()}")
        fh = None
        try:
            if host.is_dir():
                error = f"{path}: is a directory"
            else:
                host.parent.mkdir(parents=True, exist_ok=True)
                fh = open(tmp, "wb")
        except OSError as exc:
            error = f"{path}: {exc.strerror}"
        read = self.stream.reader.read
        symlink = bytearray() if stat.S_ISLNK(mode) else None
        mtime = 0
        while True:
            header = read(8)
            sid, length = header[:4], struct.unpack("<I", header[4:])[0]
            if sid == b"DATA":
                if length > SYNC_DATA_MAX:
                    error = error or "DATA too large"
                chunk = read(length)
                if symlink is not None:
                    symlink += chunk
                elif fh is not None and not error:
                    fh.write(chunk)
            elif sid == b"DONE":
                mtime = length
                break
            else:
                self._fail(f"unexpected {sid!r} during SEND")
                raise EOFError
        if fh is not None:
            fh.close()
        if not error:
            try:
                if symlink is not None:
                    tmp.unlink(missing_ok=True)
                    host.unlink(missing_ok=True)
                    os.symlink(symlink.decode(), host)
                else:
                    os.chmod(tmp, stat.S_IMODE(mode) or 0o644)
                    os.replace(tmp, host)
                    if mtime:
                        os.utime(host, (mtime, mtime))
            except OSError as exc:
                error = f"{path}: {exc.strerror}"
        if error:
            tmp.unlink(missing_ok=True)
            self._fail(error)
        else:
            self.out += b"OKAY" + bytes(4)
            self._flush()

    def _recv(self, path: str) -> None:
        host = self.box.host_path(path)
        try:
            fh = open(host, "rb")
        except OSError as exc:
            self._fail(f"{path}: {exc.strerror}")
            return
        limit = self.stream.conn.max_payload
        with fh:
            while True:
                chunk = fh.read(SYNC_DATA_MAX)
                if not chunk:
                    break
                if len(self.out) + 8 + len(chunk) > limit:
                    self._flush()
                self.out += b"DATA" + struct.pack("<I", len(chunk)) + chunk
        self.out += b"DONE" + bytes(4)
        self._flush()
