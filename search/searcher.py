"""The DNAS training loop (FBNet): weights on 80% of the training set, θ on the other 20%.

Per epoch: the weights take a pass over their split (SGD, cosine learning rate), then — after the
warm-up epochs — θ takes a pass over its split (Adam); then the super net is evaluated, the
epoch is logged to ``DIR/theta.json`` and a checkpoint is written. τ follows
``τ_e = τ0 · exp(−decay · e)``, i.e. ×exp(−0.045) per epoch by default.

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
from search.loss import LossConfig, search_loss
from search.progress import EpochProgress
from search.rundir import RunDir
from search.supernet import SuperNet

COSTS: tuple[str, ...] = ("latency", "flops", "params")


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
    epochs: int = 10
    warmup_fraction: float = 0.1  # first 10% of the epochs train the weights only
    warmup_epochs: int | None = None  # overrides warmup_fraction
    batch_size: int = 128
    w_split: float = 0.8
    w_lr: float = 0.1
    w_momentum: float = 0.9
    w_wd: float = 1e-4
    theta_lr: float = 0.01
    theta_wd: float = 5e-4
    tau0: float = 5.0
    tau_decay: float = 0.045
    # loss
    loss: str = "fbnet"
    alpha: float = 0.2
    beta: float = 0.6
    lam: float | None = None
    target: float | None = None
    reference: float | None = None
    cost_scale: float | None = None  # FBNet form only; None: uniform-θ cost -> 20 (see default_cost_scale)
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
        if self.warmup_epochs is not None:
            return max(0, min(self.warmup_epochs, self.epochs))
        return int(self.warmup_fraction * self.epochs)

    def tau(self, epoch: int) -> float:
        """Gumbel-softmax temperature during epoch ``epoch`` (0-based)."""
        return self.tau0 * math.exp(-self.tau_decay * epoch)

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
                  "lam", "target", "tau0", "tau_decay", "w_lr", "theta_lr", "image_size")


@dataclass
class CostTable:
    """Per-layer candidate costs and the fixed part, in the cost model's unit."""

    name: str
    unit: str
    layer_costs: list[list[float]]
    fixed: float
    source: dict[str, Any] = field(default_factory=dict)

    def arch_cost(self, space, choices: list[str]) -> float:
        """Predicted cost of one architecture: fixed part plus its candidate of every layer."""
        total = self.fixed
        for layer, choice in zip(space.layers(), choices):
            total += self.layer_costs[layer.index][layer.candidates.index(choice)]
        return total

    def min_cost(self) -> float:
        """Cost of the cheapest architecture (every layer at its cheapest candidate)."""
        return self.fixed + sum(min(row) for row in self.layer_costs)

    def to_dict(self) -> dict[str, Any]:
        return {"cost": self.name, "unit": self.unit, "fixed": self.fixed, "layer_costs": self.layer_costs,
                "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CostTable":
        return cls(d["cost"], d["unit"], [list(map(float, c)) for c in d["layer_costs"]], float(d["fixed"]),
                   d.get("source", {}))


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


# FBNet's α=0.2, β=0.6 were tuned with LAT in ms on a Samsung S8, where networks take about 20 ms.
FBNET_LAT_REFERENCE = 20.0


def default_cost_scale(uniform_cost: float, min_cost: float) -> float:
    """Scale that maps the expected cost at uniform θ to 20 "FBNet units" (and the cheapest architecture above 1.5).

    ``(log LAT)^β`` depends on the unit: log of MACs is ~15, of µs ~7, of a small net's ms below 0
    (undefined). Mapping the starting cost to the paper's operating point keeps the balance between
    accuracy and cost that α and β were tuned for, in any unit, and keeps log LAT > 0 for every
    architecture of the space.
    """
    if uniform_cost <= 0 or min_cost <= 0:
        raise SearchConfigError("the cost model gives non-positive costs; the FBNet loss needs LAT > 0 (use --loss additive)")
    return max(FBNET_LAT_REFERENCE / uniform_cost, 1.5 / min_cost)


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
    if n_w < 1 or n - n_w < 1:
        raise SearchConfigError(f"{n} training images cannot be split {config.w_split:.0%}/{1 - config.w_split:.0%}")
    device = _torch_device(config.torch_device)

    torch.manual_seed(config.seed)  # weight initialisation
    model = (make_supernet or _default_supernet)(space, config).to(device)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=config.w_lr, momentum=config.w_momentum,
                            weight_decay=config.w_wd)
    t_opt = (make_theta_optimizer or _default_theta_optimizer)(model.arch_parameters(), config)
    cost_tensors = model.cost_tensors(costs.layer_costs)
    uniform = model.distribution_cost(cost_tensors, costs.fixed)  # θ starts uniform
    scale = config.cost_scale if config.cost_scale is not None else default_cost_scale(uniform, costs.min_cost())
    reference = config.reference or uniform
    theta_index = perm[n_w:]
    if val_set is None:
        val_set, val_index = train_set, theta_index[: config.val_subset] if config.val_subset else theta_index
    else:
        val_index = torch.arange(len(val_set))
    setup = SearchSetup(config, space, info, train_set, val_set, perm[:n_w], theta_index, val_index,
                        model, w_opt, t_opt, costs, cost_tensors, scale, reference, device)
    from search.replica import ReplicaConfigError, attach

    try:  # DDP, data shards, AMP, channels_last (search/replica.py); None for a plain single process
        setup.replica = attach(setup, amp=config.amp, channels_last=config.channels_last, sync_bn=config.sync_bn)
    except ReplicaConfigError as exc:
        raise SearchConfigError(str(exc)) from None
    return setup


def _epoch_seed(seed: int, epoch: int, phase: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 101 + phase) % (2**63 - 1)


def train_step(setup: SearchSetup, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    model = setup.model
    x, y = x.to(setup.device, non_blocking=True), y.to(setup.device, non_blocking=True)
    logits = setup.replica.forward(x, optimizer) if setup.replica is not None else model(x)
    ce = nn.functional.cross_entropy(logits, y)
    lat = model.expected_cost(setup.cost_tensors, setup.costs.fixed)
    loss = search_loss(ce, lat, setup.config.loss_config(), cost_scale=setup.cost_scale, reference=setup.reference)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if setup.replica is not None:
        setup.replica.reduce_gradients(optimizer)  # θ: mean over the ranks (DDP does the weights)
    optimizer.step()
    correct = (logits.detach().argmax(1) == y).sum()
    return {"loss": float(loss.detach()), "ce": float(ce.detach()), "cost": float(lat.detach()),
            "correct": float(correct), "n": float(y.shape[0])}


def _phase(setup: SearchSetup, index: torch.Tensor, optimizer: torch.optim.Optimizer, train_params: list[nn.Parameter],
           frozen: list[nn.Parameter], generator: torch.Generator, progress: EpochProgress | None, label: str) -> dict[str, float]:
    """One pass over ``index`` updating ``train_params`` only (``frozen`` get no gradient, which saves their backward)."""
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
        if progress:
            progress.start(label, num_batches(len(index), batch_size, drop_last=True))
        for x, y in iterate_batches(setup.train_set, index, batch_size, shuffle=shuffle, generator=generator,
                                    workers=setup.config.workers, drop_last=True):
            r = train_step(setup, x, y, optimizer)
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
    w = _phase(setup, setup.w_index, setup.w_optimizer, model.weight_parameters(), model.arch_parameters(),
               torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch, 1)), progress, f"epoch {epoch + 1} weights")
    searching = epoch >= cfg.num_warmup_epochs
    th: dict[str, Any] = {}
    if searching:
        th = _phase(setup, setup.theta_index, setup.theta_optimizer, model.arch_parameters(),
                    model.weight_parameters(), torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch, 2)),
                    progress, f"epoch {epoch + 1} θ")
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

    def summary(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "argmax": self.argmax, "argmax_cost": self.argmax_cost, "unit": self.unit,
                "val_acc": self.val_acc, "seconds": self.seconds}


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
    result = SearchResult(out=rundir.root, epochs=config.epochs, history=history, argmax=last["argmax"],
                          argmax_cost=last["argmax_cost"], unit=setup.costs.unit, val_acc=last["val_acc"],
                          seconds=time.perf_counter() - t_start, architecture=arch)
    if rundir.main:
        arch.save(rundir.argmax)
        rundir.write_json(rundir.result, result.summary())
        if config.plots:
            from search.plots import plot_search

            plot_search(rundir.root)
    return result


def load_history(out: str | Path) -> dict[str, Any]:
    """``DIR/theta.json`` of a search folder."""
    return json.loads(RunDir(out).theta.read_text())
