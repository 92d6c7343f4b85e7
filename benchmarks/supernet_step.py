"""Training-step time and peak memory of the super net (soft and hard mode) against the sampled child alone.

Space ``fbnet-fmnist`` (9 layers × 11 candidates), batch 64, one process. For each of K sampled
paths the hard-mode super net is re-seeded so that it draws that same path, and the child network
of that path is built and trained alone: ``hard_vs_child_step`` compares the two on identical
architectures. ``soft_vs_child_step`` compares the soft super net (every candidate runs) with the
mean child. A step is forward, the FBNet loss with the expected cost (FLOPs), backward, and the
optimiser steps (SGD on weights; Adam on θ for the super nets). Rounds interleave the
configurations so that drift of a shared machine hits all alike; each figure is a median.

Memory: on CUDA the allocator's peak (``max_memory_allocated``); on CPU the peak resident set of
one step above the resident set before it (``VmHWM`` after resetting it through
``/proc/self/clear_refs``, with glibc told to return every block ≥ 64 KiB to the OS so freed
activations do not linger).

    python benchmarks/supernet_step.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from search.arch import build_network  # noqa: E402
from search.cost import FlopsCost  # noqa: E402
from search.loss import fbnet_loss  # noqa: E402
from search.space import get_space  # noqa: E402
from search.supernet import SuperNet  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "supernet_step.json"
BATCH = 64


# ---------------------------------------------------------------- memory
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


LIBC = _libc()


def _status_kb(field: str) -> int | None:
    try:
        m = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) if m else None


class PeakMemory:
    """Peak memory of a block of work above what was in use before it, in MiB."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu_ok = False
        if device.type == "cpu" and LIBC is not None and _status_kb("VmHWM") is not None:
            LIBC.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: fixed, so big blocks are unmapped when freed
            self.cpu_ok = self._reset_hwm()

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            return True
        except OSError:
            return False

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        elif self.cpu_ok:
            LIBC.malloc_trim(0)
            self.base = _status_kb("VmRSS") * 1024
            self._reset_hwm()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        elif self.cpu_ok:
            self.peak = _status_kb("VmHWM") * 1024 - self.base
        else:
            self.peak = float("nan")

    @property
    def mib(self) -> float:
        return self.peak / 2**20


# ---------------------------------------------------------------- steps
class Trainer:
    """One training step of a network: forward, (FBNet) loss, backward, optimiser steps."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        costs: list[torch.Tensor] | None = None,
        fixed: float = 0.0,
        scale: float = 1.0,
    ) -> None:
        self.model = model.to(device).train()
        self.device = device
        self.costs, self.fixed, self.scale = costs, fixed, scale
        if isinstance(model, SuperNet):
            self.opts = [
                torch.optim.SGD(model.weight_parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4),
                # lr 0: the full Adam step is computed but θ stays put, so a seed keeps drawing one path
                torch.optim.Adam(model.arch_parameters(), lr=0.0, weight_decay=5e-4),
            ]
        else:
            self.opts = [torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        logits = self.model(x)
        ce = nn.functional.cross_entropy(logits, y)
        if isinstance(self.model, SuperNet):
            lat = self.model.expected_cost(self.costs, self.fixed) * self.scale
        else:
            lat = torch.tensor(self.fixed * self.scale, device=self.device)  # a child's cost is a constant
        loss = fbnet_loss(ce, lat)
        for o in self.opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in self.opts:
            o.step()
        for o in self.opts:
            o.zero_grad(set_to_none=True)

    def timed(self, x: torch.Tensor, y: torch.Tensor, seed: int | None = None) -> float:
        if seed is not None:
            torch.manual_seed(seed)  # the hard super net then draws the same path every time
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        self.step(x, y)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer paths and rounds (CI smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the machine is shared)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    )
    paths_n, rounds = (4, 3) if args.quick else (6, 5)

    space = get_space("fbnet-fmnist")
    n_cand = max(len(layer.candidates) for layer in space.layers())
    cost = FlopsCost()
    layer_costs, fixed = cost.layer_costs(space), cost.fixed_cost(space)
    torch.manual_seed(0)
    x = torch.randn(BATCH, *space.input_shape, device=device)
    y = torch.randint(0, space.classes, (BATCH,), device=device)

    hard = Trainer(SuperNet(space, mode="hard"), device)
    soft = Trainer(SuperNet(space, mode="soft"), device)
    for t in (hard, soft):
        t.costs = t.model.cost_tensors(layer_costs)
        t.fixed = fixed
        t.scale = 20.0 / t.model.distribution_cost(t.costs, fixed)

    # The paths: what the hard super net draws under seeds 1..K (θ uniform: uniform over the space).
    seeds = list(range(1, paths_n + 1))
    paths = []
    for s in seeds:
        torch.manual_seed(s)
        hard.step(x, y)
        paths.append(list(hard.model.last_indices))
    children = []
    for p in paths:
        choices = [layer.candidates[i] for layer, i in zip(space.layers(), p)]
        c_fixed = fixed + sum(layer_costs[l][i] for l, i in enumerate(p))
        children.append(Trainer(build_network(space, choices), device, fixed=c_fixed, scale=hard.scale))

    # warm-up: allocator, kernels, optimiser state
    for child, s in zip(children, seeds):
        child.step(x, y)
        hard.timed(x, y, s)
    soft.step(x, y)

    t_child: list[list[float]] = [[] for _ in paths]
    t_hard: list[list[float]] = [[] for _ in paths]
    t_soft: list[float] = []
    for _ in range(rounds):
        for k, s in enumerate(seeds):
            t_child[k].append(children[k].timed(x, y))
            t_hard[k].append(hard.timed(x, y, s))
            assert hard.model.last_indices == paths[k], "the hard super net left the child's path"
        t_soft.append(soft.timed(x, y))

    mem = PeakMemory(device)
    m_child, m_hard = [], []
    for k, s in enumerate(seeds):
        with PeakMemory(device) as m:
            children[k].step(x, y)
        m_child.append(m.mib)
        torch.manual_seed(s)
        with PeakMemory(device) as m:
            hard.step(x, y)
        m_hard.append(m.mib)
    with PeakMemory(device) as m:
        soft.step(x, y)
    m_soft = m.mib

    child_ms = statistics.mean(statistics.median(t) for t in t_child) * 1e3
    hard_ms = statistics.mean(statistics.median(t) for t in t_hard) * 1e3
    soft_ms = statistics.median(t_soft) * 1e3
    child_mib, hard_mib = statistics.mean(m_child), statistics.mean(m_hard)
    soft_target = round(1.1 * n_cand, 2)
    figures = {
        "hard_vs_child_step": round(hard_ms / child_ms, 3),
        "soft_vs_child_step": round(soft_ms / child_ms, 3),
        "hard_vs_child_mem": round(hard_mib / child_mib, 3),
        "soft_vs_child_mem": round(m_soft / child_mib, 3),
        "child_step_ms": round(child_ms, 2),
        "hard_step_ms": round(hard_ms, 2),
        "soft_step_ms": round(soft_ms, 2),
        "child_peak_mib": round(child_mib, 2),
        "hard_peak_mib": round(hard_mib, 2),
        "soft_peak_mib": round(m_soft, 2),
        "candidates_per_layer": n_cand,
        "per_path_hard_vs_child_step": [round(statistics.median(h) / statistics.median(c), 3) for h, c in zip(t_hard, t_child)],
    }
    targets = {"hard_vs_child_step": "<= 1.3", "soft_vs_child_step": f"<= {soft_target}"}
    met = {
        "hard_vs_child_step": figures["hard_vs_child_step"] <= 1.3,
        "soft_vs_child_step": figures["soft_vs_child_step"] <= soft_target,
    }
    doc = {
        "figures": figures,
        "targets": targets,
        "met": met,
        "setup": {
            "space": "fbnet-fmnist",
            "batch": BATCH,
            "paths": paths_n,
            "rounds": rounds,
            "device": str(device),
            "threads": args.threads,
            "quick": args.quick,
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "memory_method": "cuda max_memory_allocated"
            if device.type == "cuda"
            else ("VmHWM above VmRSS (clear_refs)" if mem.cpu_ok else "unavailable"),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    print(
        f"supernet_step: hard/child step {figures['hard_vs_child_step']:.2f}x (target <= 1.3, "
        f"{'met' if met['hard_vs_child_step'] else 'NOT met'}), soft/child step {figures['soft_vs_child_step']:.2f}x "
        f"(target <= {soft_target}, {'met' if met['soft_vs_child_step'] else 'NOT met'}), "
        f"mem hard {figures['hard_vs_child_mem']:.2f}x soft {figures['soft_vs_child_mem']:.2f}x "
        f"[{device}, {args.threads} thread(s), batch {BATCH}]"
    )


if __name__ == "__main__":
    main()
