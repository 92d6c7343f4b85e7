"""Host stand-ins for the phone benchmark binaries, same flags, same output.

``python -m device_agent.standins.speed_benchmark_torch --model=m.ptl --input_dims=1,3,8,8
--iter=20 --report_pep=true`` and ``python -m device_agent.standins.onnxruntime_perf_test -m
times -r 20 -x 1 -I m.onnx`` print what the real programs print, running the model with
torch / onnxruntime on the host. On the loopback device the pushed "binary" is a small shell
launcher (``launcher_script``) that hands the call to a zygote which forks a fresh process per
call: each call creates its own session and does only the program's own warm-up, as on a phone.
"""

from __future__ import annotations

TOOLS = ("speed_benchmark_torch", "onnxruntime_perf_test")
RUNTIME_TOOL = {"torchscript": "speed_benchmark_torch", "onnxruntime": "onnxruntime_perf_test"}


def fmt_g(x: float) -> str:
    """A number the way C++ ``std::ostream`` prints a double by default (6 significant digits)."""
    return f"{x:.6g}"
