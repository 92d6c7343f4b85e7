"""Progress bars for the search and training loops (rich, on stderr), and a one-line summary per epoch.

``EpochProgress`` is the app's ``search.hooks.ProgressFactory`` and ``JobBar`` its ``JobPoll``: the commands pass
them to the library, which shows nothing by itself.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def format_cost(value: float | None, unit: str) -> str:
    """A cost with its unit, short: 1.23M MACs, 0.412 ms."""
    if value is None:
        return "-"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor and unit.lower() != "ms":
            return f"{value / factor:.3g}{suffix} {unit}"
    return f"{value:.4g} {unit}"


class EpochProgress:
    """One bar per phase (weights, θ, training) showing loss, accuracy, expected cost and τ."""

    def __init__(self, enabled: bool = True, unit: str = "") -> None:
        self.enabled = enabled
        self.unit = unit
        self.console = Console(stderr=True)
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> "EpochProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
            self._progress = None

    def start(self, label: str, total: int) -> None:
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(label, total=total, stats="")

    def advance(self, **stats: float) -> None:
        if self._progress is None or self._task is None:
            return
        parts = []
        if "loss" in stats:
            parts.append(f"loss {stats['loss']:.3f}")
        if "acc" in stats:
            parts.append(f"acc {stats['acc']:.3f}")
        if "cost" in stats:
            parts.append(f"exp.cost {format_cost(stats['cost'], self.unit)}")
        if "tau" in stats:
            parts.append(f"τ {stats['tau']:.3f}")
        self._progress.update(self._task, advance=1, stats="  ".join(parts))

    def epoch_done(self, entry: dict[str, Any]) -> None:
        """Print the epoch's summary line (kept on screen above the bars)."""
        if not self.enabled:
            return
        theta = f"  θ-acc {entry['theta_acc']:.3f}" if entry.get("theta_acc") is not None else "  (warm-up)"
        self.console.print(
            f"epoch {entry['epoch']}: train-acc {entry['train_acc']:.3f}{theta}  val-acc {entry['val_acc']:.3f}  "
            f"exp.cost {format_cost(entry['expected_cost'], self.unit)}  argmax {format_cost(entry['argmax_cost'], self.unit)}"
            f"  τ {entry['tau']:.3f}  {entry['seconds']:.0f}s",
            markup=False,
            soft_wrap=True,
        )

    def line(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, markup=False, soft_wrap=True)


class JobBar:
    """A bar for one profiling job, fed by ``search.lut.wait_for_job``'s ``on_poll``.

    The bar opens at the first poll, not on entry, so that a caller may hold it open across work that prints
    its own lines before the job exists (``hwnas validate``); it closes once the job is done or failed.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> "JobBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def __call__(self, job: Any) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]job {task.fields[job]}[/] {task.fields[state]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("measuring", total=max(job.total, 1), job=job.id, state=job.state.value)
        self._progress.update(self._task, completed=job.done + job.failed, state=job.state.value)
        if job.state.value in ("done", "failed"):
            self._close()

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None
