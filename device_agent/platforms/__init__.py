"""One device interface, two backends: an Android phone over ADB, or the host itself.

The job loop, the runners and the device-info reader only see ``Device`` (FAI-PEP's
"platform" shape: run, push, pull, getprop), never which backend is behind it.
"""

from __future__ import annotations

from device_agent.platforms.base import CommandResult, Device, RemoteStat

__all__ = ["CommandResult", "Device", "RemoteStat", "open_device"]


def open_device(
    serial: str | None,
    *,
    local: bool = False,
    key_path: str | None = None,
    usb: bool = False,
    auth_timeout_s: float | None = None,
) -> Device:
    """``host:port`` → ADB over TCP; any other serial, or ``usb`` → ADB over USB; ``local`` → this host.

    ``auth_timeout_s``: how long the phone's "Allow USB debugging?" prompt is waited for (ADB only).
    """
    if local:
        from device_agent.platforms.local import LocalDevice

        return LocalDevice()
    if not serial and not usb:
        from device_agent.errors import ConfigError

        raise ConfigError("give --serial SERIAL (host:port or a USB serial), --usb or --local")
    from pathlib import Path

    from device_agent.platforms.adb import DEFAULT_AUTH_TIMEOUT_S, AdbDevice

    return AdbDevice(
        serial,
        key_path=Path(key_path) if key_path else None,
        usb=usb,
        auth_timeout_s=DEFAULT_AUTH_TIMEOUT_S if auth_timeout_s is None else auth_timeout_s,
    )
