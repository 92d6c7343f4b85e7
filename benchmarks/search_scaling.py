"""Throughput of one search step: 1 process vs 2 gloo processes (DDP) at the same total thread count; GPU when present.

The step is the search's own (``search.search_epoch.train_step`` through ``search.replica``): a weight
step (DDP averages the weight gradients) and a θ step (θ gradients averaged with one all-reduce),
on the ``fbnet-fmnist`` space with real Fashion-MNIST images and the same *global* batch in both
runs. An epoch spends 80 % of its images on weight steps and 20 % on θ steps (FBNet's split), so
the search throughput is ``1 / (0.8 / w + 0.2 / θ)`` images/s.

* baseline: this process, ``T`` threads (``T`` = the CPU count, at least 2);
* distributed: ``torchrun --standalone --nproc-per-node 2`` with ``T/2`` threads per process.

``ddp_efficiency_2proc`` = throughput(2 processes) / throughput(1 process); target ≥ 0.85. Both
stay alive and take turns, round by round (the idle side sleeps), so they see the same background
load; each keeps its best round, and the per-round ratios are recorded too. With CUDA present,
``gpu_soft_img_s`` / ``gpu_hard_img_s`` are the images/s of a weight step of the ``fbnet`` space
at 224×224, batch 128, bf16 autocast and channels_last, on one GPU; otherwise they are recorded
as not measured, with the reason.

    python benchmarks/search_scaling.py            # ~3 minutes on 2 cores
    python benchmarks/search_scaling.py --quick    # ~1 minute

Writes benchmarks/results/search_scaling.json and prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
RESULTS = HERE / "results" / "search_scaling.json"
TARGETS = {"ddp_efficiency_2proc": ">= 0.85"}
W_SHARE = 0.8  # FBNet: 80 % of the training images train the weights, 20 % train θ


# ---- one process's share (the baseline and every DDP rank run this) -------------------------------
PHASES = ("w", "theta")


class StepBench:
    """A super net of ``fbnet-fmnist`` set up by the search itself; times rounds of weight or θ steps."""

    def __init__(self, batch: int, threads: int) -> None:
        import torch

        from search import distributed
        from search.search_config import SearchConfig
        from search.search_setup import build_setup

        torch.set_num_threads(threads)
        config = SearchConfig.from_flat(
            out=tempfile.mkdtemp(prefix="hwnas-scaling-"),
            space="fbnet-fmnist",
            data="fashion-mnist",
            subset=max(2000, batch * 4),
            val_subset=100,
            batch_size=batch,
            torch_device="cpu",
            num_threads=threads,
            progress=False,
            plots=False,
        )
        self.setup = build_setup(config)
        self.batch = batch
        world, rank = distributed.world_size(), distributed.rank()
        local = batch // world
        self.x, self.y = self.setup.train_set.batch(self.setup.w_index[rank * local : (rank + 1) * local])

    def _steps(self, phase: str, steps: int) -> None:
        from search.search_epoch import train_step

        model = self.setup.model
        optimizer, frozen = (
            (self.setup.w_optimizer, model.arch_parameters())
            if phase == "w"
            else (self.setup.theta_optimizer, model.weight_parameters())
        )
        for p in frozen:  # as the search does: the other group gets no gradient
            p.requires_grad_(False)
        model.train()
        try:
            for _ in range(steps):
                train_step(self.setup, self.x, self.y, optimizer)
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def warm(self, steps: int) -> None:
        for phase in PHASES:
            self._steps(phase, steps)

    def round(self, phase: str, steps: int) -> float:
        """Seconds for ``steps`` steps of the whole job (barriers on both ends)."""
        from search import distributed

        distributed.barrier()
        t0 = time.perf_counter()
        self._steps(phase, steps)
        distributed.barrier()
        return time.perf_counter() - t0

    def local_round(self, phase: str, steps: int) -> float:
        """Seconds for the same steps on this rank's images without any communication (no DDP, no all-reduce)."""
        replica, self.setup.replica = self.setup.replica, None
        try:
            t0 = time.perf_counter()
            self._steps(phase, steps)
            return time.perf_counter() - t0
        finally:
            self.setup.replica = replica


def _wait_for(path: Path, proc: subprocess.Popen[str] | None = None, timeout_s: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"torchrun exited with {proc.returncode} before {path.name}:\n{proc.stderr.read()[-4000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.02)  # sleeping, not spinning: the other side has the CPUs


def worker(args: argparse.Namespace) -> None:
    """A DDP rank under torchrun: warm up, then time one round whenever the orchestrator says go."""
    from search import distributed

    distributed.init_from_env("cpu")
    ctrl = Path(args.ctrl)
    bench = StepBench(args.batch, args.threads)
    bench.warm(args.warmup)
    distributed.barrier()
    main = distributed.is_main()
    if main:
        (ctrl / "ready").touch()
    for k in range(args.rounds):
        for phase in PHASES:
            if main:
                _wait_for(ctrl / f"go_{k}_{phase}")
            seconds = bench.round(phase, args.steps)  # the other ranks wait in its first barrier
            local = bench.local_round(phase, args.steps)
            distributed.barrier()
            if main:
                (ctrl / f"done_{k}_{phase}").write_text(json.dumps([seconds, local]))
    distributed.shutdown()


def interleaved(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per round of 1 process (here) and of 2 DDP processes, taking turns so both see the same load."""
    ctrl = Path(tempfile.mkdtemp(prefix="hwnas-scaling-ctrl-"))
    threads = args.threads // 2
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        __file__,
        "--worker",
        "--ctrl",
        str(ctrl),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--rounds",
        str(args.rounds),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(threads),
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        bench = StepBench(args.batch, args.threads)
        bench.warm(args.warmup)
        _wait_for(ctrl / "ready", proc)
        one: dict[str, list[float]] = {p: [] for p in PHASES}
        two: dict[str, list[float]] = {p: [] for p in PHASES}
        local: dict[str, list[float]] = {p: [] for p in PHASES}
        for k in range(args.rounds):
            for phase in PHASES:
                one[phase].append(bench.round(phase, args.steps))
                (ctrl / f"go_{k}_{phase}").touch()
                _wait_for(ctrl / f"done_{k}_{phase}", proc)
                ddp_s, local_s = json.loads((ctrl / f"done_{k}_{phase}").read_text())
                two[phase].append(ddp_s)
                local[phase].append(local_s)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return one, two, local


def throughput(seconds: dict[str, list[float]], steps: int, batch: int) -> dict[str, float]:
    """Best-round images/s per phase and the search mix ``1 / (0.8 / w + 0.2 / θ)``."""
    out = {f"{phase}_img_s": steps * batch / min(seconds[phase]) for phase in PHASES}
    out["search_img_s"] = 1.0 / (W_SHARE / out["w_img_s"] + (1 - W_SHARE) / out["theta_img_s"])
    return out


# ---- GPU: the fbnet space at 224, batch 128 ---------------------------------------------------------
def fbnet_step_img_s(device: Any, mode: str, batch: int, steps: int, warmup: int) -> float:
    """Images/s of a weight step of the ``fbnet`` super net at 224 on ``device``: bf16 autocast, channels_last, FLOPs cost."""
    import torch

    from search.cost import FlopsCost
    from search.loss import LossConfig, search_loss
    from search.loss import default_cost_scale
    from search.space import get_space
    from search.supernet import SuperNet

    space = get_space("fbnet")
    cost = FlopsCost()
    layer_costs, fixed = cost.layer_costs(space), cost.fixed_cost(space)
    torch.manual_seed(0)
    model = SuperNet(space, mode=mode).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for p in model.arch_parameters():  # the weight phase: θ frozen
        p.requires_grad_(False)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.classes, (batch,), device=device)
    costs = model.cost_tensors(layer_costs)
    minimum = fixed + sum(min(row) for row in layer_costs)
    scale = default_cost_scale(model.distribution_cost(costs, fixed), minimum)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(x)
        ce = torch.nn.functional.cross_entropy(logits.float(), y)
        loss = search_loss(ce, model.expected_cost(costs, fixed), LossConfig(), cost_scale=scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * batch / (time.perf_counter() - t0)


def gpu_figures(steps: int, warmup: int, batch: int = 128) -> dict[str, Any]:
    """Images/s of a weight step of the fbnet super net at 224, batch 128 (soft and hard), or why not measured."""
    import torch

    if not torch.cuda.is_available():
        return {
            "gpu_soft_img_s": None,
            "gpu_hard_img_s": None,
            "gpu_device": None,
            "gpu_not_measured": f"no CUDA device visible to PyTorch {torch.__version__} on this machine "
            "(no accelerator was lent to this run)",
        }
    device = torch.device("cuda", 0)
    figures: dict[str, Any] = {
        "gpu_device": torch.cuda.get_device_name(device),
        "gpu_batch": batch,
        "gpu_settings": "bf16 autocast, channels_last, 1 GPU, weight step",
    }
    for mode in ("soft", "hard"):
        torch.cuda.reset_peak_memory_stats(device)
        try:
            figures[f"gpu_{mode}_img_s"] = round(fbnet_step_img_s(device, mode, batch, steps, warmup), 1)
            figures[f"gpu_{mode}_peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 1)
        except torch.cuda.OutOfMemoryError:
            figures[f"gpu_{mode}_img_s"] = None
            figures[f"gpu_{mode}_note"] = f"out of GPU memory at batch {batch}"
        torch.cuda.empty_cache()
    return figures


def main() -> None:
    # OpenMP threads that spin while waiting stall badly when other programs hold the cores (a shared
    # machine): the 2-thread baseline then runs many times slower, for reasons unrelated to DDP.
    # Passive waiting only helps the baseline (the DDP ranks run 1 thread each), so the comparison
    # stays conservative. Set before torch (libgomp) is loaded; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    ap.add_argument("--threads", type=int, default=max(2, os.cpu_count() or 2), help="total CPU threads (even)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ctrl", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    args.steps = args.steps or (3 if args.quick else 6)
    args.rounds = args.rounds or (2 if args.quick else 3)
    if args.worker:
        worker(args)
        return
    if args.threads % 2:
        raise SystemExit("--threads must be even (the 2 processes share them equally)")

    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    one_s, two_s, local_s = interleaved(args)
    one, two = throughput(one_s, args.steps, args.batch), throughput(two_s, args.steps, args.batch)
    alone = throughput(local_s, args.steps, args.batch)  # rank 0's compute alone, scaled to the global batch
    import torch

    mix = [
        1.0 / (W_SHARE / (args.steps * args.batch / a) + (1 - W_SHARE) / (args.steps * args.batch / b))
        for a, b in zip(one_s["w"], one_s["theta"])
    ]
    mix2 = [
        1.0 / (W_SHARE / (args.steps * args.batch / a) + (1 - W_SHARE) / (args.steps * args.batch / b))
        for a, b in zip(two_s["w"], two_s["theta"])
    ]
    figures: dict[str, Any] = {
        "ddp_efficiency_2proc": round(two["search_img_s"] / one["search_img_s"], 3),
        "img_s_1proc": round(one["search_img_s"], 1),
        "img_s_2proc": round(two["search_img_s"], 1),
        "w_img_s_1proc": round(one["w_img_s"], 1),
        "w_img_s_2proc": round(two["w_img_s"], 1),
        "theta_img_s_1proc": round(one["theta_img_s"], 1),
        "theta_img_s_2proc": round(two["theta_img_s"], 1),
        "w_efficiency_2proc": round(two["w_img_s"] / one["w_img_s"], 3),
        "theta_efficiency_2proc": round(two["theta_img_s"] / one["theta_img_s"], 3),
        "round_efficiencies": [round(b / a, 3) for a, b in zip(mix, mix2)],
        # The same steps on rank 0's half batch without DDP or all-reduce, in the same processes right after each
        # DDP round: what the synchronisation itself costs, independent of how threads fare on a loaded machine.
        "ddp_sync_efficiency": round(two["search_img_s"] / alone["search_img_s"], 3),
        "w_sync_efficiency": round(two["w_img_s"] / alone["w_img_s"], 3),
        "theta_sync_efficiency": round(two["theta_img_s"] / alone["theta_img_s"], 3),
        "space": "fbnet-fmnist",
        "global_batch": args.batch,
        "total_threads": args.threads,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "load_avg_1min_before": round(load_before, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
    }
    figures.update(gpu_figures(steps=5 if args.quick else 20, warmup=3))
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    met = {"ddp_efficiency_2proc": figures["ddp_efficiency_2proc"] >= 0.85}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"figures": figures, "targets": TARGETS, "met": met}, indent=2) + "\n")
    gpu = (
        f"GPU {figures['gpu_device']}: soft {figures['gpu_soft_img_s']} img/s, hard {figures['gpu_hard_img_s']} img/s"
        if figures.get("gpu_device")
        else f"GPU not measured ({figures['gpu_not_measured']})"
    )
    print(
        f"search_scaling: ddp_efficiency_2proc {figures['ddp_efficiency_2proc']:.3f} (target >= 0.85, "
        f"{'met' if met['ddp_efficiency_2proc'] else 'NOT met'}): 2 procs {figures['img_s_2proc']} img/s vs 1 proc "
        f"{figures['img_s_1proc']} img/s at {args.threads} threads, batch {args.batch}; DDP sync efficiency "
        f"{figures['ddp_sync_efficiency']:.3f}; load {figures['load_avg_1min_before']}; {gpu}"
    )


if __name__ == "__main__":
    main()
