"""Typed errors of the device agent; the CLI turns each into one clear line (no traceback)."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error a user can hit; ``str(exc)`` is the one line the CLI prints."""

    exit_code = 1


class ConfigError(AgentError):
    """A bad option or input file (unknown runtime, unreadable keys file, missing binary...)."""

    exit_code = 2


class DeviceUnreachable(AgentError):
    """The device cannot be reached (connection refused, dropped, timed out); worth a reconnect."""

    exit_code = 3


class DeviceCommandError(AgentError):
    """A command on the device ran but failed (non-zero exit code, unparseable output)."""

    def __init__(self, message: str, output: str = "", rc: int | None = None) -> None:
        super().__init__(message)
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


class ServerError(AgentError):
    """The profiler server rejected a request or stayed unreachable after retries."""

    exit_code = 4
