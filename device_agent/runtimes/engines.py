"""Timed model execution in this process: ONNX Runtime with pre-bound inputs, TorchScript.

Shared by the local runner and by the host stand-ins of the phone binaries. ONNX Runtime
binds inputs and outputs once (IOBinding / OrtValue): without it every call copies numpy
inputs, which for operator-sized models adds 5-20% to the measured time (+5-6% measured in
interleaved rounds, +10-20% one model after another; whole networks are not affected).

``cpu_clock=True`` times each run with the calling thread's CPU clock instead of the wall
clock. With one intra-op thread the runtime computes in the calling thread, so this is the
run's latency minus the time the thread was preempted. On a shared host that matters: with
the load at ~4 runnable processes per core, almost every run of a 5 ms network is preempted
(wall minimum 9-11 ms, thread CPU 5.5 ms, steady to 1%), while sub-millisecond operators
often run whole (wall minimum = thread CPU time within 1-2%), which biased every prediction
by -60% (docs/validation.md). Only meaningful with one thread.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

# The timing loop, shared with the ExecuTorch engine (a module of its own: the engines import each other otherwise).
from device_agent.runtimes.timing import timed as _timed


def _ort_shape(shape: list[Any], fallback: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if all(isinstance(d, int) and d > 0 for d in shape):
        return tuple(shape)
    if fallback is not None and len(fallback) == len(shape):
        return fallback
    return None


class OrtEngine:
    """One ``InferenceSession`` with bound inputs (ones) and outputs."""

    def __init__(
        self,
        model: Path,
        threads: int = 1,
        input_shape: tuple[int, ...] | None = None,
        spin: bool = True,
        opt_level: int = 99,
        cpu_clock: bool = False,
        prebind_outputs: bool = True,
    ) -> None:
        import numpy as np
        import onnxruntime as ort

        self.clock = time.thread_time_ns if cpu_clock else time.perf_counter_ns
        self.last_wall_ms = 0.0

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = {
            0: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            2: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        }.get(opt_level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        so.log_severity_level = 3
        if not spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        self.binding = self.session.io_binding()
        self._keep: list[Any] = []
        for i, inp in enumerate(self.session.get_inputs()):
            shape = _ort_shape(inp.shape, input_shape if i == 0 else None) or tuple(
                d if isinstance(d, int) and d > 0 else 1 for d in inp.shape
            )  # free dims = 1, like perf_test -I
            dtype = {
                "tensor(float)": np.float32,
                "tensor(float16)": np.float16,
                "tensor(int64)": np.int64,
                "tensor(int32)": np.int32,
                "tensor(uint8)": np.uint8,
                "tensor(int8)": np.int8,
            }.get(inp.type, np.float32)
            value = ort.OrtValue.ortvalue_from_numpy(np.ones(shape, dtype=dtype))
            self._keep.append(value)
            self.binding.bind_ortvalue_input(inp.name, value)
        for meta in self.session.get_outputs():
            self.binding.bind_output(meta.name, "cpu")
        if not prebind_outputs:
            # Outputs allocated by the session on every run, and no run before the caller's: what
            # onnxruntime_perf_test does (its one warm-up run is the caller's to make).
            return
        self.run_once()  # learn output shapes, then bind preallocated outputs
        outputs = self.binding.get_outputs()
        self.binding.clear_binding_outputs()
        for meta, produced in zip(self.session.get_outputs(), outputs):
            value = ort.OrtValue.ortvalue_from_shape_and_type(produced.shape(), produced.numpy().dtype)
            self._keep.append(value)
            self.binding.bind_ortvalue_output(meta.name, value)

    def run_once(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def burst(self, warmup: int, iters: int, sample_runs: int = 1) -> list[float]:
        """``warmup`` untimed runs, then ``iters`` timed ones in samples of ``sample_runs``; ms per run."""
        run = self.session.run_with_iobinding
        binding = self.binding
        for _ in range(warmup):
            run(binding)
        return _timed(partial(run, binding), iters, sample_runs, self)


class TorchEngine:
    """A TorchScript module (full or lite-interpreter file) with a fixed input of ones."""

    def __init__(
        self, model: Path, threads: int = 1, input_shape: tuple[int, ...] | None = None, cpu_clock: bool = False
    ) -> None:
        import torch

        import warnings

        self.clock = time.thread_time_ns if cpu_clock else time.perf_counter_ns
        self.last_wall_ms = 0.0

        torch.set_num_threads(max(1, threads))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # jit.load: what phones run today
                self.module = torch.jit.load(str(model), map_location="cpu").eval()
        except Exception:  # noqa: BLE001 - a lite-interpreter-only file
            from torch.jit.mobile import _load_for_lite_interpreter

            self.module = _load_for_lite_interpreter(str(model))
        if input_shape is None:
            raise ValueError("a TorchScript model needs its input shape")
        self.input = torch.ones(input_shape)
        self._mode = torch.inference_mode

    def run_once(self) -> None:
        with self._mode():
            self.module(self.input)

    def burst(self, warmup: int, iters: int, sample_runs: int = 1) -> list[float]:
        """``warmup`` untimed runs, then ``iters`` timed ones in samples of ``sample_runs``; ms per run."""
        module, x = self.module, self.input
        with self._mode():
            for _ in range(warmup):
                module(x)
            return _timed(partial(module, x), iters, sample_runs, self)


def make_engine(runtime: str, model: Path, threads: int, input_shape: tuple[int, ...] | None, cpu_clock: bool = False):
    """An engine for ``runtime`` ("onnxruntime", "torchscript" or "executorch"); ``cpu_clock``: see the module docstring."""
    if runtime == "onnxruntime":
        return OrtEngine(model, threads, input_shape, cpu_clock=cpu_clock)
    if runtime == "executorch":
        from device_agent.runtimes.executorch_engine import ExecuTorchEngine

        return ExecuTorchEngine(model, threads, input_shape, cpu_clock=cpu_clock)
    return TorchEngine(model, threads, input_shape, cpu_clock=cpu_clock)


def runtime_version(runtime: str) -> str:
    if runtime == "onnxruntime":
        import onnxruntime

        return onnxruntime.__version__
    if runtime == "executorch":
        from device_agent.runtimes.executorch_engine import version

        return version()
    import torch

    return torch.__version__
