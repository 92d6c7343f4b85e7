"""Progress bars on a terminal (rich), quiet otherwise (logs carry the story)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported only when a terminal shows the bar
    from rich.progress import Progress as RichProgress, TaskID


class Progress:
    """``with Progress("measuring", total=n) as bar: bar.advance(k)``; ``bar.burst(done, total)`` for the inner batch."""

    def __init__(self, description: str, total: int | None = None) -> None:
        self.description = description
        self.total = total
        self._progress: RichProgress | None = None
        self._task: TaskID | None = None
        self._inner: TaskID | None = None

    def __enter__(self) -> "Progress":
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

            progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            progress.start()
            self._task = progress.add_task(self.description, total=self.total)
            self._progress = progress
        return self

    def update(self, done: int, total: int) -> None:
        if self._progress is not None and self._task is not None:  # set together in __enter__
            self._progress.update(self._task, completed=done, total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def burst(self, done: int, total: int) -> None:
        """Progress of the bursts of the current batch (a second, inner bar)."""
        if self._progress is None:
            return
        if self._inner is None:
            self._inner = self._progress.add_task("  bursts", total=total)
        self._progress.update(self._inner, completed=done, total=total)
        if done >= total:
            self._progress.remove_task(self._inner)
            self._inner = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
