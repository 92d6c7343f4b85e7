"""`hwnas search --nproc N`: the same command under torchrun on this machine, and the CLI side of distributed errors.

``--nproc N`` rebuilds the options given on the command line (without ``--nproc``) and runs
torchrun's own entry point with::

    torchrun --standalone --nproc-per-node N -m search search <options>

i.e. exactly what a user would type for one node; several nodes use torchrun directly
(docs/distributed.md). On CPU each process gets ``cpu_count // N`` threads unless
``OMP_NUM_THREADS`` or ``--torch-threads`` says otherwise (torchrun alone would give each one).
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from search.app.commands._errors import fail


def option_arguments(ctx: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """The options of ``ctx`` that came from the command line, as arguments again (environment values are inherited).

    Duck-typed on purpose: typer ships its own copy of click, whose classes are not ``click``'s.
    """
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name
        if getattr(param, "param_type_name", "") != "option" or name in skip or name not in ctx.params:
            continue
        source = ctx.get_parameter_source(name)
        if getattr(source, "name", None) != "COMMANDLINE":
            continue
        value = ctx.params[name]
        flag = max(param.opts, key=len)
        if param.is_flag:
            if value:
                args.append(flag)
            elif param.secondary_opts:
                args.append(max(param.secondary_opts, key=len))
            continue
        values = value if param.multiple else [value]
        for v in values:
            if v is not None:
                args += [flag, str(v)]
    return args


def torchrun_arguments(nproc: int, command: str, args: list[str]) -> list[str]:
    """torchrun's arguments for one node: ``--standalone --nproc-per-node N -m search <command> <args>``."""
    return ["--standalone", f"--nproc-per-node={nproc}", "-m", "search", command, *args]


def worker_threads(nproc: int, threads: int | None = None) -> str:
    """``OMP_NUM_THREADS`` of each worker: ``--torch-threads``, else the environment's, else a fair share of the CPUs."""
    if threads is not None:
        return str(threads)
    return os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))


def preflight(config: Any, nproc: int) -> None:
    """Refuse, before starting N processes, what every one of them would refuse (one message instead of N)."""
    batch_size, torch_device = config.schedule.batch_size, config.run.torch_device
    if batch_size % nproc:
        raise fail(f"--batch-size {batch_size} is the batch of the whole job: it must be a multiple of --nproc {nproc}")
    import torch

    on_gpus = torch_device in ("auto", "cuda") and torch.cuda.is_available()
    if on_gpus and nproc > torch.cuda.device_count():
        raise fail(
            f"--nproc {nproc}: each process takes one GPU and this machine has {torch.cuda.device_count()} "
            "(or pass --torch-device cpu)"
        )
    if config.run.sync_bn and not (on_gpus or torch_device.startswith("cuda")):
        raise fail("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel)")


def launch_local(ctx: Any, nproc: int, threads: int | None = None) -> int:
    """Run the command of ``ctx`` in ``nproc`` processes with torchrun on this machine; the exit code.

    torchrun's own entry (``torch.distributed.run``) runs in this process, so its workers share
    this terminal (rank 0's progress bars work) and a failed worker ends in one line, not in the
    launcher's traceback.
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from search.distributed import launched_by_torchrun

    if launched_by_torchrun():
        raise fail("--nproc starts torchrun itself; under torchrun leave it out (--nproc-per-node sets the count)")
    argv = torchrun_arguments(nproc, ctx.info_name or "search", option_arguments(ctx, skip=("nproc",)))
    os.environ["OMP_NUM_THREADS"] = worker_threads(nproc, threads)  # inherited by the workers
    typer.echo(
        f"running {nproc} processes, {os.environ['OMP_NUM_THREADS']} thread(s) each: torchrun {shlex.join(argv)}", err=True
    )
    quiet = [
        logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher")
    ]
    levels = [log.level for log in quiet]
    for log in quiet:  # the workers print their own errors; the launcher's log would repeat them as a traceback
        log.setLevel(logging.CRITICAL)
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode < 0:
            typer.echo(f"error: rank {rank} was stopped by signal {-failure.exitcode} ({failure.signal_name()})", err=True)
        elif failure.exitcode not in (1, 2):  # 1 and 2: the worker printed its error (or usage) already
            typer.echo(f"error: rank {rank} exited with code {failure.exitcode}", err=True)
        return failure.exitcode if failure.exitcode > 0 else 1
    except (KeyboardInterrupt, SignalException):
        typer.echo("interrupted", err=True)
        return 130
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)
    return 0


@contextmanager
def distributed_errors() -> Iterator[None]:
    """A rank whose rank 0 failed exits quietly (rank 0 says why); other distributed errors are user errors
    (``search.app.commands._errors.user_errors`` prints them as one line)."""
    from search.distributed import PeerFailed

    try:
        yield
    except PeerFailed:
        raise typer.Exit(1) from None
