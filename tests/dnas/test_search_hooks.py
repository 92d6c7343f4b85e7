"""What the library shows goes through search.hooks: a search reports each phase, step and epoch to the progress it
is handed, shows nothing when the run says no progress, and calls on_finish with its folder once it has written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.hooks import NoProgress, no_progress
from search.search_config import SearchConfig
from search.searcher import run_search


class Recorder:
    """A ``search.hooks.Progress`` that keeps what it is told; ``opened`` holds each (enabled, unit) it was opened with."""

    def __init__(self) -> None:
        self.opened: list[tuple[bool, str]] = []
        self.started: list[tuple[str, int]] = []
        self.steps = 0
        self.epochs: list[dict[str, Any]] = []

    def __call__(self, enabled: bool = True, unit: str = "") -> Any:
        self.opened.append((enabled, unit))
        return self if enabled else NoProgress()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def start(self, label: str, total: int) -> None:
        self.started.append((label, total))

    def advance(self, **stats: float) -> None:
        assert {"loss", "acc", "cost", "tau"} <= set(stats)
        self.steps += 1

    def epoch_done(self, entry: dict[str, Any]) -> None:
        self.epochs.append(entry)

    def line(self, text: str) -> None:
        pass


def _config(out: Path, space: Path, progress: bool) -> SearchConfig:
    return SearchConfig.from_flat(
        out=str(out), space=str(space), subset=400, val_subset=100, epochs=2, batch_size=32, progress=progress, plots=False
    )


def test_a_search_reports_to_the_progress_and_the_finish_hook_it_is_handed(tmp_path: Path, tiny_space: Path) -> None:
    bars, finished = Recorder(), []
    result = run_search(_config(tmp_path / "run", tiny_space, True), progress=bars, on_finish=finished.append)
    assert bars.opened == [(True, result.unit)]
    labels = [label for label, _ in bars.started]
    assert [la for la in labels if la.endswith("weights")] == ["epoch 1 weights", "epoch 2 weights"]
    assert "epoch 2 θ" in labels  # after the warm-up
    assert bars.steps == sum(total for _, total in bars.started) > 0
    assert [e["epoch"] for e in bars.epochs] == [e["epoch"] for e in result.history] and len(bars.epochs) == 2
    assert finished == [result.out] and (result.out / "result.json").is_file()  # called after the results are written


def test_a_search_without_progress_opens_it_disabled(tmp_path: Path, tiny_space: Path) -> None:
    bars = Recorder()
    run_search(_config(tmp_path / "run", tiny_space, False), progress=bars)
    assert [enabled for enabled, _ in bars.opened] == [False] and not bars.started and not bars.epochs


def test_the_library_default_is_silent(tmp_path: Path, tiny_space: Path, capfd) -> None:
    result = run_search(_config(tmp_path / "run", tiny_space, True))  # progress on, but nobody handed a display
    assert len(result.history) == 2
    assert capfd.readouterr().err == ""
    assert isinstance(no_progress(), NoProgress)
