"""The runner interface: measure bursts of model runs, in the order given."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from device_agent.errors import ConfigError
from device_agent.parsers import ThermalState

if TYPE_CHECKING:
    from hwnas.schemas import OperatorBreakdown

#: runtime name -> (export format of search.export, model file suffix): measured on phones and on the host,
#: served by an agent by default
RUNTIMES: dict[str, tuple[str, str]] = {"onnxruntime": ("onnx", ".onnx"), "torchscript": ("torchscript", ".ptl")}
#: Served only when asked for with --runtime (the package is an optional extra, ``hwnas[executorch]``, and its
#: exports take seconds per key): measured on the host in-process, on phones by ExecuTorch's executor_runner.
OPTIONAL_RUNTIMES: dict[str, tuple[str, str]] = {"executorch": ("pte", ".pte")}
#: runtime name -> the benchmark program that measures it on a phone (runtimes/binary.py), the file name it has in the
#: work folder's ``bin/``
RUNTIME_TOOL: dict[str, str] = {
    "torchscript": "speed_benchmark_torch",
    "onnxruntime": "onnxruntime_perf_test",
    "executorch": "executor_runner",
}


def check_runtime(runtime: str) -> str:
    """``runtime`` when this agent can measure it here; a ``ConfigError`` naming the fix otherwise."""
    if runtime in RUNTIMES:
        return runtime
    if runtime == "executorch":
        import importlib.util

        # Presence only (no import: ExecuTorch takes seconds to import); the engine checks the version.
        try:
            found = importlib.util.find_spec("executorch") is not None
        except ValueError:  # a module object without a spec in sys.modules: not an importable package
            found = False
        if not found:
            raise ConfigError(
                "runtime executorch needs the ExecuTorch package, which is not installed here: pip install 'hwnas[executorch]'"
            )
        return runtime
    raise ConfigError(f"unknown runtime {runtime!r}: use one of {', '.join([*RUNTIMES, *OPTIONAL_RUNTIMES])}")


def check_phone_runtime(runtime: str) -> str:
    """``runtime`` when a phone's benchmark program for it is wired (all of them now); a ``ConfigError`` otherwise.

    The models are still built here, so ``executorch`` needs the package on this host (``check_runtime``)."""
    return check_runtime(runtime)


def runtime_format(runtime: str) -> tuple[str, str]:
    """(export format of search.export, model file suffix) of ``runtime``."""
    check_runtime(runtime)
    return RUNTIMES.get(runtime) or OPTIONAL_RUNTIMES[runtime]


@dataclass(frozen=True)
class Item:
    """Something measurable: a model file on the host and the shape of its one input."""

    key: str
    model: Path
    input_shape: tuple[int, ...]
    network: bool = False  # a whole network (key ``net-<arch id>``), not an operator of the table


@dataclass(frozen=True)
class Burst:
    """``warmup`` untimed runs, then ``iters`` timed runs of one item, in samples of ``sample_runs`` runs."""

    item: Item
    warmup: int
    iters: int
    canary: bool = False
    sample_runs: int = 1  # K: one sample = the mean of K back-to-back runs (protocol.sizing)
    probe: bool = False  # sized by count, to learn the item's run time (protocol.measure_batch)


@dataclass
class BurstResult:
    burst: Burst
    samples_ms: list[float] = field(default_factory=list)  # ms per run, one value per sample
    error: str | None = None
    wall_ms: float = 0.0  # wall time of the timed runs (whatever clock the samples come from)
    zero_runs: int = 0  # runs of 0 ms read from a result file (a real run never takes 0 s: a parse gone wrong)
    note: str | None = None  # how the samples were obtained when not as usual (e.g. the result file was unopenable)


ProgressFn = Callable[[int, int], None]  # (bursts done, bursts total)


class Runner(ABC):
    """Measures bursts; ``prepare`` once per set of items (open sessions, push files)."""

    runtime: str
    runtime_version: str | None
    threads: int
    where: str = ""  # "local" or "device": shown in logs and stored with runs
    # Temperatures read by the last schedule itself (sysfs thermal zones), None when it read none:
    # lets the agent skip a separate thermal query before the next batch.
    last_thermal: ThermalState | None = None
    # taskset's error once it refused the mask (then this runner measures unpinned); None while pinning works, and
    # always for a runner that pins nothing.
    taskset_refused: str | None = None
    zero_runs: int = 0  # runs of 0 ms read from result files, all calls together (a parse gone wrong shows)

    @abstractmethod
    def prepare(self, items: Sequence[Item]) -> None:
        """Make ``items`` runnable (load sessions / push models); raise on what cannot be fixed."""

    @abstractmethod
    def run(
        self, bursts: Sequence[Burst], stop: threading.Event | None = None, progress: ProgressFn | None = None
    ) -> list[BurstResult]:
        """Measure ``bursts`` in order; stop early (returning the finished ones) when ``stop`` is set."""

    def stage(self, items: Sequence[Item]) -> None:  # noqa: B027 - optional: runners without files to place keep it
        """Put the files of ``items`` where they will run (a device pushes them); nothing to do in-process."""

    def state(self) -> dict[str, object]:
        """How this runner measures (pinning, binary...), stored with every batch."""
        return {}

    def operator_breakdown(self, item: Item) -> OperatorBreakdown | None:
        """A whole network's per-operator times from the runtime's own profiler (a separate traced pass); None
        when this runner's runtime has none."""
        return None

    def forget(self, items: Sequence[Item]) -> None:  # noqa: B027 - optional: runners that keep nothing per item
        """After a batch: drop what was kept for ``items`` (sessions, per-key state), to bound memory."""

    def forget_files(self) -> None:  # noqa: B027 - optional: runners without files on a device keep it
        """After a reconnect: check the device's files again before trusting them."""

    def unpin(self, reason: str) -> None:  # noqa: B027 - optional: runners that pin nothing keep it
        """``taskset`` refused the mask (``reason``: its error): measure unpinned from now on, and say so in ``state``."""

    def close(self) -> None:  # noqa: B027 - optional: runners that hold nothing keep it
        """Release sessions and connections."""
