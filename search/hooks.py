"""How the library reports while it runs, without knowing who listens: progress and job-poll callbacks.

The library (search, training, profiling jobs) calls these; the application (``search.app``) passes
in the implementations — rich progress bars on stderr, plots written after a search — so that the
library never imports the application. Every hook has a no-op default: a library caller that passes
nothing gets a silent run.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol


class Progress(Protocol):
    """One loop's progress: a bar per phase, a summary per epoch, free lines above the bars."""

    def start(self, label: str, total: int) -> None: ...

    def advance(self, **stats: float) -> None: ...

    def epoch_done(self, entry: dict[str, Any]) -> None: ...

    def line(self, text: str) -> None: ...


class ProgressFactory(Protocol):
    """Opens a ``Progress`` for one run; ``enabled`` False must show nothing, ``unit`` is the cost's unit."""

    def __call__(self, enabled: bool = True, unit: str = "") -> AbstractContextManager[Progress]: ...


class NoProgress:
    """Shows nothing: the library's default."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def start(self, label: str, total: int) -> None:
        return None

    def advance(self, **stats: float) -> None:
        return None

    def epoch_done(self, entry: dict[str, Any]) -> None:
        return None

    def line(self, text: str) -> None:
        return None


def no_progress(enabled: bool = True, unit: str = "") -> NoProgress:
    """The default ``ProgressFactory``."""
    return NoProgress()


# Called with each polled job (``hwnas.schemas.JobStatus``) while ``search.lut.wait_for_job`` waits.
JobPoll = Callable[[Any], None]
# Called by rank 0 with the run folder once a search has written its results (the app draws its plots there); what it
# returns (plot_search: the files drawn) is ignored.
RunFinished = Callable[[Path], object]
