"""The process group of a distributed search: who am I, where do I run, and the few collectives the search needs.

A search runs distributed when ``torchrun`` (``python -m torch.distributed.run``) started it: the
launcher sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and
``init_from_env`` joins the group — NCCL when this process runs on a CUDA device (device
``cuda:LOCAL_RANK``), gloo on CPU. Without those variables (or with ``WORLD_SIZE=1``) every
function here answers for a single process and no collective is ever called, so the search
code can use them unconditionally.

Rank 0 is the *main* process: it alone talks to the profiler server (``main_then_broadcast``)
and writes files (``on_main``, and ``search.rundir.RunDir``, which follows the same rule).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch

T = TypeVar("T")

# The variables torchrun sets for every process it starts.
ENV_VARS: tuple[str, ...] = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A distributed search that cannot start or went out of step (bad launch environment, ranks disagree)."""


class PeerFailed(DistributedError):
    """Rank 0 failed in a step the other ranks were waiting for; rank 0 reports the cause itself."""


def _dist():
    import torch.distributed as dist

    return dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes of the search (1 when not distributed)."""
    dist = _dist()
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    dist = _dist()
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_rank() -> int:
    """Rank of this process on its machine (``LOCAL_RANK``; 0 when not launched by torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on rank 0, and always when not distributed."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True when the torchrun environment asks for more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise DistributedError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def local_device(name: str = "auto") -> torch.device:
    """The device of this process: ``auto`` is ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.

    ``cuda`` without an index also means ``cuda:LOCAL_RANK``, so the same command line works for
    every process of a node; an explicit ``cuda:K`` or ``cpu`` is taken as given.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise DistributedError(f"--torch-device {name}: CUDA is not available on this machine (use cpu or auto)")
    if device.index is None:
        index = local_rank()
        count = torch.cuda.device_count()
        if index >= count:
            raise DistributedError(f"LOCAL_RANK {index} needs GPU {index}, but this machine has {count}: "
                                   f"start at most {count} processes per node")
        device = torch.device("cuda", index)
    return device


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo otherwise (CPU)."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(torch_device: str = "auto", timeout_s: float | None = None) -> bool:
    """Join the process group torchrun describes (idempotent); False when this is a single-process run."""
    dist = _dist()
    if not dist.is_available():
        if launched_by_torchrun():
            raise DistributedError("this PyTorch build has no torch.distributed; run one process")
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if not launched_by_torchrun():
        return False
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE is set but {', '.join(missing)} are not: start the search with torchrun "
                               "(or `hwnas search --nproc N`)")
    device = local_device(torch_device)
    kwargs: dict[str, Any] = {"backend": backend_for(device)}
    if timeout_s is not None:
        kwargs["timeout"] = timedelta(seconds=timeout_s)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device  # NCCL: bind the communicator to this GPU now, not lazily
    dist.init_process_group(**kwargs)
    atexit.register(shutdown, wait=False)
    return dist.get_world_size() > 1


def shutdown(wait: bool = True) -> None:
    """Leave the process group (harmless when not initialised); ``wait``: all ranks leave together.

    Call it with ``wait`` at the normal end of a run: the barrier keeps rank 0 — which hosts the
    rendezvous store — alive until every rank is done, so no rank tears down connections another
    still uses. At exit (``atexit``) it runs without waiting: a rank that fails mid-epoch must not
    block in a barrier its peers never reach; torchrun then stops the others.
    """
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        try:
            if wait:
                barrier()
        finally:
            dist.destroy_process_group()


def _device_kwargs() -> dict[str, Any]:
    # NCCL collectives on Python objects go through the current GPU; gloo through the CPU.
    dist = _dist()
    if dist.get_backend() == "nccl":
        return {"device": torch.device("cuda", torch.cuda.current_device())}
    return {}


def barrier() -> None:
    """Wait until every process reaches this point (no-op when not distributed)."""
    if is_distributed():
        dist = _dist()
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_object(obj: T | None, src: int = 0) -> T:
    """``obj`` of rank ``src`` on every rank (pickled; for small objects such as a latency table)."""
    if not is_distributed():
        return obj  # type: ignore[return-value]
    box = [obj]
    _dist().broadcast_object_list(box, src=src, **_device_kwargs())
    return box[0]  # type: ignore[return-value]


def all_gather_object(obj: Any) -> list[Any]:
    """One ``obj`` per rank, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


def main_then_broadcast(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank (e.g. one GET /lut for the whole job).

    When ``fn`` raises on rank 0 the exception propagates there (its message is what the user
    sees) and the other ranks raise ``PeerFailed`` instead of waiting forever.
    """
    if not is_distributed():
        return fn()
    if is_main():
        try:
            value = fn()
        except BaseException as exc:
            broadcast_object(("error", f"{type(exc).__name__}: {exc}"))
            raise
        broadcast_object(("ok", value))
        return value
    status, value = broadcast_object(None)
    if status == "error":
        raise PeerFailed(f"rank 0 failed: {value}")
    return value


def on_main(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only (the one way to write a file in a distributed run); None elsewhere."""
    return fn() if is_main() else None


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (no-op when not distributed)."""
    if is_distributed():
        _dist().all_reduce(tensor, op=_dist().ReduceOp.SUM)
    return tensor


def average_gradients_(params: Sequence[torch.nn.Parameter]) -> None:
    """Replace each ``p.grad`` by its mean over all ranks, in one collective.

    Every rank ends with the same bits: the sum is formed once by the collective and each rank
    divides the same sum by the same number.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or not is_distributed():
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_sum_(flat).div_(world_size())
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def broadcast_tensors_(tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values (one collective per dtype)."""
    if not tensors or not is_distributed():
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        _dist().broadcast(flat, src=src)
        offset = 0
        for t in group:
            n = t.numel()
            with torch.no_grad():
                t.copy_(flat[offset:offset + n].view_as(t))
            offset += n


def ranks_agree(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` holds exactly the same bits on every rank."""
    if not is_distributed():
        return True
    gathered = [torch.empty_like(tensor) for _ in range(world_size())]
    _dist().all_gather(gathered, tensor.contiguous())
    mine = tensor.reshape(-1).view(torch.uint8) if tensor.dtype.is_floating_point else tensor.reshape(-1)
    return all(torch.equal(mine, (g.reshape(-1).view(torch.uint8) if g.dtype.is_floating_point else g.reshape(-1)))
               for g in gathered)
