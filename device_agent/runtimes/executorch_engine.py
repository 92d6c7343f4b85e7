"""Timed ExecuTorch programs (``.pte`` with the XNNPACK delegate) in this process: runtime ``executorch``.

Models come from ``search.export`` (``torch.export`` → ``to_edge_transform_and_lower`` with the
``XnnpackPartitioner`` → ``to_executorch``) and are loaded with ExecuTorch's Python runtime,
``Runtime.get().load_program(path).load_method("forward")``. The optional package comes with
``pip install 'hwnas[executorch]'``; without it the runtime is refused with that line
(``ConfigError``: an agent gives such a job back, it fails no key).

**What is timed.** The input is set once (``set_inputs``) and each run is the method's
``execute()`` alone: ExecuTorch's own ``executor_runner`` times ``method->execute()`` alone too,
with the inputs prepared outside its clock. ``Method.execute([x])`` would also convert the input
list and clone every output on every call: ~9 µs of binding cost on a 9 µs operator here
(17 µs against 8.6 µs), which no phone pays.

**Inputs that do not survive a run.** Memory planning may hand an input's buffer to a later
tensor once the input is dead, so a second ``execute()`` reads garbage (executor_runner
prepares its inputs again before every run for that reason). A fully delegated program keeps
its input (it is live through the one delegate call); a program with portable kernels may not
(measured: ``((x+1)*2-3)...`` without a delegate gives 54, 2598, 124710 on three runs). Garbage
grows to inf/NaN and denormals, which run at other speeds, so the engine runs twice at load and,
when the outputs differ, sets the input again before every timed run (``inputs_set_per_run``:
the copy is then inside the clock, recorded per key).

**Threads.** ExecuTorch has one process-wide thread pool (``extension/threadpool``), sized to
the CPU count by default. XNNPACK binds the pool when a method is *loaded* (set after loading,
a new count changes nothing: measured), and ``_unsafe_reset_threadpool`` destroys the old
pool (``threadpool_.reset(pthreadpool_create(n))``), so a method loaded before a reset would
run on a freed pool. Hence: the pool is sized before every load, each reset bumps a
generation, and an engine whose method predates the current pool loads it again before it
runs. With one thread pthreadpool runs the work in the calling thread, so the thread-CPU
clock of the local runner is valid for it (thread CPU = process CPU, measured).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from device_agent.errors import ConfigError
from device_agent.runtimes.timing import timed

_POOL_LOCK = threading.Lock()
_pool_generation = 0  # bumped by every resize of ExecuTorch's thread pool


def available() -> bool:
    """True when the ``executorch`` package is installed."""
    from search.export import executorch_version

    return executorch_version() is not None


def version() -> str:
    """The installed ExecuTorch's version (recorded as the table's runtime version), or a ``ConfigError``."""
    from search.export import EXECUTORCH_INSTALL, EXECUTORCH_PIN, executorch_version

    found = executorch_version()
    if found is None:
        raise ConfigError(
            f"runtime executorch needs the ExecuTorch package, which is not installed here: "
            f"{EXECUTORCH_INSTALL} (executorch=={EXECUTORCH_PIN})"
        )
    return found


def _portable_lib() -> Any:
    """ExecuTorch's pybindings module (its import warns that the API is experimental: once per process, noise)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This API is experimental")
        from executorch.extension.pybindings import portable_lib
    return portable_lib


def pool_threads() -> int:
    """The size of ExecuTorch's thread pool now (what XNNPACK runs a method loaded now on)."""
    return int(_portable_lib()._threadpool_get_thread_count())


def set_pool_threads(threads: int) -> int:
    """Size ExecuTorch's thread pool to ``threads`` (a no-op when it has that size); returns the pool's generation."""
    global _pool_generation
    portable_lib = _portable_lib()
    with _POOL_LOCK:
        if pool_threads() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
            _pool_generation += 1
            if pool_threads() != threads:  # the call is documented as experimental: check it did what it says
                raise ConfigError(f"ExecuTorch's thread pool did not take {threads} thread(s) (it has {pool_threads()})")
        return _pool_generation


class ExecuTorchEngine:
    """One ``.pte`` program's ``forward`` with a fixed input of ones, bound once; same interface as ``OrtEngine``."""

    def __init__(
        self, model: Path, threads: int = 1, input_shape: tuple[int, ...] | None = None, cpu_clock: bool = False
    ) -> None:
        version()  # the install line instead of an ImportError
        import torch

        from search.export import pte_delegation

        if input_shape is None:
            raise ValueError("an ExecuTorch model needs its input shape")
        self.model = Path(model)
        self.threads = max(1, threads)
        self.clock = time.thread_time_ns if cpu_clock else time.perf_counter_ns
        self.last_wall_ms = 0.0
        self.input = torch.ones(input_shape)  # kept: set_inputs may point the method at its memory
        # Which parts XNNPACK runs, read from the file (recorded per key with every batch).
        self.delegation: dict[str, Any] = pte_delegation(self.model)
        self._generation = -1
        self._method: Any = None
        self.inputs_set_per_run = False  # see the module docstring
        self._load()
        self.inputs_set_per_run = not self._input_survives()

    def _load(self) -> None:
        from executorch.runtime import Runtime

        self._generation = set_pool_threads(self.threads)  # before the load: XNNPACK binds the pool now
        method = Runtime.get().load_program(self.model).load_method("forward")
        if method is None:
            raise ValueError(f"{self.model.name}: the program has no forward method")
        # The pybind method under the public wrapper: set_inputs once, then execute() per run (module docstring).
        self._method = method._method
        self._method.set_inputs([self.input])

    def _input_survives(self) -> bool:
        """Whether a second run gives the first run's outputs (the input buffer was not reused meanwhile)."""
        import torch

        self._method.execute()
        first = self._method.get_outputs()
        self._method.execute()
        second = self._method.get_outputs()
        self._method.set_inputs([self.input])  # whatever the answer: the next run starts from the real input
        return all(not isinstance(a, torch.Tensor) or torch.equal(a, b) for a, b in zip(first, second))

    def _run_with_input(self) -> None:
        self._method.set_inputs([self.input])
        self._method.execute()

    def _current(self) -> Any:
        """The method, loaded again when ExecuTorch's pool was resized since (its old pool is freed)."""
        if self._generation != _pool_generation or pool_threads() != self.threads:
            self._load()
        return self._method

    def run_once(self) -> None:
        method = self._current()
        if self.inputs_set_per_run:
            method.set_inputs([self.input])
        method.execute()

    def outputs(self) -> list[Any]:
        """The outputs of the last run (copies)."""
        return list(self._method.get_outputs())

    def burst(self, warmup: int, iters: int, sample_runs: int = 1) -> list[float]:
        """``warmup`` untimed runs, then ``iters`` timed ones in samples of ``sample_runs``; ms per run."""
        method = self._current()
        execute = self._run_with_input if self.inputs_set_per_run else method.execute
        for _ in range(warmup):
            execute()
        return timed(execute, iters, sample_runs, self)
