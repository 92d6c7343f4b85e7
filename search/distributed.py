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
import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch

from hwnas.errors import HwnasError

T = TypeVar("T")

# The variables torchrun sets for every process it starts.
ENV_VARS: tuple[str, ...] = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(HwnasError, RuntimeError):
    """A distributed search that cannot start or went out of step (bad launch environment, ranks disagree)."""


class PeerFailed(DistributedError):
    """A rank failed in a step the others were waiting for (``main_then_broadcast``, ``shutdown``); it says why."""


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
            raise DistributedError(
                f"LOCAL_RANK {index} needs GPU {index}, but this machine has {count}: start at most {count} processes per node"
            )
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
        raise DistributedError(
            f"WORLD_SIZE is set but {', '.join(missing)} are not: start the search with torchrun (or `hwnas search --nproc N`)"
        )
    device = local_device(torch_device)
    kwargs: dict[str, Any] = {"backend": backend_for(device)}
    if timeout_s is not None:
        kwargs["timeout"] = timedelta(seconds=timeout_s)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device  # NCCL: bind the communicator to this GPU now, not lazily
    dist.init_process_group(**kwargs)
    global _group_timeout_s
    _group_timeout_s = timeout_s if timeout_s is not None else _torch_default_timeout_s()
    atexit.register(shutdown, wait=False)
    return dist.get_world_size() > 1


# ----------------------------------------------------------------------------- leaving the group
#
# Why the end of a run is choreographed (the CI failure: rank 1 of a 2-process gloo search
# sometimes ended with SIGABRT, exit code -6, after the search itself had succeeded).
#
# The old end was "gloo barrier, destroy_process_group() on every rank, exit". The barrier only
# says that everyone *arrived*; it orders nothing about how the ranks *leave*, and leaving is
# where the ranks still touch each other:
#
# * ``destroy_process_group()`` only forgets the group in Python. With gloo (PyTorch 2.13) it
#   neither closes the group's sockets nor stops its I/O and worker threads (checked: same
#   threads and sockets before and after): they belong to the C++ ``ProcessGroupGloo``, which
#   lives while anything references it, and DDP's reducer keeps a reference that is never
#   released. So a rank's gloo connections are really torn down by its process exit, in the
#   middle of the interpreter's and the C++ runtime's own teardown.
# * After the barrier both ranks run that teardown at the same moment. Rank 0 often finishes
#   first; its sockets then close under rank 1 while rank 1's runtime is being dismantled, and
#   whether rank 1's gloo thread handles "connection closed by peer" before or after the parts
#   it needs are gone is a matter of scheduling. (The abort did not show in ~100 local runs; what
#   is certain is that the old end allowed this overlap, and the new one excludes it.)
# * Where rank 0 hosts the TCPStore (any launch without torchrun's agent store, e.g.
#   ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` or a plain ``env://`` job), rank 0 leaving first also
#   takes away the store that the other ranks are still connected to.
# * On an exception only the ``atexit`` hook runs; the others then wait in a barrier that never
#   completes, up to the group's 30-minute timeout, unless torchrun happens to stop them.
#
# So ``shutdown`` makes rank 0 — the store host — the last process to leave, by protocol rather
# than by luck: (1) every rank arrives (a store barrier: a rank that fails instead says so in the
# store, and the wait has a deadline); (2) every rank destroys its group; (3) every other rank
# records "left" in the store, its last use of the store; (4) rank 0 waits for all of them and,
# for the ranks on its own machine, for their processes to be gone, since only process exit
# closes their gloo connections. Nothing can then disconnect while rank 0 tears down, and rank
# 0's departure reaches no process that is still tearing down.

_KEY_PREFIX = "hwnas/shutdown"
LEAVE_TIMEOUT_S = 60.0  # after everyone arrived: how long rank 0 waits for the others to leave
_POLL_S = 0.05
_group_timeout_s: float | None = None  # the timeout the group was created with (arrival deadline)
_round = 0  # shutdowns completed by this process: keys of a later group never meet stale ones


def _torch_default_timeout_s() -> float:
    from torch.distributed import distributed_c10d

    return float(distributed_c10d.default_pg_timeout.total_seconds())


def _keys() -> str:
    return f"{_KEY_PREFIX}/{_round}"


def _default_store() -> Any:
    from torch.distributed import distributed_c10d

    return distributed_c10d._get_default_store()


def _machine() -> str | None:
    """This kernel's boot id and PID namespace: equal for two processes iff PIDs mean the same to both."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f"{f.read().strip()} {os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None  # no /proc (macOS): peers' processes cannot be watched, only their signals


def _start_time(pid: int) -> str | None:
    """The start time of a live process ``pid`` (guards against a recycled PID); None once it has ended."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):  # a zombie has closed all its sockets: gone, for what matters here
        return None
    return fields[19]


def _process_identity() -> str:
    """This process, as the other ranks can recognise it: machine, PID and start time (JSON)."""
    pid = os.getpid()
    return json.dumps({"machine": _machine(), "pid": pid, "start": _start_time(pid)})


def _process_gone(identity: str, machine: str | None) -> bool:
    """True when the process ``identity`` names has ended, or runs elsewhere than ``machine`` (nothing to watch)."""
    try:
        peer = json.loads(identity)
    except ValueError:
        return True
    if machine is None or peer.get("machine") != machine or peer.get("start") is None or peer["pid"] == os.getpid():
        return True  # not watchable from here (nor is this process itself)
    return _start_time(int(peer["pid"])) != peer["start"]


def _wait_for_key(store: Any, key: str, timeout_s: float, what: str, failed_key: str | None = None) -> None:
    """Wait until ``key`` is set; ``PeerFailed`` as soon as ``failed_key`` is, ``DistributedError`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        # The failure first: a rank that arrived and then gave up (its own deadline) counts as gone.
        if failed_key is not None and store.check([failed_key]):
            who = store.get(failed_key).decode()
            raise PeerFailed(f"rank {who} stopped before the end of the run")
        if store.check([key]):
            return
        if time.monotonic() >= deadline:
            raise DistributedError(f"{what} within {timeout_s:g} s")
        time.sleep(_POLL_S)


def store_barrier(store: Any, me: int, n: int, prefix: str, timeout_s: float) -> None:
    """All ``n`` ranks meet through ``store`` (no collective): raises instead of waiting past ``timeout_s``."""
    if store.add(f"{prefix}/arrived", 1) == n:
        store.set(f"{prefix}/all-arrived", str(me))
    _wait_for_key(
        store,
        f"{prefix}/all-arrived",
        timeout_s,
        f"rank {me}: the other ranks did not reach the end of the run",
        failed_key=f"{prefix}/failed",
    )


def leave_in_order(
    store: Any, me: int, n: int, prefix: str, destroy: Callable[[], None], timeout_s: float = LEAVE_TIMEOUT_S
) -> None:
    """After ``store_barrier``: every rank runs ``destroy``; rank 0 returns only once every other rank has left.

    A rank other than 0 signals "left" after ``destroy`` — its last use of the store, which rank 0
    may host. Rank 0 waits for all the signals and then, for ranks on its own machine, for their
    processes to end (they are still connected until then); a peer slower than ``timeout_s`` to
    signal is an error, one slow to exit after signalling is not waited for beyond it.
    """
    deadline = time.monotonic() + timeout_s
    destroy()
    if me != 0:
        store.set(f"{prefix}/left/{me}", _process_identity())
        return
    for r in range(1, n):
        _wait_for_key(
            store,
            f"{prefix}/left/{r}",
            max(0.0, deadline - time.monotonic()),
            f"rank 0: rank {r} did not leave the process group",
        )
    peers = [store.get(f"{prefix}/left/{r}").decode() for r in range(1, n)]
    machine = _machine()
    while not all(_process_gone(p, machine) for p in peers) and time.monotonic() < deadline:
        time.sleep(_POLL_S)


def _leave_early(store: Any, prefix: str, me: int) -> None:
    """Leave without the others: tell them through the store (the first failure keeps its name), then destroy."""
    dist = _dist()
    try:
        store.set_timeout(timedelta(seconds=5))  # possibly at exit: never hang on a store whose host is gone
        if not store.check([f"{prefix}/failed"]):
            store.set(f"{prefix}/failed", str(me))
    except Exception:  # noqa: BLE001 - the store's host may be gone already; leaving must go on
        pass
    finally:
        dist.destroy_process_group()


def shutdown(wait: bool = True, timeout_s: float | None = None) -> None:
    """Leave the process group (harmless when not initialised); ``wait``: the orderly end of a run.

    With ``wait`` every rank must call it: it returns once all ranks arrived (within ``timeout_s``,
    by default the group's timeout) and left, rank 0 last — see the comment above for why. A rank
    that stopped instead is reported at once (``PeerFailed``), not after the timeout.

    At exit (``atexit``, registered by ``init_from_env``) it runs without waiting: a rank that fails
    mid-run must not block on peers that will never come. It then tells the others, through the
    store, so that their ``shutdown`` fails now instead of at its deadline.
    """
    global _round
    dist = _dist()
    if not (dist.is_available() and dist.is_initialized()):
        return
    n, me = dist.get_world_size(), dist.get_rank()
    if n == 1:
        dist.destroy_process_group()
        return
    prefix = _keys()
    store = _default_store()
    if not wait:
        _leave_early(store, prefix, me)
        return
    if dist.get_backend() == "nccl":
        torch.cuda.synchronize()  # this rank's collectives are done on the GPU, not just queued
    try:
        store_barrier(
            store, me, n, prefix, timeout_s if timeout_s is not None else (_group_timeout_s or _torch_default_timeout_s())
        )
    except BaseException:
        _leave_early(store, prefix, me)  # the others stop waiting for this rank too
        raise
    _round += 1
    leave_in_order(store, me, n, prefix, dist.destroy_process_group)


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
    reply: tuple[str, Any] = broadcast_object(None)
    status, value = reply
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
        g.copy_(flat[offset : offset + n].view_as(g))
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
                t.copy_(flat[offset : offset + n].view_as(t))
            offset += n


def ranks_agree(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` holds exactly the same bits on every rank."""
    if not is_distributed():
        return True
    gathered = [torch.empty_like(tensor) for _ in range(world_size())]
    _dist().all_gather(gathered, tensor.contiguous())
    mine = tensor.reshape(-1).view(torch.uint8) if tensor.dtype.is_floating_point else tensor.reshape(-1)
    return all(
        torch.equal(mine, (g.reshape(-1).view(torch.uint8) if g.dtype.is_floating_point else g.reshape(-1))) for g in gathered
    )
