"""ADB wire protocol v1: the 24-byte message header, constants, framing on a socket.

Facts (AOSP protocol.txt, adb.h): six little-endian uint32 ``command, arg0, arg1,
data_length, data_check, magic``; ``magic = command ^ 0xFFFFFFFF``; ``data_check`` is the
unsigned byte sum of the payload. We always send the real sum (adb_shell verifies it) and
never require one (Google's host sends 0 once it negotiated version 0x01000001).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass


def _cmd(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


CNXN = _cmd(b"CNXN")
AUTH = _cmd(b"AUTH")
OPEN = _cmd(b"OPEN")
OKAY = _cmd(b"OKAY")
CLSE = _cmd(b"CLSE")
WRTE = _cmd(b"WRTE")
STLS = _cmd(b"STLS")
NAMES = {CNXN: "CNXN", AUTH: "AUTH", OPEN: "OPEN", OKAY: "OKAY", CLSE: "CLSE", WRTE: "WRTE", STLS: "STLS"}

VERSION = 0x01000001  # A_VERSION (skip-checksum era); we still send sums
MAX_PAYLOAD = 1024 * 1024
MAX_PAYLOAD_V1 = 4096

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3
TOKEN_SIZE = 20

HEADER = struct.Struct("<6I")


class ProtocolError(Exception):
    """A malformed packet (bad magic, oversized payload) or a closed peer."""


@dataclass(frozen=True)
class Packet:
    """One ADB message."""

    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return NAMES.get(self.command, hex(self.command))


def checksum(data: bytes) -> int:
    """The ADB payload check: the byte sum modulo 2**32."""
    return sum(data) & 0xFFFFFFFF


def encode(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    """Header plus payload, ready for ``sendall``."""
    return HEADER.pack(command, arg0, arg1, len(data), checksum(data), command ^ 0xFFFFFFFF) + data


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProtocolError("connection closed by peer")
        buf += chunk
    return bytes(buf)


def _quickack(sock: socket.socket) -> None:
    # adb_shell writes header and payload in two send() calls without TCP_NODELAY; Nagle on the
    # client plus the kernel's delayed ACK stalls every packet ~40 ms (shell() 44 ms, a 5 MB push
    # at maxdata 4096: 113 s; with QUICKACK 1.7 ms and 0.39 s). QUICKACK is not sticky on Linux:
    # set it after every read.
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:
            pass


def read_packet(sock: socket.socket, max_payload: int = MAX_PAYLOAD) -> Packet:
    """Read one message; raise ``ProtocolError`` on a closed socket or a corrupt header."""
    header = _recv_exact(sock, HEADER.size)
    _quickack(sock)
    command, arg0, arg1, length, _check, magic = HEADER.unpack(header)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic for command {command:#x}")
    if length > max_payload:
        raise ProtocolError(f"payload of {length} bytes exceeds {max_payload}")
    data = _recv_exact(sock, length) if length else b""
    if length:
        _quickack(sock)
    return Packet(command, arg0, arg1, data)
