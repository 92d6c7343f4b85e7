"""The ``Device`` interface and what every backend shares (exit codes through a marker)."""

from __future__ import annotations

import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from device_agent.errors import DeviceCommandError


@dataclass(frozen=True)
class CommandResult:
    """Output (stdout and stderr merged, as ``adb shell`` gives them) and the exit code."""

    output: str
    rc: int


@dataclass(frozen=True)
class RemoteStat:
    mode: int
    size: int
    mtime: int


def new_marker(prefix: str = "HWNAS") -> str:
    """A line marker no program output will contain by accident."""
    return f"@@{prefix}{secrets.token_hex(4)}@@"


class Device(ABC):
    """A place where models run: run commands, move files, read properties."""

    #: "adb" or "local"
    kind: str = ""
    #: where the agent keeps its binaries and models on the device
    workdir: str = "/data/local/tmp/hwnas"

    def __init__(self, serial: str) -> None:
        self.serial = serial

    # -- what a backend provides ------------------------------------------------------------
    @abstractmethod
    def connect(self) -> None:
        """Open the connection (idempotent); raise ``DeviceUnreachable`` when the device is not there."""

    @abstractmethod
    def close(self) -> None:
        """Drop the connection."""

    @abstractmethod
    def shell(self, command: str, timeout_s: float | None = None) -> str:
        """Run ``command`` with the device's ``sh``; output only (ADB v1 gives no exit code)."""

    @abstractmethod
    def stream(self, command: str, timeout_s: float | None = None) -> Iterator[str]:
        """Like ``shell`` but yield output as it arrives; ``timeout_s`` bounds silence between chunks."""

    @abstractmethod
    def push(self, local: Path, remote: str) -> None:
        """Copy a host file to the device (parents created), keeping its permission bits."""

    @abstractmethod
    def pull(self, remote: str, local: Path) -> None:
        """Copy a device file to the host."""

    @abstractmethod
    def stat(self, remote: str) -> RemoteStat | None:
        """Mode, size and mtime of a device path, or ``None`` when it does not exist."""

    # -- shared on top of it ----------------------------------------------------------------
    def reconnect(self) -> None:
        """Close and connect again (one attempt; the caller owns the back-off)."""
        self.close()
        self.connect()

    def run(self, command: str, timeout_s: float | None = None, check: bool = True) -> CommandResult:
        """Run ``command`` and recover its exit code from an ``echo <marker>$?`` line."""
        marker = new_marker("RC")
        # A subshell, so an 'exit' inside the command still reaches the marker line.
        out = self.shell(f"(\n{command}\n)\necho {marker}$?", timeout_s=timeout_s)
        text, rc = split_exit_code(out, marker)
        if check and rc != 0:
            raise DeviceCommandError(
                f"command failed on {self.serial} (exit {rc}): {command[:200]}\n{text[-2000:]}", output=text, rc=rc
            )
        return CommandResult(text, rc)

    def getprop(self) -> dict[str, str]:
        """All system properties (``getprop``), parsed."""
        from device_agent.parsers import parse_getprop

        return parse_getprop(self.shell("getprop"))

    def __enter__(self) -> "Device":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split_exit_code(output: str, marker: str) -> tuple[str, int]:
    """Split ``...<marker><rc>`` into the output before the marker line and the exit code."""
    matches = list(re.finditer(re.escape(marker) + r"(\d+)", output))
    m = matches[-1] if matches else None
    if m is None:
        raise DeviceCommandError(f"no exit code marker in device output (command cut short?): {output[-500:]!r}", output=output)
    return output[: m.start()].rstrip("\n") + ("\n" if output[: m.start()].strip() else ""), int(m.group(1))
