"""One device interface, two backends: an Android phone over ADB, or the host itself.

The job loop, the runners and the device-info reader only see ``Device`` (FAI-PEP's
"platform" shape: run, push, pull, getprop), never which backend is behind it.
"""

from __future__ import annotations

from device_agent.platforms.base import CommandResult, Device, RemoteStat

__all__ = ["CommandResult", "Device", "RemoteStat", "open_device"]


def open_device(serial: str | None, *, local: bool = False, key_path: str | None = None) -> Device:
    """``host:port`` → ADB over TCP; any other serial → ADB over USB; ``local`` → this host."""
    if local:
        from device_agent.platforms.local import LocalDevice

        return LocalDevice()
    if not serial:
        from device_agent.errors import ConfigError

        raise ConfigError("give --serial SERIAL (host:port or a USB serial) or --local")
    from pathlib import Path

    from device_agent.platforms.adb import AdbDevice

    return AdbDevice(serial, key_path=Path(key_path) if key_path else None)
