"""An Android phone over ADB, through the ``adb-shell`` package (TCP or USB)."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

from device_agent.errors import ConfigError, DeviceCommandError, DeviceUnreachable
from device_agent.platforms.base import Device, RemoteStat

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 30.0
# How long a phone's "Allow USB debugging?" prompt is waited for: a person has to find the phone,
# unlock it and read the prompt, which 10 s (the old fixed wait) rarely allowed.
DEFAULT_AUTH_TIMEOUT_S = 60.0
USB_EXTRA_HINT = "pip install 'hwnas[usb]' (adb-shell[usb], which brings libusb1)"


class DeviceNotAuthorized(DeviceUnreachable):
    """The phone was reached but did not accept this computer's key in time (nobody tapped *Allow*)."""

    explained = True  # the message says what to do: Agent.connect adds no "check the address" to it


class UsbUnreachable(DeviceUnreachable):
    """A phone on USB that cannot be opened (none attached, held by Google's adb, no permission)."""

    explained = True


def load_signer(key_path: Path | None):  # -> adb_shell.auth.sign_pythonrsa.PythonRSASigner
    """The RSA signer of ``key_path`` (default: ``~/.android/adbkey``, else a key generated once for the agent).

    A key the user named must exist: generating a new one in its place would make the phone ask
    again, or refuse, without saying why. A missing ``adbkey.pub`` beside an existing ``adbkey``
    (copied without it, say) is derived from the private key with adb-shell's own helper, as
    Google's adb does from ``adbkey`` alone.
    """
    from adb_shell.auth.keygen import encode_pubkey, get_user_info, write_public_keyfile
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner
    from pyasn1.error import PyAsn1Error

    from device_agent.adb.keys import load_or_create_signer

    if key_path is None:
        from device_agent.adb.keys import default_key_path

        if not default_key_path().exists():
            return load_or_create_signer(None)  # the agent's own key, generated once (pair written together)
        key_path = default_key_path()
    if not key_path.is_file():
        raise ConfigError(
            f"ADB private key {key_path} not found: give the path of an existing key with --adb-key "
            f"(Google's adb keeps it in ~/.android/adbkey), or make one with: adb keygen {key_path}"
        )
    pub_path = Path(str(key_path) + ".pub")
    try:
        private = key_path.read_text()
        if not pub_path.is_file():
            try:
                write_public_keyfile(str(key_path), str(pub_path))
                log.warning("%s was missing: derived it from %s", pub_path, key_path)
                public = pub_path.read_text()
            except OSError as exc:  # a read-only folder: derive it for this run only
                log.warning(
                    "%s is missing and cannot be written (%s): derived it from %s for this run", pub_path, exc.strerror, key_path
                )
                public = base64.b64encode(encode_pubkey(str(key_path))).decode() + get_user_info()
        else:
            public = pub_path.read_text()
        return PythonRSASigner(public, private)
    except OSError as exc:
        raise ConfigError(f"cannot read ADB key {key_path}: {exc.strerror}") from None
    except (ValueError, TypeError, IndexError, PyAsn1Error) as exc:  # not PEM / not RSA: what rsa, pyasn1 and
        # cryptography raise for it (UnicodeDecodeError, a binary file, is a ValueError)
        raise ConfigError(
            f'{key_path} is not an ADB private key (PEM, "BEGIN PRIVATE KEY"): {exc}; make one with: adb keygen {key_path}'
        ) from None


def _tcp_transport_class():  # -> type[TcpTransport]
    from adb_shell.exceptions import TcpTimeoutException
    from adb_shell.transport.tcp_transport import TcpTransport

    class _Tcp(TcpTransport):
        """adb-shell's TCP transport, plus two fixes.

        * A closed socket reads as ``b""``; adb-shell then spins until its read timeout
          (which we raise for long benchmark runs), so a dead device would go unnoticed for
          minutes. Here it is an error at once.
        * TCP_NODELAY: adb-shell sends header and payload in two writes; with Nagle and
          delayed ACKs each packet stalls ~40 ms.
        """

        def connect(self, transport_timeout_s):
            super().connect(transport_timeout_s)
            self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def bulk_read(self, numbytes, transport_timeout_s):
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise TcpTimeoutException(f"connection to {self._host}:{self._port} closed by the device")
            return data

    return _Tcp


def _errors() -> tuple[type[BaseException], ...]:
    from adb_shell import exceptions as ex

    errors: tuple[type[BaseException], ...] = (
        ex.AdbConnectionError,
        ex.AdbTimeoutError,
        ex.TcpTimeoutException,
        ex.InvalidResponseError,
        ex.InvalidCommandError,
        ex.InvalidChecksumError,
        ex.DeviceAuthError,
        ex.UsbReadFailedError,
        ex.UsbWriteFailedError,
        ex.UsbDeviceNotFoundError,
        OSError,
        ConnectionError,
    )
    try:  # libusb's own errors (access denied, busy, device gone) when the usb extra is installed
        import usb1

        errors += (usb1.USBError,)
    except (ImportError, OSError):
        pass
    return errors


def _usb_message(exc: BaseException, serial: str | None) -> str:
    """One line on a USB connection that failed, with what to do, from adb-shell's or libusb's error."""
    text = str(exc).lower()
    name = serial or "usb"
    if "busy" in text:
        return f"cannot connect to {name}: {exc} (is Google's adb server holding the phone? run: adb kill-server)"
    if "access" in text or "permission" in text:
        return (
            f"cannot open {name}: {exc} (no permission on the USB device: add a udev rule for the phone, "
            "see docs/device-agent.md)"
        )
    if "no device" in text or "not found" in text:
        what = f"{serial} on USB: no ADB device with that serial is" if serial else "a phone on USB: no ADB device is"
        return (
            f"cannot connect to {what} attached — plug the phone in, enable USB debugging (Developer options), "
            "check that `adb devices` lists it, then run `adb kill-server` (only one program can hold the phone)"
        )
    return f"cannot connect to {name}: {exc}"


class AdbDevice(Device):
    """``AdbDevice("192.168.1.20:5555")`` (``adb tcpip``), ``AdbDevice("R58N12ABCDE")`` (that phone on USB)
    or ``AdbDevice(None, usb=True)`` (the phone on USB)."""

    kind = "adb"

    def __init__(
        self,
        serial: str | None,
        key_path: Path | None = None,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        auth_timeout_s: float = DEFAULT_AUTH_TIMEOUT_S,
        usb: bool = False,
    ) -> None:
        host, sep, port = (serial or "").rpartition(":")
        self._tcp = (host, int(port)) if sep and port.isdigit() else None
        if self._tcp is not None and usb:
            raise ConfigError(f"{serial} is a network address; --usb takes a USB serial (as `adb devices` lists it)")
        if self._tcp is None and not serial and not usb:
            raise ConfigError("give --serial SERIAL (host:port or a USB serial) or --usb")
        self._usb_serial = None if self._tcp is not None else (serial or None)
        super().__init__(serial or "usb")
        self.key_path = key_path
        self.read_timeout_s = read_timeout_s
        self.auth_timeout_s = auth_timeout_s
        self._prompted = False  # set by _ask_user: the phone showed its prompt during this connect
        self._signer = None  # loaded at the first connect, kept for reconnects
        self._dev = None

    def _make(self):
        from adb_shell.adb_device import AdbDevice as _AdbDevice

        if self._tcp is not None:
            return _AdbDevice(transport=_tcp_transport_class()(*self._tcp))
        from adb_shell import adb_device

        if getattr(adb_device, "UsbTransport", None) is None:  # adb-shell without its usb extra (libusb1)
            raise ConfigError(
                f"a phone on USB ({self.serial}) needs libusb1: {USB_EXTRA_HINT} "
                "(or run `adb tcpip 5555` once and use --serial PHONE-IP:5555)"
            )
        # serial None: the first ADB device on USB, as `adb -d` picks it
        return adb_device.AdbDeviceUsb(serial=self._usb_serial)

    def _ask_user(self, _dev: object) -> None:
        """adb-shell calls this right before it offers our public key, i.e. when the phone shows its prompt."""
        self._prompted = True
        log.warning(
            '%s asks whether to trust this computer: tap *Allow* on the phone\'s "Allow USB debugging?" '
            'prompt (tick "Always allow from this computer" so it is not asked again); waiting %g s '
            "(--auth-timeout-s)",
            self.serial,
            self.auth_timeout_s,
        )

    def connect(self) -> None:
        if self._dev is not None and self._dev.available:
            return
        if self._signer is None:
            self._signer = load_signer(self.key_path)
        self._prompted = False
        try:
            dev = self._make()
            dev.connect(
                rsa_keys=[self._signer],
                transport_timeout_s=CONNECT_TIMEOUT_S,
                auth_timeout_s=self.auth_timeout_s,
                read_timeout_s=CONNECT_TIMEOUT_S,
                auth_callback=self._ask_user,
            )
        except ConfigError:
            raise
        except _errors() as exc:
            self._dev = None
            if self._prompted:
                raise DeviceNotAuthorized(
                    f"{self.serial} did not accept this computer's key within {self.auth_timeout_s:g} s: unlock "
                    'the phone, tap *Allow* on "Allow USB debugging?" (tick "Always allow from this computer") '
                    "and run again, or give more time with --auth-timeout-s"
                ) from None
            if self._tcp is None:
                raise UsbUnreachable(_usb_message(exc, self._usb_serial)) from None
            raise DeviceUnreachable(f"cannot connect to {self.serial}: {exc}") from None
        self._dev = dev

    def close(self) -> None:
        if self._dev is not None:
            try:
                self._dev.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not fail
                pass
        self._dev = None

    def _ready(self):
        if self._dev is None or not self._dev.available:
            self.connect()
        return self._dev

    def _timeouts(self, timeout_s: float | None) -> dict[str, float]:
        t = float(timeout_s or self.read_timeout_s)
        # adb-shell caps the transport timeout by the read timeout; both bound *silence*.
        return {"transport_timeout_s": t, "read_timeout_s": t}

    def _call(self, what: str, fn, *args, **kwargs):
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
