"""The DNAS training loop (FBNet): weights on 80% of the training set, θ on the other 20%.

Per epoch: the weights take a pass over their split (SGD, cosine learning rate), then — after the
warm-up epochs — θ takes a pass over its split (Adam); then the super net is evaluated, the
epoch is logged to ``DIR/theta.json`` and a checkpoint is written.

Schedules that work at any length (docs/search.md, "Schedules"): the warm-up is a share of the
epochs but at least one (the weights must be past chance before θ reads their loss); τ is
annealed every step from ``tau0`` to ``tau_end``, reached at the last step, whatever the number of
epochs (``tau_schedule="epoch"`` is the paper's ``τ0·e^(−0.045·epoch)``); θ's Adam step, when not
given, is sized by the number of θ steps the search will take. A θ split smaller than one batch
is an error, and a search whose θ stayed near uniform says so instead of ending quietly.

The pieces are separate so that a distributed launcher can wrap them: ``build_setup`` (data,
cost table, model, optimisers), ``train_epoch`` (one epoch, no file I/O), and ``run_search``
(the loop, with every write through ``RunDir``, which only rank 0 performs). Every epoch
re-seeds torch from ``(seed, epoch)``, so a resumed run draws the same batches and Gumbel noise
as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search.data import DatasetInfo, NoEvaluationSplit, dataset_info, iterate_batches, load_dataset, num_batches
from search.evaluate import evaluate_model as evaluate
from search.evaluate import recalibrated_bn
from search.cost import CostTable
from search.loss import LossConfig, default_cost_scale, search_loss
from search.mixed import THETA_ESTIMATORS, normalised_entropy
from search.progress import EpochProgress
from search.rundir import RunDir
from search.supernet import SuperNet

COSTS: tuple[str, ...] = ("latency", "flops", "params")
TAU_SCHEDULES: tuple[str, ...] = ("step", "epoch")
# FBNet's θ learning rate, for its ~90 epochs of ImageNet-100 (thousands of θ steps).
PAPER_THETA_LR = 0.01
# How far (in logits) Adam may carry θ over the whole search when --theta-lr is not given: enough to
# decide a layer of 11 candidates (normalised entropy 0.5 needs p ≈ 0.75, a lead of about log 30 ≈ 3.4 over
# the others) with room for the first θ epochs' detours. Measured on fbnet-fmnist (45 θ steps): 4 logits
# left the entropy at 0.92 after 5 of 6 epochs, 8 brought it to 0.55 with the decision term.
THETA_TRAVEL = 8.0
# ... but no step larger than this share of the travel: with fewer than 40 θ steps the gradient is too noisy
# to follow further, and one step may not overturn a layer's ranking (0.2 for the default travel).
MIN_THETA_STEPS = 40
# Mean normalised entropy above which θ is reported as not having moved (1.0 = uniform).
UNMOVED_ENTROPY = 0.9
# Super-net training accuracy below this multiple of chance: the weights learned next to nothing, so θ's
# accuracy gradient is noise and θ followed the cost alone. Measured: a hard-mode super net of fbnet-fmnist
# (one random path of 11 candidates × 9 layers per step) stays at 10–14% after 6 epochs on 5,000 images,
# where soft mode is at 54% after one (docs/search.md, "Hard or soft").
UNTRAINED_ACC_FACTOR = 2.0
# Weight of the decision term (mean normalised entropy of softmax θ) at the last θ step; it ramps up linearly
# from 0 at the first. A short search's accuracy gradient is too noisy to carry θ far by itself (measured: soft
# searches of 8 epochs on 5,000 images ended at entropy 0.93–0.94); the term makes θ commit to the candidates
# that lead by then, while the cost term keeps the expected cost on its target. Measured on fbnet-fmnist (soft,
# 5 epochs on 3,000 images, target loss λ 5): entropy 0.48 at the end with 3, expected cost 4% off the target.
THETA_DECIDE = 3.0


class SearchConfigError(ValueError):
    """A search that cannot start as configured (bad option, output folder in use, resume mismatch)."""


@dataclass
class SearchConfig:
    """Everything that defines a search; saved as ``DIR/config.json``. Defaults follow the FBNet paper."""

    out: str
    space: str = "fbnet-fmnist"
    data: str = "fashion-mnist"
    cost: str = "flops"
    # latency table: from a profiler-server, or a local table file
    server: str | None = None
    device: str | None = None
    runtime: str | None = None
    threads: int | None = None
    token: str | None = None
    lut: str | None = None
    cache_dir: str | None = None
    # super net and schedule
    mode: str = "soft"
    theta_estimator: str = "soft"  # hard mode's θ step: soft (every candidate) or straight-through (search/mixed.py)
    epochs: int = 10
    warmup_fraction: float = 0.1  # first 10% of the epochs (at least one) train the weights only
    warmup_epochs: int | None = None  # overrides warmup_fraction
    batch_size: int = 128
    w_split: float = 0.8
    w_lr: float = 0.1
    w_momentum: float = 0.9
    w_wd: float = 1e-4
    theta_lr: float | None = None  # None: 8 / θ steps, within [0.01, 0.2] — see resolved_theta_lr
    theta_wd: float = 5e-4
    theta_decide: float = THETA_DECIDE  # weight of θ's entropy in its loss at the last θ step (0 at the first)
    theta_travel: float = THETA_TRAVEL  # theta_lr None: Adam's step is sized to carry θ this many logits
    tau0: float = 5.0
    tau_end: float = 0.5  # τ at the last step of the "step" schedule
    tau_schedule: str = "step"  # step: τ0 → tau_end per step; epoch: the paper's τ0·exp(−tau_decay·epoch)
    tau_decay: float = 0.045
    # loss
    loss: str = "fbnet"
    alpha: float = 0.2
    beta: float = 0.6
    lam: float | None = None
    target: float | None = None
    target_tolerance: float = 0.02  # target loss: the shipped network's predicted cost within target·(1 ± this)
    reference: float | None = None
    cost_scale: float | None = None  # FBNet form only; None: see search.loss.default_cost_scale
    # data and run
    subset: int | None = None
    val_subset: int | None = None
    bn_calibration: int = 2000  # hard mode: training images that recompute BN statistics of the evaluated path
    image_size: int | None = None
    seed: int = 0
    torch_device: str = "auto"
    num_threads: int | None = None
    workers: int = 0
    progress: bool = True
    plots: bool = True
    resume: bool = False
    # device path and distributed search (search/replica.py; docs/distributed.md)
    amp: str = "off"  # "bf16": forward passes under torch.autocast with bfloat16
    channels_last: bool = False
    sync_bn: bool = False  # SyncBatchNorm across processes (GPUs only)

    def __post_init__(self) -> None:
        if self.cost not in COSTS:
            raise SearchConfigError(f"--cost must be one of {', '.join(COSTS)}, not {self.cost!r}")
        if self.mode not in ("soft", "hard"):
            raise SearchConfigError(f"--mode must be soft or hard, not {self.mode!r}")
        if self.theta_estimator not in THETA_ESTIMATORS:
            raise SearchConfigError(f"--theta-estimator must be one of {', '.join(THETA_ESTIMATORS)}, "
                                    f"not {self.theta_estimator!r}")
        if self.tau_schedule not in TAU_SCHEDULES:
            raise SearchConfigError(f"--tau-schedule must be one of {', '.join(TAU_SCHEDULES)}, not {self.tau_schedule!r}")
        if not (self.tau0 > 0 and self.tau_end > 0):
            raise SearchConfigError("--tau0 and --tau-end must be positive")
        if self.theta_decide < 0:
            raise SearchConfigError("--theta-decide must be 0 (off) or positive")
        if self.theta_lr is not None and self.theta_lr <= 0:
            raise SearchConfigError("--theta-lr must be positive")
        if self.epochs < 1:
            raise SearchConfigError("--epochs must be at least 1")
        if not 0.0 < self.w_split < 1.0:
            raise SearchConfigError("--w-split must be between 0 and 1 (share of the training set for the weights)")
        if self.batch_size < 1:
            raise SearchConfigError("--batch-size must be at least 1")
        if self.cost == "latency" and not self.lut and not (self.server and self.device):
            raise SearchConfigError("--cost latency needs --server URL --device NAME (or --lut FILE)")
        try:
            self.loss_config()
        except ValueError as exc:
            raise SearchConfigError(str(exc)) from None

    # derived
    @property
    def num_warmup_epochs(self) -> int:
        """Weights-only epochs: as given, else ``warmup_fraction`` of them but at least one (none in a 1-epoch search)."""
        if self.warmup_epochs is not None:
            return max(0, min(self.warmup_epochs, self.epochs))
        return max(0, min(max(1, round(self.warmup_fraction * self.epochs)), self.epochs - 1))

    def tau(self, epoch: float) -> float:
        """Gumbel-softmax temperature at ``epoch`` (0-based; a fraction is a point inside the epoch)."""
        if self.tau_schedule == "epoch":
            return self.tau0 * math.exp(-self.tau_decay * math.floor(epoch))
        return self.tau0 * (self.tau_end / self.tau0) ** min(1.0, max(0.0, epoch / self.epochs))

    def w_lr_at(self, epoch: int) -> float:
        """Cosine learning rate of the weights in epoch ``epoch``: from w_lr down towards 0 at the last epoch.

        A closed form rather than a scheduler object: a resumed search that is given more epochs
        follows the cosine of its new length.
        """
        return self.w_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))

    def loss_config(self) -> LossConfig:
        return LossConfig(form=self.loss, alpha=self.alpha, beta=self.beta, lam=self.lam, reference=self.reference,
                          target=self.target)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("token", None)  # never write a secret into the run folder
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# Fields that must match between a checkpoint and the config that resumes it.
_RESUME_FIELDS = ("space", "data", "cost", "mode", "batch_size", "w_split", "subset", "seed", "loss", "alpha", "beta",
                  "lam", "target", "tau0", "tau_decay", "w_lr", "theta_lr", "image_size", "tau_end", "tau_schedule",
                  "theta_estimator", "theta_decide", "theta_travel")


def make_cost_model(config: SearchConfig):
    """The cost model the config asks for; a latency table comes from the server (ETag-cached) or a file."""
    from search import cost as cost_mod

    if config.cost == "flops":
        return cost_mod.FlopsCost()
    if config.cost == "params":
        return cost_mod.ParamsCost()
    from search import lut

    if config.lut:
        table = lut.load_table(config.lut)
    else:
        kwargs: dict[str, Any] = {"runtime": config.runtime, "threads": config.threads, "token": config.token}
        if config.cache_dir:
            kwargs["cache_dir"] = config.cache_dir
        table = lut.fetch_table(config.server, config.device, **kwargs)
    return cost_mod.LatencyCost(table)


def cost_table(cost_model, space, config: SearchConfig | None = None) -> CostTable:
    """Evaluate a cost model on every candidate of every layer of ``space``."""
    source: dict[str, Any] = {}
    if config is not None and config.cost == "latency":
        source = {"server": config.server, "device": config.device, "runtime": config.runtime,
                  "threads": config.threads, "lut": config.lut}
        table = getattr(cost_model, "table", None)
        for k in ("device", "runtime", "threads", "overhead_ms"):
            if table is not None and getattr(table, k, None) is not None:
                source[f"table_{k}"] = getattr(table, k)
    return CostTable(name=getattr(cost_model, "name", config.cost if config else "cost"),
                     unit=getattr(cost_model, "unit", ""),
                     layer_costs=[[float(c) for c in row] for row in cost_model.layer_costs(space)],
                     fixed=float(cost_model.fixed_cost(space)), source=source)


@dataclass
class SearchSetup:
    """What one process needs to run epochs: data, model, optimisers and costs."""

    config: SearchConfig
    space: Any
    info: DatasetInfo
    train_set: Any
    val_set: Any
    w_index: torch.Tensor
    theta_index: torch.Tensor
    val_index: torch.Tensor
    model: SuperNet
    w_optimizer: torch.optim.Optimizer
    theta_optimizer: torch.optim.Optimizer
    costs: CostTable
    cost_tensors: list[torch.Tensor]
    cost_scale: float
    reference: float
    device: torch.device
    theta_lr: float = PAPER_THETA_LR
    replica: Any = None  # search.replica.Replica: DDP, data shards, AMP (None: plain single process)


def _torch_device(name: str) -> torch.device:
    from search.distributed import local_device

    return local_device(name)  # auto: cuda:LOCAL_RANK when CUDA is available, else cpu


def _space_for_data(space_name: str, info: DatasetInfo):
    from search.space import get_space

    space = get_space(space_name)
    c, h, w = info.input_shape
    if tuple(space.input_shape) != (c, h, w) or space.classes != info.num_classes:
        if space.input_shape[0] != c:
            raise SearchConfigError(f"space {space.name!r} takes {space.input_shape[0]}-channel input, "
                                    f"data set {info.name!r} has {c} channels")
        # Same stage table at the data set's size and class count.
        space = space.with_input((h, w), info.num_classes)
    return space


def _default_supernet(space: Any, config: SearchConfig) -> nn.Module:
    return SuperNet(space, mode=config.mode, temperature=config.tau(0))


def _default_theta_optimizer(params: list[nn.Parameter], config: SearchConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=config.theta_lr, weight_decay=config.theta_wd)


def theta_steps(config: SearchConfig, theta_images: int) -> int:
    """θ steps of the whole search: θ batches per epoch (incomplete ones dropped) times the searching epochs."""
    return (theta_images // config.batch_size) * (config.epochs - config.num_warmup_epochs)


def resolved_theta_lr(config: SearchConfig, theta_images: int) -> float:
    """``--theta-lr`` as given, else FBNet's 0.01 raised (up to 0.2) so that θ can travel ``theta_travel`` logits in its steps.

    Adam's step is about its learning rate whatever the gradient's size, so the distance θ can move
    is about lr × steps: 0.01 suits the paper's thousands of θ steps, a short search needs more.
    """
    if config.theta_lr is not None:
        return float(config.theta_lr)
    steps = max(MIN_THETA_STEPS, theta_steps(config, theta_images))
    return max(PAPER_THETA_LR, config.theta_travel / steps)


def check_splits(config: SearchConfig, n_w: int, n_theta: int) -> None:
    """Both splits hold at least one batch (incomplete batches are dropped, so a smaller split never trains)."""
    bs = config.batch_size
    need = math.ceil(bs / min(config.w_split, 1.0 - config.w_split) - 1e-9)
    hint = f"use --subset {need} or more, or a smaller --batch-size"
    if n_w < bs:
        raise SearchConfigError(f"the weights' split has {n_w} images, fewer than one batch of {bs}: {hint}")
    if config.epochs > config.num_warmup_epochs and n_theta < bs:
        raise SearchConfigError(f"the θ split has {n_theta} images ({1 - config.w_split:.0%} of {n_w + n_theta}), fewer than "
                                f"one batch of {bs}: θ would never take a step; {hint}")


def build_setup(config: SearchConfig, cost_model=None, *,
                make_space: Callable[[SearchConfig, DatasetInfo], Any] | None = None,
                make_cost: Callable[[SearchConfig], Any] | None = None,
                make_supernet: Callable[[Any, SearchConfig], nn.Module] | None = None,
                make_theta_optimizer: Callable[[list[nn.Parameter], SearchConfig], torch.optim.Optimizer] | None = None,
                ) -> SearchSetup:
    """Load data, build the cost table, the super net and both optimisers (no file I/O).

    The hooks let another search (the bits search, ``search.quant.searcher``) reuse all of it:
    ``make_space(config, info)`` the searched space at the data's shape, ``make_cost(config)``
    the cost model (run on rank 0 only, unless ``cost_model`` is given), ``make_supernet(space,
    config)`` the super net (built right after seeding torch with ``config.seed``), and
    ``make_theta_optimizer(params, config)``. Left out, they build the architecture search's.
    """
    from search.distributed import init_from_env, main_then_broadcast

    init_from_env(config.torch_device)  # under torchrun: join the process group (gloo on CPU, NCCL on GPUs)
    train_set = load_dataset(config.data, "train", subset=config.subset, image_size=config.image_size, seed=config.seed)
    try:
        val_set = load_dataset(config.data, "test", subset=config.val_subset, image_size=config.image_size,
                               seed=config.seed)
    except NoEvaluationSplit:
        val_set = None  # an image folder without val/: evaluate on the θ split (held out from the weights)
    info = dataset_info(train_set)
    space = make_space(config, info) if make_space else _space_for_data(config.space, info)
    if cost_model is None:
        make = make_cost or make_cost_model
        cost_model = main_then_broadcast(lambda: make(config))  # rank 0 asks the server, once
    costs = cost_table(cost_model, space, config)

    n = len(train_set)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    n_w = int(round(config.w_split * n))
    check_splits(config, n_w, n - n_w)
    device = _torch_device(config.torch_device)
    theta_lr = resolved_theta_lr(config, n - n_w)

    torch.manual_seed(config.seed)  # weight initialisation
    model = (make_supernet or _default_supernet)(space, config).to(device)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=config.w_lr, momentum=config.w_momentum,
                            weight_decay=config.w_wd)
    t_opt = (make_theta_optimizer or _default_theta_optimizer)(model.arch_parameters(),
                                                               dataclasses.replace(config, theta_lr=theta_lr))
    cost_tensors = model.cost_tensors(costs.layer_costs)
    uniform = model.distribution_cost(cost_tensors, costs.fixed)  # θ starts uniform
    try:
        scale = (config.cost_scale if config.cost_scale is not None
                 else default_cost_scale(uniform, costs.min_cost(), config.beta))
    except ValueError as exc:
        raise SearchConfigError(str(exc)) from None
    reference = config.reference or uniform
    theta_index = perm[n_w:]
    if val_set is None:
        val_set, val_index = train_set, theta_index[: config.val_subset] if config.val_subset else theta_index
    else:
        val_index = torch.arange(len(val_set))
    setup = SearchSetup(config, space, info, train_set, val_set, perm[:n_w], theta_index, val_index,
                        model, w_opt, t_opt, costs, cost_tensors, scale, reference, device, theta_lr)
    from search.replica import ReplicaConfigError, attach

    try:  # DDP, data shards, AMP, channels_last (search/replica.py); None for a plain single process
        setup.replica = attach(setup, amp=config.amp, channels_last=config.channels_last, sync_bn=config.sync_bn)
    except ReplicaConfigError as exc:
        raise SearchConfigError(str(exc)) from None
    return setup


def _epoch_seed(seed: int, epoch: int, phase: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 101 + phase) % (2**63 - 1)


def decide_weight(config: SearchConfig, progress: float) -> float:
    """Weight of the decision term at ``progress`` ∈ [0, 1] through the θ steps: a linear ramp to ``theta_decide``."""
    return config.theta_decide * min(1.0, max(0.0, progress))


def entropy_term(model: Any) -> torch.Tensor:
    """Mean over layers of the normalised entropy of ``softmax(θ_l)``, differentiable in θ."""
    terms = [-(torch.softmax(t, -1) * torch.log_softmax(t, -1)).sum() / math.log(t.numel())
             for t in model.arch_parameters() if t.numel() > 1]
    return torch.stack(terms).mean() if terms else torch.zeros(())


def train_step(setup: SearchSetup, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               decide: float = 0.0) -> dict[str, float]:
    """One step of ``optimizer``; ``decide`` > 0 (θ steps only) adds that times θ's entropy to the loss."""
    model = setup.model
    x, y = x.to(setup.device, non_blocking=True), y.to(setup.device, non_blocking=True)
    logits = setup.replica.forward(x, optimizer) if setup.replica is not None else model(x)
    ce = nn.functional.cross_entropy(logits, y)
    lat = model.expected_cost(setup.cost_tensors, setup.costs.fixed)
    loss = search_loss(ce, lat, setup.config.loss_config(), cost_scale=setup.cost_scale, reference=setup.reference)
    if decide > 0:
        loss = loss + decide * entropy_term(model)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if setup.replica is not None:
        setup.replica.reduce_gradients(optimizer)  # θ: mean over the ranks (DDP does the weights)
    optimizer.step()
    correct = (logits.detach().argmax(1) == y).sum()
    return {"loss": float(loss.detach()), "ce": float(ce.detach()), "cost": float(lat.detach()),
            "correct": float(correct), "n": float(y.shape[0])}


def _phase(setup: SearchSetup, index: torch.Tensor, optimizer: torch.optim.Optimizer, train_params: list[nn.Parameter],
           frozen: list[nn.Parameter], generator: torch.Generator, progress: EpochProgress | None, label: str,
           when: tuple[float, float] = (0.0, 1.0), decide: tuple[float, float] = (0.0, 0.0)) -> dict[str, float]:
    """One pass over ``index`` updating ``train_params`` only (``frozen`` get no gradient, which saves their backward).

    ``when``: the span of the search (in epochs, fractional) this pass covers; τ follows the schedule across it.
    ``decide``: the decision term's weight at the pass's first and last step (θ passes only).
    """
    for p in frozen:
        p.requires_grad_(False)
    sums = {"loss": 0.0, "ce": 0.0, "cost": 0.0, "correct": 0.0, "n": 0.0}
    batches = 0
    batch_size, shuffle = setup.config.batch_size, True
    if setup.replica is not None:  # this rank's shard of the split, already shuffled, and its share of the batch
        index, batch_size = setup.replica.shard(index, generator)
        shuffle = False
    try:
        setup.model.train()
        total = num_batches(len(index), batch_size, drop_last=True)
        if progress:
            progress.start(label, total)
        for x, y in iterate_batches(setup.train_set, index, batch_size, shuffle=shuffle, generator=generator,
                                    workers=setup.config.workers, drop_last=True):
            share = batches / max(total - 1, 1)
            setup.model.temperature = setup.config.tau(when[0] + (when[1] - when[0]) * batches / max(total, 1))
            r = train_step(setup, x, y, optimizer, decide[0] + (decide[1] - decide[0]) * share)
            batches += 1
            for k in sums:
                sums[k] += r[k] if k in ("correct", "n") else r[k] * r["n"]
            if progress:
                progress.advance(loss=r["loss"], acc=sums["correct"] / sums["n"], cost=r["cost"], tau=setup.model.temperature)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    if setup.replica is not None:
        sums = setup.replica.sum_over_ranks(sums)  # the epoch log covers the whole job's images
    n = max(sums["n"], 1.0)
    return {"loss": sums["loss"] / n, "ce": sums["ce"] / n, "acc": sums["correct"] / n, "cost": sums["cost"] / n,
            "batches": batches}


def _evaluation_path(setup: SearchSetup) -> contextlib.AbstractContextManager:
    """Hard mode evaluates the argmax architecture, with BatchNorm statistics recomputed for that path.

    Its running statistics mix all the random paths it trained (an argmax child evaluated with them
    is badly off); soft mode evaluates the noise-free mixture its statistics were gathered under.
    """
    cfg, model = setup.config, setup.model
    if cfg.mode != "hard" or cfg.bn_calibration <= 0:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(model.fixed_choices(model.argmax_choices()))
    stack.enter_context(recalibrated_bn(model, setup.train_set, setup.w_index[: cfg.bn_calibration], cfg.batch_size,
                                        setup.device, cfg.workers))
    return stack


def train_epoch(setup: SearchSetup, epoch: int, progress: EpochProgress | None = None) -> dict[str, Any]:
    """Run epoch ``epoch`` (0-based): weights, then θ unless warming up, then evaluation; returns its log entry."""
    cfg, model = setup.config, setup.model
    t0 = time.perf_counter()
    model.temperature = cfg.tau(epoch)
    torch.manual_seed(_epoch_seed(cfg.seed, epoch))  # Gumbel noise of this epoch (the same on every rank)
    if setup.replica is not None:
        setup.replica.set_epoch(epoch)
    lr = cfg.w_lr_at(epoch)
    for group in setup.w_optimizer.param_groups:
        group["lr"] = lr
    searching = epoch >= cfg.num_warmup_epochs
    # τ runs through the epoch in step order: the weights' pass first, then θ's, each over its share of images.
    w_share = len(setup.w_index) / (len(setup.w_index) + (len(setup.theta_index) if searching else 0))
    w = _phase(setup, setup.w_index, setup.w_optimizer, model.weight_parameters(), model.arch_parameters(),
               torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch, 1)), progress, f"epoch {epoch + 1} weights",
               when=(epoch, epoch + w_share))
    th: dict[str, Any] = {}
    if searching:
        # The decision term ramps over the θ epochs: from 0 at the first θ step to theta_decide at the last.
        span = max(cfg.epochs - cfg.num_warmup_epochs, 1)
        done = epoch - cfg.num_warmup_epochs
        decide = (decide_weight(cfg, done / span), decide_weight(cfg, (done + 1) / span))
        with model.theta_pass(cfg.theta_estimator):  # hard mode: θ sees every candidate (search/mixed.py)
            th = _phase(setup, setup.theta_index, setup.theta_optimizer, model.arch_parameters(),
                        model.weight_parameters(), torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch, 2)),
                        progress, f"epoch {epoch + 1} θ", when=(epoch + w_share, epoch + 1), decide=decide)
    with _evaluation_path(setup):
        if setup.replica is not None:  # split over the ranks, after checking θ and taking rank 0's BN statistics
            val_acc = setup.replica.evaluate(model, setup.val_set, setup.val_index, cfg.batch_size, setup.device,
                                             cfg.workers)
        else:
            val_acc = evaluate(model, setup.val_set, setup.val_index, cfg.batch_size, setup.device, cfg.workers)
    probs = model.probabilities()
    argmax = model.argmax_choices()
    return {
        "epoch": epoch + 1,
        "phase": "search" if searching else "warmup",
        "tau": model.temperature,
        "lr": lr,
        "train_loss": w["loss"], "train_ce": w["ce"], "train_acc": w["acc"],
        "theta_loss": th.get("loss"), "theta_acc": th.get("acc"),
        "sampled_cost": th.get("cost", w["cost"]),
        "expected_cost": model.distribution_cost(setup.cost_tensors, setup.costs.fixed),
        "val_acc": val_acc,
        "argmax": argmax,
        "argmax_cost": setup.costs.arch_cost(setup.space, argmax),
        "probabilities": [[round(float(v), 6) for v in p] for p in probs],
        "theta_entropy": normalised_entropy([p.tolist() for p in probs]),
        "theta_lr": setup.theta_lr,
        "theta": [[float(v) for v in t.detach().cpu()] for t in model.arch_parameters()],
        "seconds": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------ state and results


def _state(setup: SearchSetup, epoch: int, history: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "epoch": epoch,  # completed epochs
        "model": setup.model.state_dict(),
        "w_optimizer": setup.w_optimizer.state_dict(),
        "theta_optimizer": setup.theta_optimizer.state_dict(),
        "history": history,
        "config": setup.config.to_dict(),
        "reference": setup.reference,
    }


def _restore(setup: SearchSetup, state: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    saved = state["config"]
    diff = [k for k in _RESUME_FIELDS if saved.get(k) != getattr(setup.config, k)]
    if diff:
        raise SearchConfigError("cannot resume: the checkpoint was made with different "
                                + ", ".join(f"{k} ({saved.get(k)!r} != {getattr(setup.config, k)!r})" for k in diff))
    setup.model.load_state_dict(state["model"])
    setup.w_optimizer.load_state_dict(state["w_optimizer"])
    setup.theta_optimizer.load_state_dict(state["theta_optimizer"])
    setup.reference = state.get("reference", setup.reference)
    return int(state["epoch"]), list(state["history"])


def theta_document(setup: SearchSetup, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of ``DIR/theta.json``: candidates per layer and one entry per epoch."""
    return {
        "space": setup.space.name,
        "mode": setup.config.mode,
        "cost": setup.costs.name,
        "unit": setup.costs.unit,
        "candidates": [list(layer.candidates) for layer in setup.space.layers()],
        "epochs": history,
    }


@dataclass
class SearchResult:
    """What a search produced (also written to ``DIR/result.json``)."""

    out: Path
    epochs: int
    history: list[dict[str, Any]]
    argmax: list[str]
    argmax_cost: float
    unit: str
    val_acc: float
    seconds: float
    architecture: Any = None
    found: list[str] = field(default_factory=list)  # what the search ships: at the target (target loss), else the argmax
    found_cost: float = 0.0
    theta_entropy: float = 1.0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "argmax": self.argmax, "argmax_cost": self.argmax_cost, "unit": self.unit,
                "found": self.found, "found_cost": self.found_cost, "theta_entropy": self.theta_entropy,
                "val_acc": self.val_acc, "seconds": self.seconds, "warnings": self.warnings}


def make_architecture(space_name: str, space, choices: list[str], name: str | None = None,
                      meta: dict[str, Any] | None = None) -> Any:
    """An architecture document of ``space`` (the search's space, at the data set's size and classes)."""
    from search.arch import Architecture
    from search.space import list_spaces

    c, h, w = space.input_shape
    if space_name in list_spaces():
        # A built-in space is named, with the input size and classes the search used.
        return Architecture(space=space_name, choices=list(choices), input_size=h if h == w else None,
                            classes=space.classes, name=name, meta=dict(meta or {}))
    # A user's space file travels inline (at the size searched) so the document stands alone.
    return Architecture(space=space.to_dict(), choices=list(choices), name=name, meta=dict(meta or {}))


def argmax_architecture(setup: SearchSetup, choices: list[str], cost: float) -> Any:
    """The argmax choices as an architecture document with its predicted cost."""
    return make_architecture(setup.config.space, setup.space, choices, name="argmax",
                             meta={"predicted": {setup.costs.name: cost, "unit": setup.costs.unit},
                                   "source": "hwnas search (argmax of θ)"})


def found_network(setup: SearchSetup, history: list[dict[str, Any]]) -> tuple[list[str], float, list[str]]:
    """The network the search ships, its predicted cost, and warnings about how it was chosen or how θ converged.

    With the target loss: the most likely architecture (under softmax θ) whose cost is within
    ``target·(1 ± target_tolerance)`` (``search/budget.py``), since the argmax can sit far from the
    budget the expected cost was held at. Otherwise the argmax.
    """
    from search.budget import nearest_most_likely

    cfg, last = setup.config, history[-1]
    warnings: list[str] = []
    searched = [e for e in history if e["phase"] == "search"]
    if not searched:
        warnings.append("θ was never trained: every epoch was warm-up (lower --warmup-epochs or raise --epochs)")
    elif last["theta_entropy"] > UNMOVED_ENTROPY:
        warnings.append(f"θ barely moved: mean normalised entropy {last['theta_entropy']:.2f} (1.0 is uniform), so the "
                        "result is close to a random draw; give the search more epochs or images, or a larger --theta-lr")
    chance = 1.0 / max(setup.info.num_classes, 1)
    if last["train_acc"] < UNTRAINED_ACC_FACTOR * chance:
        hint = ("hard mode trains one random path per step and needs far longer searches; use --mode soft"
                if cfg.mode == "hard" else "give the search more epochs or images")
        warnings.append(f"the super net barely learned (training accuracy {last['train_acc']:.0%}, chance "
                        f"{chance:.0%}): θ read no accuracy signal and followed the cost alone; {hint}")
    if cfg.loss != "target" or cfg.target is None:
        return list(last["argmax"]), float(last["argmax_cost"]), warnings
    probs = [p.tolist() for p in setup.model.probabilities()]
    choice, inside = nearest_most_likely(probs, setup.costs.layer_costs, setup.costs.fixed, cfg.target,
                                         cfg.target_tolerance)
    if not inside:
        warnings.append(f"no architecture of this space costs within ±{cfg.target_tolerance:.0%} of the target "
                        f"{cfg.target:g} {setup.costs.unit}: shipping the nearest, at {choice.cost:.4g}")
    names = [layer.candidates[j] for layer, j in zip(setup.space.layers(), choice.index)]
    return names, choice.cost, warnings


EpochCallback = Callable[[int, dict[str, Any]], None]


def open_rundir(config: SearchConfig) -> RunDir:
    """The run folder of a new search, or of one to resume (checked either way); joins torchrun's group first."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    from search.distributed import init_from_env

    init_from_env(config.torch_device)  # before RunDir, which asks whether this process is rank 0 (the writer)
    rundir = RunDir(config.out)
    if rundir.checkpoint.exists() and not config.resume:
        raise SearchConfigError(f"{rundir.root} already holds a search: pass --resume to continue it, or another --out")
    if config.resume and not rundir.checkpoint.exists():
        raise SearchConfigError(f"--resume: no checkpoint in {rundir.root}")
    return rundir


def run_epochs(setup: SearchSetup, rundir: RunDir, start: int, history: list[dict[str, Any]],
               on_epoch_end: EpochCallback | None = None) -> float:
    """Epochs ``start`` to ``config.epochs``, each checkpointed and logged to ``theta.json``; appends to ``history``.

    Returns the ``time.perf_counter()`` at which the search would have started had it run in one
    go (resumed epochs count their recorded seconds).
    """
    config = setup.config
    t_start = time.perf_counter() - sum(e["seconds"] for e in history)
    with EpochProgress(enabled=config.progress and rundir.main, unit=setup.costs.unit) as progress:
        for epoch in range(start, config.epochs):
            entry = train_epoch(setup, epoch, progress)
            history.append(entry)
            rundir.save_checkpoint(_state(setup, epoch + 1, history))
            rundir.write_json(rundir.theta, theta_document(setup, history))
            progress.epoch_done(entry)
            if on_epoch_end is not None:
                on_epoch_end(epoch, entry)
    return t_start


def run_search(config: SearchConfig, cost_model=None, on_epoch_end: EpochCallback | None = None) -> SearchResult:
    """Run (or resume) a search into ``config.out``; ``on_epoch_end(epoch, entry)`` runs after each checkpoint."""
    rundir = open_rundir(config)
    setup = build_setup(config, cost_model)
    start, history = 0, []
    if config.resume:
        start, history = _restore(setup, rundir.load_checkpoint(map_location=setup.device))
    rundir.mkdir()
    rundir.write_json(rundir.config, config.to_dict())
    rundir.write_json(rundir.root / "space.json", setup.space.to_dict())
    rundir.write_json(rundir.costs, {**setup.costs.to_dict(), "candidates": [l.candidates for l in setup.space.layers()],
                                     "cost_scale": setup.cost_scale, "reference": setup.reference})
    t_start = run_epochs(setup, rundir, start, history, on_epoch_end)
    last = history[-1]
    arch = argmax_architecture(setup, last["argmax"], last["argmax_cost"])
    found, found_cost, warnings = found_network(setup, history)
    result = SearchResult(out=rundir.root, epochs=config.epochs, history=history, argmax=last["argmax"],
                          argmax_cost=last["argmax_cost"], unit=setup.costs.unit, val_acc=last["val_acc"],
                          seconds=time.perf_counter() - t_start, architecture=arch, found=found, found_cost=found_cost,
                          theta_entropy=last["theta_entropy"], warnings=warnings)
    if rundir.main:
        arch.save(rundir.argmax)
        source = ("hwnas search (most likely under θ within the target)" if config.loss == "target"
                  else "hwnas search (argmax of θ)")
        make_architecture(config.space, setup.space, found, name="found",
                          meta={"predicted": {setup.costs.name: found_cost, "unit": setup.costs.unit},
                                "target": config.target if config.loss == "target" else None,
                                "source": source}).save(rundir.found)
        rundir.write_json(rundir.result, result.summary())
        if config.plots:
            from search.plots import plot_search

            plot_search(rundir.root)
    return result


def load_history(out: str | Path) -> dict[str, Any]:
    """``DIR/theta.json`` of a search folder."""
    return json.loads(RunDir(out).theta.read_text())
