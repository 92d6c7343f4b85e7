"""What an agent is told: ``AgentConfig`` (everything ``device-agent run`` takes) and the runtime each benchmark binary serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from device_agent.errors import ConfigError
from device_agent.protocol import CoolDown, ProtocolConfig
from device_agent.runtimes.base import RUNTIMES


@dataclass
class AgentConfig:
    """Everything ``device-agent run`` can be told."""

    name: str | None = None
    runtimes: tuple[str, ...] = tuple(RUNTIMES)  # job runtimes this agent accepts
    threads: int | None = None  # only jobs with this thread count (None: any)
    binaries: dict[str, Path] = field(default_factory=dict)  # runtime -> host path of the phone binary
    libs: list[Path] = field(default_factory=list)  # shared libraries pushed next to the binaries
    runtime_version: str | None = None
    lease_s: float = 120.0
    upload_deadline_s: float = 120.0  # an upload is retried this long, then its batch waits in the spool
    batch_size: int = 16
    poll_s: float = 5.0
    once: bool = False
    # A dropped device is reconnected for this long (a phone's reboot, a Wi-Fi outage) before its job is given
    # back; the waits between attempts double from the first to the cap.
    reconnect_s: float = 600.0
    reconnect_first_delay_s: float = 1.0
    reconnect_max_delay_s: float = 30.0
    device_fault_retries: int = 2  # batches the program could not run in, files pushed again each time (faults.py)
    pin: bool = True
    read_timeout_s: float = 120.0
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    cooldown: CoolDown = field(default_factory=CoolDown)
    cache_dir: Path | None = None
    measure_overhead: bool = True
    clock: str = "auto"  # --local only: auto | wall | cpu (runtimes/local.py)
    bytecode_version: int | None = None  # TorchScript .ptl models saved at this version (None: as torch writes)


def binary_runtime(path: Path, default: str | None) -> str:
    """Which runtime a benchmark binary serves, from its name (or ``default``)."""
    name = path.name.lower()
    if "onnxruntime" in name or "perf_test" in name:
        return "onnxruntime"
    if "executor_runner" in name or "executorch" in name:  # before "torch": ExecuTorch's program
        return "executorch"
    if "speed_benchmark" in name or "torch" in name:
        return "torchscript"
    if default is None:
        raise ConfigError(
            f"cannot tell the runtime of benchmark binary {path}: name it after the program "
            "(onnxruntime_perf_test / speed_benchmark_torch / executor_runner) or give --runtime"
        )
    return default


__all__ = ["AgentConfig", "binary_runtime"]
