"""Host stand-ins for the phone benchmark binaries, same flags, same output.

``python -m device_agent.loopback.standins.speed_benchmark_torch --model=m.ptl --input_dims=1,3,8,8
--iter=20 --report_pep=true``, ``python -m device_agent.loopback.standins.onnxruntime_perf_test -m
times -r 20 -x 1 -I m.onnx`` and ``python -m device_agent.loopback.standins.executor_runner
--model_path=m.pte --num_executions=20 --cpu_threads=1`` print what the real programs print, running
the model with torch / onnxruntime / ExecuTorch's Python runtime on the host. On the loopback device the pushed "binary" is a small shell
launcher (``launcher_script``) that hands the call to a zygote which forks a fresh process per
call: each call creates its own session and does only the program's own warm-up, as on a phone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from device_agent.runtimes.base import RUNTIME_TOOL

TOOLS = tuple(RUNTIME_TOOL.values())  # the programs a phone runs, one stand-in each
#: what each stand-in runs the model with on the host (named in the launcher)
TOOL_ENGINE = {
    "speed_benchmark_torch": "torch",
    "onnxruntime_perf_test": "onnxruntime",
    "executor_runner": "ExecuTorch's Python runtime",
}

# Build knobs: which build of the program a stand-in plays. Environment variables, so that both ways a
# stand-in runs see them (the launcher forwards them to the zygote; ``python -m`` inherits them).
# flags the build predates or lacks: "-I" (ORT), "--pthreadpool_size" (PyTorch), "--etdump_path" (an ExecuTorch
# build without the event tracer)
KNOB_WITHOUT = "HWNAS_STANDIN_WITHOUT"
KNOB_MINIMAL = "HWNAS_STANDIN_MINIMAL"  # "1": an ONNX Runtime minimal build, which reads .ort models only
KNOBS = (KNOB_WITHOUT, KNOB_MINIMAL)


@dataclass(frozen=True)
class BuildKnobs:
    """The build a stand-in plays (default: a current full build)."""

    without: tuple[str, ...] = ()
    minimal: bool = False


def build_knobs(environ: Mapping[str, str] | None = None) -> BuildKnobs:
    """The knobs set in ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    without = tuple(w for w in re.split(r"[\s,]+", env.get(KNOB_WITHOUT, "")) if w)
    return BuildKnobs(without, env.get(KNOB_MINIMAL, "") not in ("", "0"))


def fmt_g(x: float) -> str:
    """A number the way C++ ``std::ostream`` prints a double by default (6 significant digits)."""
    return f"{x:.6g}"


_C_INT = re.compile(r"\s*([+-]?[0-9]+)")


def strtol(text: str) -> int:
    """C ``strtol(text, nullptr, 10)`` / ``atoi``: leading blanks, a sign, digits; 0 when there are none."""
    m = _C_INT.match(text)
    return int(m.group(1)) if m else 0
