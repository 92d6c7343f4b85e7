"""Per-operator times of a whole network from ExecuTorch's ETDump (runtime ``executorch``).

A network measured whole says how long it takes, not where the time goes. ExecuTorch's event
tracer records every operator event of every execution (XNNPACK's own operator profile inside a
delegate call, at 1 µs resolution; ExecuTorch's portable kernels by name) into an ETDump, which the
devtools ``Inspector`` reads. That is what compares an operator inside a network with the same
operator measured alone (the "operator in context" error an additive table carries).

**A separate traced pass.** Tracing costs time inside each execution (per event: two clock reads
and a record), so the network's latency comes from the untraced rounds and the ETDump from a
program loaded again with ``enable_etdump=True`` and run ``PROFILE_RUNS`` more times. The first
traced run is cold (XNNPACK's first execution sets up its workspace) and left out of the statistics.

Read on the host: on a phone the ETDump file (``executor_runner --etdump_path``) is pulled back and
read here by ``breakdown_from_etdump`` alike.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from hwnas.schemas import OperatorBreakdown, OperatorTiming

PROFILE_RUNS = 11  # traced executions of a network: the first (cold) is left out, 10 make the statistics
# Inspector rows that are not one operator: the program's own phases and the delegate call as a whole.
_AGGREGATES = {"Method::execute", "DELEGATE_CALL", "Method::init", "Program::load_method"}


def _inspector(etdump: Path) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the devtools import warns about optional packages it does not need here
        from executorch.devtools import Inspector

        return Inspector(etdump_path=str(etdump))


def _steady(raw: list[float]) -> list[float]:
    """The runs after the first (cold) one, when there are any; ms."""
    values = [float(v) for v in raw]
    return values[1:] if len(values) > 1 else values


def breakdown_from_etdump(etdump: Path, delegate: str = "delegate") -> OperatorBreakdown:
    """The operators of the ETDump's executions, in execution order, with their median and minimum over the runs.

    ``delegate``: the backend named for delegated events. Without the program's ETRecord the Inspector knows that an
    event ran in a delegate, not in which one; the program's own delegate list (``pte_delegation``) does.
    """
    frame = _inspector(Path(etdump)).to_dataframe()
    frame = frame[frame["event_block_name"] == "Execute"]
    operators: list[OperatorTiming] = []
    execute: list[float] = []
    runs = 0
    for name, raw, delegated in zip(frame["event_name"], frame["raw"], frame["is_delegated_op"]):
        values = _steady(list(raw))
        if name == "Method::execute":
            execute, runs = values, len(values)
        if name in _AGGREGATES or not values:
            continue
        operators.append(
            OperatorTiming(
                name=str(name)[:256],
                backend=delegate[:64] if bool(delegated) else None,
                median_ms=statistics.median(values),
                min_ms=min(values),
            )
        )
    if runs == 0:
        raise ValueError(f"{etdump}: the ETDump holds no execution of the method")
    return OperatorBreakdown(runs=runs, execute_ms=statistics.median(execute), operators=operators)


def profile_pte(model: Path, input_shape: tuple[int, ...], threads: int = 1, runs: int = PROFILE_RUNS) -> OperatorBreakdown:
    """Load ``model`` with the event tracer on, run it ``runs`` times on ones, and read its ETDump back."""
    import torch
    from executorch.runtime import Runtime

    from device_agent.runtimes.executorch_engine import set_pool_threads
    from search.export import pte_delegation

    backends = pte_delegation(model)["backends"]
    set_pool_threads(threads)  # before the load, as the timed engine does: XNNPACK binds the pool when loading
    program = Runtime.get().load_program(Path(model), enable_etdump=True)
    method = program.load_method("forward")
    if method is None:
        raise ValueError(f"{Path(model).name}: the program has no forward method")
    x = torch.ones(input_shape)
    for _ in range(max(1, runs)):
        method.execute([x])  # the inputs are set every run: memory planning may reuse an input's buffer
    with tempfile.TemporaryDirectory(prefix="hwnas-etdump-") as tmp:
        path = Path(tmp) / "model.etdump"
        # No debug buffer (intermediate outputs): only timings are wanted; the Python binding asks for its path anyway.
        program.write_etdump_result_to_file(str(path), str(Path(tmp) / "debug.bin"))
        return breakdown_from_etdump(path, backends[0] if len(backends) == 1 else "delegate")


__all__ = ["PROFILE_RUNS", "breakdown_from_etdump", "profile_pte"]
