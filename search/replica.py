"""One process's share of a search: DDP for the weights, averaged θ gradients, data shards, AMP, channels_last.

``attach(setup)`` returns a ``Replica`` that the search's epochs (``search.search_epoch``) call at five
points — forward, after backward, at the start of an epoch, when it picks a phase's batches and
when it evaluates — or ``None`` for a plain single-process float32 run, which then runs
exactly as before. What it does, and why:

* **Global batch.** ``--batch-size`` is the batch of the whole job; each of N processes takes
  ``batch_size / N``. The learning rates, the schedule and the checkpoint then mean the same on
  any number of processes, which is what lets a checkpoint of N processes resume on M.
* **Data.** Both splits (weights 80 %, θ 20 %) are sharded with a ``DistributedSampler`` each
  (``drop_last``, reshuffled every epoch by ``set_epoch``), so every rank takes the same number
  of steps. Evaluation is sharded too and the counts are summed.
* **Weights.** ``DistributedDataParallel`` averages their gradients during the weight phase.
  DDP wraps a view of the super net that holds every weight but not θ; ``hard`` mode runs one
  candidate per layer, so it needs ``find_unused_parameters``.
* **θ.** θ stays outside DDP: after each θ backward its gradients are averaged with one
  all-reduce (a few hundred floats), so every rank applies the same Adam step to the same θ and
  θ stays bitwise identical; this is checked at the end of every epoch. The θ phase calls the
  super net directly, so no weight gradients are reduced while the weights are frozen.
* **Gumbel noise: shared.** Every rank seeds torch's generator from ``(seed, epoch)`` and draws
  the same noise in the same order, so all ranks sample the same masks (in ``hard`` mode, the
  same sub-network) at every step. The job then computes what one process computes on the global
  batch — one architecture sample per step, as in FBNet — independent of the number of
  processes; DDP sees the same used parameters on every rank, so a candidate's gradient is
  never silently averaged with zeros from ranks that did not run it. (Per-rank noise would
  lower the variance of the θ gradient, but would make the search depend on N.)
* **BatchNorm.** By default each rank normalises with the statistics of its own ``B/N`` images;
  the running statistics of rank 0 are broadcast before every evaluation, so all ranks evaluate
  and checkpoint the same network. ``--sync-bn`` uses ``SyncBatchNorm`` (statistics of the
  global batch, as one process would compute them; needed when ``B/N`` gets small); PyTorch
  implements it for GPUs only.
* **Device path.** ``--amp bf16`` runs forward passes under ``torch.autocast`` with bfloat16 (no
  loss scaling needed); ``--channels-last`` stores weights and inputs NHWC (faster convolutions
  on tensor-core GPUs).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from hwnas.errors import HwnasError
from search import distributed as dist_util
from search.evaluate import evaluate_model

if TYPE_CHECKING:
    from torch.utils.data import Dataset
    from torch.utils.data.distributed import DistributedSampler

AMP_MODES: tuple[str, ...] = ("off", "bf16")


class ReplicaConfigError(HwnasError, ValueError):
    """Options a replica cannot honour (batch not divisible, SyncBatchNorm on CPU, bf16 unsupported)."""


class WeightsView(nn.Module):
    """The super net's weights without θ; its forward runs the whole super net (what DDP wraps)."""

    net: nn.Module  # set with object.__setattr__, so not a submodule

    def __init__(self, net: nn.Module, theta: list[nn.Parameter]) -> None:
        super().__init__()
        theta_ids = {id(p) for p in theta}
        self.parts = nn.ModuleDict(
            {name: child for name, child in net.named_children() if not any(id(p) in theta_ids for p in child.parameters())}
        )
        object.__setattr__(self, "net", net)  # not a submodule: θ stays outside DDP
        mine = {id(p) for p in self.parameters()}
        weights = {id(p) for p in net.parameters() if id(p) not in theta_ids}
        if mine != weights:
            # θ shares a module with weights: DDP would miss some weights. Refuse rather than train them unsynced.
            raise RuntimeError("super net layout: θ must live in its own child module, apart from every weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Replica:
    """The distributed and device hooks of one process's search (see the module docstring)."""

    def __init__(self, setup: Any, amp: str = "off", channels_last: bool = False, sync_bn: bool = False) -> None:
        if amp not in AMP_MODES:
            raise ReplicaConfigError(f"--amp must be one of {', '.join(AMP_MODES)}, not {amp!r}")
        self.setup = setup
        self.world = dist_util.world_size()
        self.rank = dist_util.rank()
        cfg, model, device = setup.config, setup.model, setup.device
        batch_size = cfg.schedule.batch_size
        if batch_size % self.world:
            raise ReplicaConfigError(
                f"--batch-size {batch_size} is the batch of the whole job: it must be a multiple of the {self.world} processes"
            )
        self.local_batch = batch_size // self.world
        self.amp_dtype = torch.bfloat16 if amp == "bf16" else None
        if self.amp_dtype is not None and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ReplicaConfigError(f"--amp bf16: {torch.cuda.get_device_name(device)} does not support bfloat16")
        self.channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.theta = list(model.arch_parameters())
        self._theta_ids = {id(p) for p in self.theta}
        self.sync_bn = bool(sync_bn and self.world > 1)
        if self.sync_bn:
            if device.type != "cuda":
                raise ReplicaConfigError(
                    "--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); "
                    "on CPU each process normalises its own share of the batch"
                )
            # Converts in place below the root and keeps the same Parameter objects, so the optimisers stay valid.
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.ddp: nn.Module | None = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                WeightsView(model, self.theta),
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=model.mode == "hard",
            )
        self._samplers: dict[int, Any] = {}
        self._epoch = 0

    # ------------------------------------------------------------------ hooks of the search loop
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast on this process's device with ``--amp bf16``; nothing otherwise."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.setup.device.type, dtype=self.amp_dtype)

    def forward(self, x: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """Logits (float32) of a training step; through DDP when the step trains the weights."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        trains_weights = optimizer is not self.setup.theta_optimizer
        net = self.ddp if (self.ddp is not None and trains_weights) else self.setup.model
        with self.autocast():
            logits = net(x)
        return logits.float()

    def reduce_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Average the θ gradients of ``optimizer`` over the ranks (DDP already did the weights')."""
        if self.world == 1:
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if id(p) in self._theta_ids]
        dist_util.average_gradients_(params)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the shards for epoch ``epoch`` (``DistributedSampler.set_epoch``)."""
        self._epoch = epoch
        for sampler in self._samplers.values():
            sampler.set_epoch(epoch)

    def shard(self, index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """This rank's images of a split for this epoch, in order, and its share of the batch.

        One process keeps the loop's own shuffle (drawn from ``generator``), so a run with AMP on
        one process sees the same batches as a plain run.
        """
        if self.world == 1:
            return index[torch.randperm(len(index), generator=generator)], self.local_batch
        sampler = self._sampler_for(index)
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        return index[order], self.local_batch

    def sum_over_ranks(self, sums: dict[str, float]) -> dict[str, float]:
        """The phase's running sums (loss·n, correct, n, …) added over all ranks, for the epoch log."""
        if self.world == 1:
            return sums
        keys = sorted(sums)
        t = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64, device=self._collective_device())
        dist_util.all_reduce_sum_(t)
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def evaluate(
        self, model: nn.Module, ds: Any, index: torch.Tensor, batch_size: int, device: torch.device, workers: int = 0
    ) -> float:
        """Top-1 accuracy on ``ds[index]`` split over the ranks, after checking θ and taking rank 0's BN statistics."""
        self.check_theta()
        self.sync_buffers()
        local = index[self.rank :: self.world]
        with self.autocast():
            acc = evaluate_model(model, ds, local, batch_size, device, workers)
        if self.world == 1:
            return acc
        counts = torch.tensor([round(acc * len(local)), len(local)], dtype=torch.float64, device=self._collective_device())
        dist_util.all_reduce_sum_(counts)
        return float(counts[0]) / max(float(counts[1]), 1.0)

    # ------------------------------------------------------------------ consistency
    def theta_vector(self) -> torch.Tensor:
        """θ of every layer as one flat tensor (a copy)."""
        return torch.cat([t.detach().reshape(-1) for t in self.theta]).clone()

    def check_theta(self) -> None:
        """Raise ``DistributedError`` unless θ holds the same bits on every rank."""
        if self.world > 1 and not dist_util.ranks_agree(self.theta_vector()):
            raise dist_util.DistributedError(
                f"θ differs between ranks after epoch {self._epoch + 1}: the ranks went out of step "
                "(different data, code or PyTorch versions?)"
            )

    def sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm running statistics (the θ phase updates them locally)."""
        if self.world > 1:
            dist_util.broadcast_tensors_(list(self.setup.model.buffers()))

    # ------------------------------------------------------------------ internals
    def _collective_device(self) -> torch.device:
        return self.setup.device if self.setup.device.type == "cuda" else torch.device("cpu")

    def _sampler_for(self, index: torch.Tensor) -> DistributedSampler[int]:
        from torch.utils.data.distributed import DistributedSampler

        key = id(index)
        if key not in self._samplers:
            # One sampler per split; the seeds differ so the two splits are not shuffled alike.
            split = 1 if index is self.setup.w_index else 2 if index is self.setup.theta_index else 3 + len(self._samplers)
            sampler: DistributedSampler[int] = DistributedSampler(
                cast("Dataset[int]", range(len(index))),  # the sampler only takes its length
                num_replicas=self.world,
                rank=self.rank,
                shuffle=True,
                seed=self.setup.config.run.seed * 1_000_003 + split * 100_003,
                drop_last=True,
            )
            sampler.set_epoch(self._epoch)
            self._samplers[key] = sampler
        return self._samplers[key]

    def describe(self) -> dict[str, Any]:
        """What this replica does, for the run's log."""
        return {
            "world_size": self.world,
            "backend": dist_util._dist().get_backend() if self.world > 1 else None,
            "device": str(self.setup.device),
            "local_batch": self.local_batch,
            "amp": "bf16" if self.amp_dtype is not None else "off",
            "channels_last": self.channels_last,
            "sync_bn": self.sync_bn,
            "gumbel_noise": "shared",
        }


def attach(setup: Any, amp: str = "off", channels_last: bool = False, sync_bn: bool = False) -> Replica | None:
    """The replica hooks ``setup`` needs, or None for a plain single-process float32 run."""
    if dist_util.world_size() == 1 and amp == "off" and not channels_last:
        return None
    return Replica(setup, amp=amp, channels_last=channels_last, sync_bn=sync_bn)
