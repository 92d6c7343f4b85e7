"""A dropped device reconnected with back-off, for as long as ``--reconnect-s`` allows (a reboot, a Wi-Fi outage)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from device_agent.config import AgentConfig
from device_agent.errors import DeviceUnreachable
from device_agent.platforms.base import Device

log = logging.getLogger("device_agent")
T = TypeVar("T")


def with_reconnect(device: Device, cfg: AgentConfig, stop: threading.Event, action: Callable[[], T], first: bool = False) -> T:
    """Run ``action``; while the device is unreachable, reconnect with back-off for ``cfg.reconnect_s``.

    ``first``: the connection is fresh, so the first try goes without a reconnect. A deadline in
    time rather than a count of attempts: what has to be outlasted is a reboot or an outage of so
    many seconds, and one attempt can take from a refused connection's microseconds to a silent
    network's connect timeout. At least one reconnect is always tried.
    """
    start = time.monotonic()
    deadline = start + cfg.reconnect_s
    delay = cfg.reconnect_first_delay_s
    reconnects = 0  # reconnects tried
    failures = 0
    while True:
        try:
            if failures or not first:
                reconnects += 1
                device.reconnect()
                if failures > 1:  # the first reconnect is routine (a dropped socket): report only the end of an outage
                    log.info("reconnected to %s after %.0f s", device.serial, time.monotonic() - start)
            return action()
        except DeviceUnreachable as exc:
            failures += 1
            now = time.monotonic()
            if stop.is_set():
                raise DeviceUnreachable(f"{device.serial}: stopped while reconnecting ({exc})") from None
            if reconnects and now >= deadline:
                raise DeviceUnreachable(
                    f"{device.serial} unreachable for {now - start:.0f} s ({reconnects} reconnect(s); "
                    f"--reconnect-s {cfg.reconnect_s:g}): {exc}"
                ) from None
            # A fresh connection that broke is tried again at once; after that the waits double.
            pause = 0.0 if not reconnects else max(0.0, min(delay, deadline - now))
            log.warning(
                "device %s unreachable (%s); reconnecting in %.1f s (waited %.0f s of %g s, --reconnect-s)",
                device.serial,
                exc,
                pause,
                now - start,
                cfg.reconnect_s,
            )
            if stop.wait(pause):
                raise DeviceUnreachable(f"{device.serial}: stopped while reconnecting ({exc})") from None
            if reconnects:
                delay = min(cfg.reconnect_max_delay_s, delay * 2)


__all__ = ["with_reconnect"]
