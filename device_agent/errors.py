"""Typed errors of the device agent; the CLI turns each into one clear line (no traceback)."""

from __future__ import annotations

import ast
import re

# ``str()`` of an exception that carries bytes, e.g. adb-shell's PushFailedError(bytearray(b'...')).
_BYTES_REPR = re.compile(
    r"""bytearray\((b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*")\)|(?<![\w'"])(b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*")"""
)


def as_text(value: object) -> str:
    """A message as text: bytes decoded (UTF-8, undecodable bytes replaced), and the ``bytearray(b'...')`` /
    ``b'...'`` reprs a library's exception put into its ``str()`` turned back into the text they hold."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace").rstrip("\0").strip()

    def decode(m: re.Match[str]) -> str:
        try:
            raw = ast.literal_eval(m.group(1) or m.group(2))
        except (ValueError, SyntaxError):
            return m.group(0)
        return bytes(raw).decode("utf-8", "replace").rstrip("\0").strip()

    return _BYTES_REPR.sub(decode, str(value))


class AgentError(Exception):
    """Base of every error a user can hit; ``str(exc)`` is the one line the CLI prints."""

    exit_code = 1


class ConfigError(AgentError):
    """A bad option or input file (unknown runtime, unreadable keys file, missing binary...)."""

    exit_code = 2


class DeviceUnreachable(AgentError):
    """The device cannot be reached (connection refused, dropped, timed out); worth a reconnect."""

    exit_code = 3
    explained = False  # True: the message says what to do itself (an RSA prompt, USB), no "check the address"


class DeviceCommandError(AgentError):
    """A command on the device ran but failed (non-zero exit code, unparseable output)."""

    def __init__(self, message: str, output: str = "", rc: int | None = None) -> None:
        super().__init__(as_text(message))  # a push error's message came as bytes: say it as text
        self.output = output
        self.rc = rc


class BenchmarkError(AgentError):
    """Measuring one operator failed; the job records it with ``POST /jobs/{id}/fail``."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class ModelBuildError(BenchmarkError):
    """The operator library could not build or export the model of a key."""


class DeviceFault(AgentError):
    """The benchmark program cannot run on the device even after its files were pushed again; the job goes back."""

    exit_code = 5


class SetupFault(DeviceFault):
    """The program runs but refuses how the agent calls it (a flag its build predates, the model format); the job
    goes back at once and the message names the build that fixes it (faults.setup_fix)."""


class ServerError(AgentError):
    """The profiler server rejected a request or stayed unreachable after retries."""

    exit_code = 4
