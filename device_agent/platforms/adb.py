"""An Android phone over ADB, through the ``adb-shell`` package (TCP or USB)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

from device_agent.errors import ConfigError, DeviceCommandError, DeviceUnreachable
from device_agent.platforms.base import Device, RemoteStat

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 30.0


def _tcp_transport_class():  # -> type[TcpTransport]
    from adb_shell.exceptions import TcpTimeoutException
    from adb_shell.transport.tcp_transport import TcpTransport

    class _Tcp(TcpTransport):  # type: ignore[misc]
        """adb-shell's TCP transport, plus two fixes.

        * A closed socket reads as ``b""``; adb-shell then spins until its read timeout
          (which we raise for long benchmark runs), so a dead device would go unnoticed for
          minutes. Here it is an error at once.
        * TCP_NODELAY: adb-shell sends header and payload in two writes; with Nagle and
          delayed ACKs each packet stalls ~40 ms.
        """

        def connect(self, transport_timeout_s):  # noqa: ANN001
            super().connect(transport_timeout_s)
            self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def bulk_read(self, numbytes, transport_timeout_s):  # noqa: ANN001
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise TcpTimeoutException(f"connection to {self._host}:{self._port} closed by the device")
            return data

    return _Tcp


def _errors() -> tuple[type[BaseException], ...]:
    from adb_shell import exceptions as ex

    return (ex.AdbConnectionError, ex.AdbTimeoutError, ex.TcpTimeoutException, ex.InvalidResponseError,
            ex.InvalidCommandError, ex.InvalidChecksumError, ex.DeviceAuthError, ex.UsbReadFailedError,
            ex.UsbWriteFailedError, ex.UsbDeviceNotFoundError, OSError, ConnectionError)


class AdbDevice(Device):
    """``AdbDevice("192.168.1.20:5555")`` (``adb tcpip``) or ``AdbDevice("R58N12ABCDE")`` (USB)."""

    kind = "adb"

    def __init__(self, serial: str, key_path: Path | None = None, read_timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> None:
        super().__init__(serial)
        self.key_path = key_path
        self.read_timeout_s = read_timeout_s
        self._dev = None
        host, sep, port = serial.rpartition(":")
        self._tcp = (host, int(port)) if sep and port.isdigit() else None

    def _make(self):  # noqa: ANN202
        from adb_shell.adb_device import AdbDevice as _AdbDevice

        if self._tcp is not None:
            return _AdbDevice(transport=_tcp_transport_class()(*self._tcp))
        from adb_shell import adb_device

        if getattr(adb_device, "UsbTransport", None) is None:  # adb-shell without its usb extra
            raise ConfigError(f"{self.serial!r} is a USB serial and USB needs: pip install 'adb-shell[usb]' "
                              "(or use adb tcpip and --serial host:port)")
        return adb_device.AdbDeviceUsb(serial=self.serial)

    def connect(self) -> None:
        if self._dev is not None and self._dev.available:
            return
        from device_agent.adb.auth import load_or_create_signer

        try:
            signer = load_or_create_signer(self.key_path)
            dev = self._make()
            dev.connect(rsa_keys=[signer], transport_timeout_s=CONNECT_TIMEOUT_S, auth_timeout_s=CONNECT_TIMEOUT_S,
                        read_timeout_s=CONNECT_TIMEOUT_S)
        except ConfigError:
            raise
        except _errors() as exc:
            self._dev = None
            hint = ""
            if self._tcp is None and "busy" in str(exc).lower():
                hint = " (is Google's adb server holding the phone? run: adb kill-server)"
            raise DeviceUnreachable(f"cannot connect to {self.serial}: {exc}{hint}") from None
        self._dev = dev

    def close(self) -> None:
        if self._dev is not None:
            try:
                self._dev.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not fail
                pass
        self._dev = None

    def _ready(self):  # noqa: ANN202
        if self._dev is None or not self._dev.available:
            self.connect()
        return self._dev

    def _timeouts(self, timeout_s: float | None) -> dict[str, float]:
        t = float(timeout_s or self.read_timeout_s)
        # adb-shell caps the transport timeout by the read timeout; both bound *silence*.
        return {"transport_timeout_s": t, "read_timeout_s": t}

    def _call(self, what: str, fn, *args, **kwargs):  # noqa: ANN001, ANN202
        try:
            return fn(*args, **kwargs)
        except _errors() as exc:
            self.close()
            raise DeviceUnreachable(f"{self.serial}: {what} failed: {exc}") from None

    def shell(self, command: str, timeout_s: float | None = None) -> str:
        dev = self._ready()
        return self._call("shell", dev.shell, command, **self._timeouts(timeout_s))

    def stream(self, command: str, timeout_s: float | None = None) -> Iterator[str]:
        dev = self._ready()
        gen = dev.streaming_shell(command, **self._timeouts(timeout_s))
        while True:
            try:
                chunk = next(gen)
            except StopIteration:
                return
            except _errors() as exc:
                self.close()
                raise DeviceUnreachable(f"{self.serial}: shell stream failed: {exc}") from None
            yield chunk

    def push(self, local: Path, remote: str) -> None:
        from adb_shell.exceptions import PushFailedError

        dev = self._ready()
        # adbd creates missing parent folders on SEND, so no mkdir round trip.
        mode = 0o100000 | (Path(local).stat().st_mode & 0o777)
        try:
            self._call("push", dev.push, str(local), remote, st_mode=mode, **self._timeouts(None))
        except PushFailedError as exc:
            raise DeviceCommandError(f"push of {local} to {self.serial}:{remote} failed: {exc}") from None

    def pull(self, remote: str, local: Path) -> None:
        from adb_shell.exceptions import AdbCommandFailureException

        dev = self._ready()
        try:
            self._call("pull", dev.pull, remote, str(local), **self._timeouts(None))
        except AdbCommandFailureException as exc:
            raise DeviceCommandError(f"pull of {self.serial}:{remote} failed: {exc}") from None

    def stat(self, remote: str) -> RemoteStat | None:
        dev = self._ready()
        mode, size, mtime = self._call("stat", dev.stat, remote, **self._timeouts(None))
        if mode == 0 and size == 0 and mtime == 0:
            return None
        return RemoteStat(mode, size, mtime)
