"""Before any claim: every benchmark program pushed to the phone must run there as the jobs will run it.

1. Bare: a program built for another ABI, or missing a shared library, is refused by the loader or the
   linker (``faults.DEVICE``): ``DeviceFault`` with the fix. (Bare, the real programs print their usage;
   only the loader's and linker's verdict counts here.)
2. TorchScript: which bytecode the phone's PyTorch reads (``check_bytecode``).
3. The empty model measured by one burst through the runner — the same script, flags, ``taskset``, result
   file and awk as a job's bursts (``_preflight_burst``): a flag or model format the build refuses stops the
   agent here, before any job is claimed.
"""

from __future__ import annotations

import logging
import shlex
from typing import TYPE_CHECKING

from device_agent.errors import DeviceFault, SetupFault
from device_agent.faults import DEVICE, PINNING, SETUP, STORAGE, classify, fix_for, setup_fix
from device_agent.models import ModelCache
from device_agent.runtimes.base import RUNTIME_TOOL, Burst

if TYPE_CHECKING:
    from device_agent.jobloop import Agent
    from device_agent.runtimes.binary import BinaryRunner

log = logging.getLogger("device_agent")


def preflight(agent: Agent) -> None:
    """The checks above for every ``--benchmark-binary`` of a runtime the agent serves (none with ``--local``)."""
    if agent.local:
        return
    device = agent.device
    for runtime in agent.cfg.binaries:
        if runtime not in agent.cfg.runtimes:
            continue
        runner = agent.phone_runner(runtime, agent.cfg.threads or 1)
        agent.with_reconnect(lambda: runner.prepare([]), first=True)  # noqa: B023 - called in this iteration
        tool = runner.remote_binary
        result = device.run(f'cd {shlex.quote(device.workdir)} && LD_LIBRARY_PATH="$PWD/bin" ./{tool} 2>&1', check=False)
        reason = f"{runtime} benchmark exited {result.rc}: {' | '.join(result.output.strip().splitlines()[-3:])}"
        if classify(reason) == DEVICE:
            raise DeviceFault(cannot_run(agent, runtime, reason))
        log.info("%s starts on %s", tool, device.serial)
        if runtime == "torchscript":
            check_bytecode(agent, runner)
        _preflight_burst(agent, runtime, runner)


def cannot_run(agent: Agent, runtime: str, reason: str) -> str:
    """What to tell of a program the phone cannot run: the build to make, for the phone's ABI."""
    abi = agent.facts.props.get("ro.product.cpu.abi", "?") if agent.facts else "?"
    return (
        f"{agent.cfg.binaries.get(runtime, runtime)} cannot run on {agent.device.serial} (ABI {abi}): "
        f"{reason[:300]} — build it for {abi} and pass its shared libraries with --benchmark-lib "
        "(docs/device-agent.md)"
    )


def _preflight_burst(agent: Agent, runtime: str, runner: BinaryRunner) -> None:
    """Measure the empty model once with exactly the flags the jobs use; stop on what would fail every key.

    A flag the build predates or a model format it refuses (``faults.SETUP``) raises ``SetupFault`` naming
    the build that fixes it; a program that cannot run, or a work folder the phone will not write to, raises
    ``DeviceFault``; a refused ``taskset`` makes the runner measure unpinned (recorded in every batch's
    device state) and is tried again. Anything else is left to the jobs (it may be this model's).
    """
    device = agent.device
    burst = Burst(agent.cache.overhead(runtime), warmup=1, iters=2)
    for _ in range(2):  # a second time only after taskset was refused, unpinned
        results = agent.with_reconnect(lambda: runner.run([burst]), first=True)
        if results and results[0].error is None:
            log.info("%s measured the empty model on %s with the jobs' flags", RUNTIME_TOOL[runtime], device.serial)
            return
        reason = results[0].error if results and results[0].error else f"{runtime} benchmark: the preflight burst did not finish"
        kind = classify(reason)
        if kind == PINNING:
            agent.unpin(runner, reason)
            continue
        if kind == SETUP:
            raise SetupFault(f"{device.serial}: {setup_fix(reason)} (it said: {reason[:400]})")
        if kind == STORAGE:
            raise DeviceFault(f"{device.serial} refuses writes in {device.workdir}: {reason[:300]}")
        if kind == DEVICE:
            raise DeviceFault(cannot_run(agent, runtime, reason))
        log.warning("the empty model failed on %s in the preflight (%s); measuring on", device.serial, reason[:300])
        return


def check_bytecode(agent: Agent, runner: BinaryRunner) -> None:
    """Load the empty model on the phone once: a PyTorch older than this torch says which bytecode it reads.

    Without ``--bytecode-version`` the agent's models are then saved at the newest version the phone reads;
    a version given and refused stops the agent with the one that works.
    """
    from device_agent import bytecode
    from device_agent.parsers import parse_bytecode_rejection

    device = agent.device
    item = agent.cache.overhead("torchscript")
    agent.with_reconnect(lambda: runner.prepare([item]), first=True)
    model = shlex.quote(runner.remote_model(item))
    result = device.run(
        f'cd {shlex.quote(device.workdir)} && LD_LIBRARY_PATH="$PWD/bin" '
        f"./{runner.remote_binary} --model={model} --input_dims=1,1,1,1 "
        "--input_type=float --iter=1 2>&1",
        check=False,
    )
    rejected = parse_bytecode_rejection(result.output)
    if rejected is None:
        return
    oldest, _ = bytecode.supported_versions()
    reason = f"torchscript benchmark exited {result.rc}: {result.output.strip()[:300]}"
    if agent.cfg.bytecode_version is not None or not oldest <= rejected.max_version:
        raise DeviceFault(f"{device.serial}: {reason} — {fix_for(reason)}")
    log.warning(
        "the phone's PyTorch reads TorchScript bytecode versions %d to %d: saving the models at %d "
        "(--bytecode-version to choose)",
        rejected.min_version,
        rejected.max_version,
        rejected.max_version,
    )
    agent.cache = ModelCache(agent.cache.root, rejected.max_version)
    runner.forget_files()  # the same file names now hold older bytecode
