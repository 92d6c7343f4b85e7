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
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search.arch import make_architecture
from search.data import DatasetInfo, NoEvaluationSplit, dataset_info, iterate_batches, load_dataset, num_batches
from search.evaluate import evaluate_model as evaluate
from search.evaluate import recalibrated_bn
from search.cost import CostTable
from search.loss import default_cost_scale, search_loss
from search.mixed import normalised_entropy
from search.hooks import Progress, ProgressFactory, RunFinished, no_progress
from search.rundir import RunDir
from search.search_config import CostSource, SearchConfig, SearchConfigError, flat_options
from search.supernet import SuperNet

# Absolute drop of the super net's validation accuracy below its best epoch that earns a warning: the demo's
# soft search went 0.703 → 0.487 → 0.419 without a word (issue 27).
ACC_FALL = 0.1
# Mean normalised entropy above which θ is reported as not having moved (1.0 = uniform).
UNMOVED_ENTROPY = 0.9
# Super-net training accuracy below this multiple of chance: the weights learned next to nothing, so θ's
# accuracy gradient is noise and θ followed the cost alone. Measured: a hard-mode super net of fbnet-fmnist
# (one random path of 11 candidates × 9 layers per step) stays at 10–14% after 6 epochs on 5,000 images,
# where soft mode is at 54% after one (docs/search.md, "Hard or soft").
UNTRAINED_ACC_FACTOR = 2.0


# Options (flat names) that must match between a checkpoint and the config that resumes it.
_RESUME_FIELDS = ("space", "data", "cost", "mode", "batch_size", "w_split", "subset", "seed", "loss", "alpha", "beta",
                  "lam", "target", "tau0", "tau_decay", "w_lr", "theta_lr", "image_size", "tau_end", "tau_schedule",
                  "theta_estimator", "theta_decide", "theta_travel", "weights", "paths", "budget")
# What a checkpoint written before an option existed ran with.
BEFORE_OPTION = {"weights": "separate", "paths": "theta", "budget": "penalty"}


def make_cost_model(source: CostSource):
    """The cost model a cost source names; a latency table comes from the server (ETag-cached) or a file."""
    from search import cost as cost_mod

    if source.kind == "flops":
        return cost_mod.FlopsCost()
    if source.kind == "params":
        return cost_mod.ParamsCost()
    from search import lut

    if source.lut:
        table = lut.load_table(source.lut)
    else:
        kwargs: dict[str, Any] = {"runtime": source.runtime, "threads": source.threads, "token": source.token}
        if source.cache_dir:
            kwargs["cache_dir"] = source.cache_dir
        table = lut.fetch_table(source.server, source.device, **kwargs)
    return cost_mod.LatencyCost(table)


def cost_table(cost_model, space, source: CostSource | None = None) -> CostTable:
    """Evaluate a cost model on every candidate of every layer of ``space``."""
    where: dict[str, Any] = {}
    if source is not None and source.kind == "latency":
        where = source.describe()
        table = getattr(cost_model, "table", None)
        for k in ("device", "runtime", "threads", "overhead_ms"):
            if table is not None and getattr(table, k, None) is not None:
                where[f"table_{k}"] = getattr(table, k)
    return CostTable(name=getattr(cost_model, "name", source.kind if source else "cost"),
                     unit=getattr(cost_model, "unit", ""),
                     layer_costs=[[float(c) for c in row] for row in cost_model.layer_costs(space)],
                     fixed=float(cost_model.fixed_cost(space)), source=where)


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
    theta_lr: float = 0.01
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
    net = SuperNet(space, mode=config.schedule.mode, temperature=config.schedule.tau(0), weights=config.schedule.weights)
    net.uniform_paths = config.schedule.paths != "theta"
    return net


def _default_theta_optimizer(params: list[nn.Parameter], config: SearchConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=config.schedule.theta_wd)


def build_setup(config: SearchConfig, cost_model=None, *,
                make_space: Callable[[SearchConfig, DatasetInfo], Any] | None = None,
                make_cost: Callable[[SearchConfig], Any] | None = None,
                make_supernet: Callable[[Any, SearchConfig], nn.Module] | None = None,
                make_theta_optimizer: Callable[[list[nn.Parameter], SearchConfig, float], torch.optim.Optimizer]
                | None = None,
                ) -> SearchSetup:
    """Load data, build the cost table, the super net and both optimisers (no file I/O).

    The hooks let another search (the bits search, ``search.quant.searcher``) reuse all of it:
    ``make_space(config, info)`` the searched space at the data's shape, ``make_cost(config)``
    the cost model (run on rank 0 only, unless ``cost_model`` is given), ``make_supernet(space,
    config)`` the super net (built right after seeding torch with the run's seed), and
    ``make_theta_optimizer(params, config, lr)`` with θ's resolved learning rate. Left out, they
    build the architecture search's.
    """
    from search.distributed import init_from_env, main_then_broadcast

    sched, run, objective = config.schedule, config.run, config.objective
    init_from_env(run.torch_device)  # under torchrun: join the process group (gloo on CPU, NCCL on GPUs)
    train_set = load_dataset(run.data, "train", subset=run.subset, image_size=run.image_size, seed=run.seed)
    try:
        val_set = load_dataset(run.data, "test", subset=run.val_subset, image_size=run.image_size, seed=run.seed)
    except NoEvaluationSplit:
        val_set = None  # an image folder without val/: evaluate on the θ split (held out from the weights)
    info = dataset_info(train_set)
    space = make_space(config, info) if make_space else _space_for_data(config.space, info)
    if cost_model is None:
        make = make_cost or (lambda c: make_cost_model(c.cost_source))
        cost_model = main_then_broadcast(lambda: make(config))  # rank 0 asks the server, once
    costs = cost_table(cost_model, space, config.cost_source)

    n = len(train_set)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(run.seed))
    n_w = int(round(sched.w_split * n))
    sched.resolve_warmup(n_w)
    sched.check_splits(n_w, n - n_w)
    device = _torch_device(run.torch_device)
    theta_lr = sched.resolved_theta_lr(n - n_w)

    torch.manual_seed(run.seed)  # weight initialisation
    model = (make_supernet or _default_supernet)(space, config).to(device)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=sched.w_lr, momentum=sched.w_momentum,
                            weight_decay=sched.w_wd)
    t_opt = (make_theta_optimizer or _default_theta_optimizer)(model.arch_parameters(), config, theta_lr)
    cost_tensors = model.cost_tensors(costs.layer_costs)
    uniform = model.distribution_cost(cost_tensors, costs.fixed)  # θ starts uniform
    try:
        # Only FBNet's (log LAT)^β needs a unit scale (and LAT > 0): the target and additive losses take any sign, and
        # a calibrated table can price its cheapest networks below 0 ms (a demo calibration of scale 1.4 and offset
        # −0.015 ms did, and the target search stopped here).
        scale = (objective.cost_scale if objective.cost_scale is not None
                 else default_cost_scale(uniform, costs.min_cost(), objective.beta) if objective.loss == "fbnet"
                 else 1.0)
    except ValueError as exc:
        raise SearchConfigError(str(exc)) from None
    reference = objective.reference or uniform
    theta_index = perm[n_w:]
    if val_set is None:
        val_set, val_index = train_set, theta_index[: run.val_subset] if run.val_subset else theta_index
    else:
        val_index = torch.arange(len(val_set))
    if sched.paths in ("sandwich", "distill") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SearchConfigError("--paths sandwich runs three paths per weight step and is not yet made to work with "
                                "DistributedDataParallel: use --paths uniform with --nproc > 1")
    setup = SearchSetup(config, space, info, train_set, val_set, perm[:n_w], theta_index, val_index,
                        model, w_opt, t_opt, costs, cost_tensors, scale, reference, device, theta_lr)
    from search.replica import ReplicaConfigError, attach

    try:  # DDP, data shards, AMP, channels_last (search/replica.py); None for a plain single process
        setup.replica = attach(setup, amp=run.amp, channels_last=run.channels_last, sync_bn=run.sync_bn)
    except ReplicaConfigError as exc:
        raise SearchConfigError(str(exc)) from None
    return setup


def _epoch_seed(seed: int, epoch: int, phase: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 101 + phase) % (2**63 - 1)


def entropy_term(model: Any) -> torch.Tensor:
    """Mean over layers of the normalised entropy of ``softmax(θ_l)``, differentiable in θ."""
    terms = [-(torch.softmax(t, -1) * torch.log_softmax(t, -1)).sum() / math.log(t.numel())
             for t in model.arch_parameters() if t.numel() > 1]
    return torch.stack(terms).mean() if terms else torch.zeros(())


def _sandwich_step(setup: SearchSetup, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer
                   ) -> dict[str, float]:
    """One weight step on the costliest path, the cheapest and a uniformly random one, gradients averaged.

    With ``--paths distill`` only the costliest path learns the labels; the other two learn its predictions
    (in-place distillation): soft targets shared by every child pull their rankings towards the one network
    trained most, instead of each child fitting label noise on its own few updates.
    """
    model = setup.model
    distill = setup.config.schedule.paths == "distill"
    teacher: torch.Tensor | None = None
    costliest = [int(c.argmax()) for c in setup.cost_tensors]
    cheapest = [int(c.argmin()) for c in setup.cost_tensors]
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for path in (costliest, cheapest, None):
        if path is None:
            logits = model(x)  # uniform path (SuperNet.uniform_paths)
        else:
            with model.fixed_choices([model.candidates(l)[i] for l, i in enumerate(path)]):
                logits = model(x)
        ce = nn.functional.cross_entropy(logits, y)
        if teacher is None:
            loss = ce
            if distill:
                teacher = torch.softmax(logits.detach(), 1)
        else:
            loss = nn.functional.kl_div(torch.log_softmax(logits, 1), teacher, reduction="batchmean")
        (loss / 3).backward()
        total += float(ce.detach()) / 3
    optimizer.step()
    lat = model.expected_cost(setup.cost_tensors, setup.costs.fixed)
    correct = (logits.detach().argmax(1) == y).sum()
    return {"loss": total, "ce": float(ce.detach()), "cost": float(lat.detach()), "correct": float(correct),
            "n": float(y.shape[0])}


def train_step(setup: SearchSetup, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               decide: float = 0.0) -> dict[str, float]:
    """One step of ``optimizer``; ``decide`` > 0 (θ steps only) adds that times θ's entropy to the loss."""
    model = setup.model
    x, y = x.to(setup.device, non_blocking=True), y.to(setup.device, non_blocking=True)
    theta_step = optimizer is setup.theta_optimizer
    objective = setup.config.objective
    if not theta_step and setup.config.schedule.paths in ("sandwich", "distill"):
        return _sandwich_step(setup, x, y, optimizer)
    logits = setup.replica.forward(x, optimizer) if setup.replica is not None else model(x)
    ce = nn.functional.cross_entropy(logits, y)
    lat = model.expected_cost(setup.cost_tensors, setup.costs.fixed)
    # The target loss holds the cost of the distribution the search ships from (softmax θ), not of this step's
    # relaxed sample: at a high τ the sample is nearly uniform whatever θ is, and holding *its* cost at a low
    # budget drove every layer to its cheapest candidates before the accuracy signal could say which layers
    # deserve the cost (measured: θ's rank correlation with trained accuracy at equal latency fell to −0.6).
    held = (model.expected_cost(setup.cost_tensors, setup.costs.fixed, masks=[torch.softmax(t, -1)
                                                                              for t in model.arch_parameters()])
            if objective.has_target else lat)
    projection = objective.has_target and objective.budget == "projection"
    if projection:
        loss = ce  # the budget is held by projecting θ after the step, not by a term here
    else:
        loss = search_loss(ce, held, objective.loss_config(), cost_scale=setup.cost_scale, reference=setup.reference)
        if decide > 0:
            loss = loss + decide * entropy_term(model)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if setup.replica is not None:
        setup.replica.reduce_gradients(optimizer)  # θ: mean over the ranks (DDP does the weights)
    optimizer.step()
    if theta_step and projection:
        project_theta(setup)
    correct = (logits.detach().argmax(1) == y).sum()
    return {"loss": float(loss.detach()), "ce": float(ce.detach()), "cost": float(lat.detach()),
            "correct": float(correct), "n": float(y.shape[0])}


def _phase(setup: SearchSetup, index: torch.Tensor, optimizer: torch.optim.Optimizer, frozen: list[nn.Parameter],
           generator: torch.Generator, progress: Progress | None, label: str,
           when: tuple[float, float] = (0.0, 1.0), decide: tuple[float, float] = (0.0, 0.0)) -> dict[str, float]:
    """One pass over ``index`` stepping ``optimizer``'s parameters (``frozen`` get no gradient: no backward for them).

    ``when``: the span of the search (in epochs, fractional) this pass covers; τ follows the schedule across it.
    ``decide``: the decision term's weight at the pass's first and last step (θ passes only).
    """
    for p in frozen:
        p.requires_grad_(False)
    sums = {"loss": 0.0, "ce": 0.0, "cost": 0.0, "correct": 0.0, "n": 0.0}
    batches = 0
    batch_size, shuffle = setup.config.schedule.batch_size, True
    if setup.replica is not None:  # this rank's shard of the split, already shuffled, and its share of the batch
        index, batch_size = setup.replica.shard(index, generator)
        shuffle = False
    try:
        setup.model.train()
        total = num_batches(len(index), batch_size, drop_last=True)
        if progress:
            progress.start(label, total)
        for x, y in iterate_batches(setup.train_set, index, batch_size, shuffle=shuffle, generator=generator,
                                    workers=setup.config.run.workers, drop_last=True):
            share = batches / max(total - 1, 1)
            setup.model.temperature = setup.config.schedule.tau(when[0] + (when[1] - when[0]) * batches / max(total, 1))
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
    sched, run, model = setup.config.schedule, setup.config.run, setup.model
    if sched.mode != "hard" or run.bn_calibration <= 0:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(model.fixed_choices(model.argmax_choices()))
    stack.enter_context(recalibrated_bn(model, setup.train_set, setup.w_index[: run.bn_calibration], sched.batch_size,
                                        setup.device, run.workers))
    return stack


def project_theta(setup: SearchSetup) -> None:
    """Tilt θ back onto the target: the expected cost of softmax(θ) equals it again (search.budget.project_logits)."""
    from search.budget import project_logits

    theta = setup.model.arch_parameters()
    logits = project_logits([t.detach().cpu().tolist() for t in theta], [c.tolist() for c in setup.cost_tensors],
                            setup.costs.fixed, setup.config.objective.target)
    with torch.no_grad():
        for t, v in zip(theta, logits):
            t.copy_(torch.as_tensor(v, dtype=t.dtype, device=t.device))


def start_at_budget(setup: SearchSetup) -> None:
    """Set θ to the most even distribution whose expected cost is the target (``search.budget.budget_logits``).

    At the first θ step only: the weights warmed up under uniform θ (every candidate trained alike), and a
    resumed search past this point keeps its θ from the checkpoint.
    """
    from search.budget import budget_logits

    target = setup.config.objective.target
    assert target is not None
    logits = budget_logits([c.tolist() for c in setup.cost_tensors], setup.costs.fixed, target)
    with torch.no_grad():
        for t, v in zip(setup.model.arch_parameters(), logits):
            t.copy_(torch.as_tensor(v, dtype=t.dtype, device=t.device))


def train_epoch(setup: SearchSetup, epoch: int, progress: Progress | None = None) -> dict[str, Any]:
    """Run epoch ``epoch`` (0-based): weights, then θ unless warming up, then evaluation; returns its log entry."""
    cfg, run, model = setup.config.schedule, setup.config.run, setup.model
    t0 = time.perf_counter()
    model.temperature = cfg.tau(epoch)
    torch.manual_seed(_epoch_seed(run.seed, epoch))  # Gumbel noise of this epoch (the same on every rank)
    if setup.replica is not None:
        setup.replica.set_epoch(epoch)
    lr = cfg.w_lr_at(epoch)
    for group in setup.w_optimizer.param_groups:
        group["lr"] = lr
    searching = epoch >= cfg.num_warmup_epochs
    # τ runs through the epoch in step order: the weights' pass first, then θ's, each over its share of images.
    w_share = len(setup.w_index) / (len(setup.w_index) + (len(setup.theta_index) if searching else 0))
    w = _phase(setup, setup.w_index, setup.w_optimizer, model.arch_parameters(),
               torch.Generator().manual_seed(_epoch_seed(run.seed, epoch, 1)), progress, f"epoch {epoch + 1} weights",
               when=(epoch, epoch + w_share))
    th: dict[str, Any] = {}
    objective = setup.config.objective
    if searching and epoch == cfg.num_warmup_epochs and objective.has_target and objective.target_start:
        start_at_budget(setup)
    if searching:
        # The decision term ramps over the θ epochs: from 0 at the first θ step to theta_decide at the last.
        span = max(cfg.epochs - cfg.num_warmup_epochs, 1)
        done = epoch - cfg.num_warmup_epochs
        decide = (cfg.decide_weight(done / span), cfg.decide_weight((done + 1) / span))
        with model.theta_pass(cfg.theta_estimator):  # hard mode: θ sees every candidate (search/mixed.py)
            th = _phase(setup, setup.theta_index, setup.theta_optimizer, model.weight_parameters(),
                        torch.Generator().manual_seed(_epoch_seed(run.seed, epoch, 2)),
                        progress, f"epoch {epoch + 1} θ", when=(epoch + w_share, epoch + 1), decide=decide)
    with _evaluation_path(setup):
        if setup.replica is not None:  # split over the ranks, after checking θ and taking rank 0's BN statistics
            val_acc = setup.replica.evaluate(model, setup.val_set, setup.val_index, cfg.batch_size, setup.device,
                                             run.workers)
        else:
            val_acc = evaluate(model, setup.val_set, setup.val_index, cfg.batch_size, setup.device, run.workers)
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


def _restore(setup: SearchSetup, state: dict[str, Any], more_fields: tuple[str, ...] = ()) -> tuple[int, list[dict[str, Any]]]:
    """Load a checkpoint into ``setup``, if it was made with the same ``_RESUME_FIELDS`` (and ``more_fields``)."""
    saved, now = flat_options(state["config"]), setup.config.flat()  # checkpoints from before the split are flat
    saved = {**BEFORE_OPTION, **saved}
    diff = [k for k in (*_RESUME_FIELDS, *more_fields) if saved.get(k) != now[k]]
    if diff:
        raise SearchConfigError("cannot resume: the checkpoint was made with different "
                                + ", ".join(f"{k} ({saved.get(k)!r} != {now[k]!r})" for k in diff))
    setup.model.load_state_dict(state["model"])
    setup.w_optimizer.load_state_dict(state["w_optimizer"])
    setup.theta_optimizer.load_state_dict(state["theta_optimizer"])
    setup.reference = state.get("reference", setup.reference)
    return int(state["epoch"]), list(state["history"])


def theta_document(setup: SearchSetup, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of ``DIR/theta.json``: candidates per layer and one entry per epoch."""
    return {
        "space": setup.space.name,
        "mode": setup.config.schedule.mode,
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


def argmax_architecture(setup: SearchSetup, choices: list[str], cost: float) -> Any:
    """The argmax choices as an architecture document with its predicted cost."""
    return make_architecture(setup.config.space, setup.space, choices, name="argmax",
                             meta={"predicted": {setup.costs.name: cost, "unit": setup.costs.unit},
                                   "source": "hwnas search (argmax of θ)"})


def accuracy_fall(history: list[dict[str, Any]], drop: float = ACC_FALL) -> str | None:
    """A warning when the super net's validation accuracy ended ``drop`` or more below its best epoch, else None."""
    scored = [(i, e["val_acc"]) for i, e in enumerate(history) if e.get("val_acc") is not None]
    if len(scored) < 2:
        return None
    best_epoch, best = max(scored, key=lambda t: t[1])
    last = scored[-1][1]
    if best - last < drop:
        return None
    return (f"the super net's validation accuracy fell from {best:.3f} (epoch {best_epoch + 1}) to {last:.3f}: θ was "
            "steered by a super net that got worse. In soft mode its batch-norm statistics mix every candidate; "
            "a lower --theta-lr, a longer warm-up (--warmup-epochs) or more images usually keep it learning")


def found_network(setup: SearchSetup, history: list[dict[str, Any]]) -> tuple[list[str], float, list[str]]:
    """The network the search ships, its predicted cost, and warnings about how it was chosen or how θ converged.

    With the target loss: the most likely architecture (under softmax θ) whose cost is within
    ``target·(1 ± target_tolerance)`` (``search/budget.py``), since the argmax can sit far from the
    budget the expected cost was held at. Otherwise the argmax.
    """
    from search.budget import nearest_most_likely

    sched, objective, last = setup.config.schedule, setup.config.objective, history[-1]
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
                if sched.mode == "hard" else "give the search more epochs or images")
        warnings.append(f"the super net barely learned (training accuracy {last['train_acc']:.0%}, chance "
                        f"{chance:.0%}): θ read no accuracy signal and followed the cost alone; {hint}")
    fell = accuracy_fall(history)
    if fell:
        warnings.append(fell)
    if not objective.has_target:
        return list(last["argmax"]), float(last["argmax_cost"]), warnings
    probs = [p.tolist() for p in setup.model.probabilities()]
    choice, inside = nearest_most_likely(probs, setup.costs.layer_costs, setup.costs.fixed, objective.target,
                                         objective.target_tolerance)
    if not inside:
        warnings.append(f"no architecture of this space costs within ±{objective.target_tolerance:.0%} of the target "
                        f"{objective.target:g} {setup.costs.unit}: shipping the nearest, at {choice.cost:.4g}")
    names = [layer.candidates[j] for layer, j in zip(setup.space.layers(), choice.index)]
    return names, choice.cost, warnings


EpochCallback = Callable[[int, dict[str, Any]], None]


def open_rundir(config: SearchConfig) -> RunDir:
    """The run folder of a new search, or of one to resume (checked either way); joins torchrun's group first."""
    run = config.run
    if run.num_threads:
        torch.set_num_threads(run.num_threads)
    from search.distributed import init_from_env

    init_from_env(run.torch_device)  # before RunDir, which asks whether this process is rank 0 (the writer)
    rundir = RunDir(config.out)
    if rundir.checkpoint.exists() and not run.resume:
        raise SearchConfigError(f"{rundir.root} already holds a search: pass --resume to continue it, or another --out")
    if run.resume and not rundir.checkpoint.exists():
        raise SearchConfigError(f"--resume: no checkpoint in {rundir.root}")
    return rundir


def run_epochs(setup: SearchSetup, rundir: RunDir, start: int, history: list[dict[str, Any]],
               on_epoch_end: EpochCallback | None = None, progress: ProgressFactory = no_progress) -> float:
    """Epochs ``start`` to ``config.epochs``, each checkpointed and logged to ``theta.json``; appends to ``history``.

    Returns the ``time.perf_counter()`` at which the search would have started had it run in one
    go (resumed epochs count their recorded seconds).
    """
    config = setup.config
    t_start = time.perf_counter() - sum(e["seconds"] for e in history)
    with progress(enabled=config.run.progress and rundir.main, unit=setup.costs.unit) as bars:
        for epoch in range(start, config.schedule.epochs):
            entry = train_epoch(setup, epoch, bars)
            history.append(entry)
            rundir.save_checkpoint(_state(setup, epoch + 1, history))
            rundir.write_json(rundir.theta, theta_document(setup, history))
            bars.epoch_done(entry)
            if on_epoch_end is not None:
                on_epoch_end(epoch, entry)
    return t_start


def run_search(config: SearchConfig, cost_model=None, on_epoch_end: EpochCallback | None = None,
               progress: ProgressFactory = no_progress, on_finish: RunFinished | None = None) -> SearchResult:
    """Run (or resume) a search into ``config.out``; ``on_epoch_end(epoch, entry)`` runs after each checkpoint.

    ``progress`` shows the epochs (``search.hooks``); ``on_finish(folder)`` runs on rank 0 once the results are
    written (the app draws its plots there).
    """
    rundir = open_rundir(config)
    setup = build_setup(config, cost_model)
    start, history = 0, []
    if config.run.resume:
        start, history = _restore(setup, rundir.load_checkpoint(map_location=setup.device))
    rundir.mkdir()
    rundir.write_json(rundir.config, config.to_dict())
    rundir.write_json(rundir.root / "space.json", setup.space.to_dict())
    rundir.write_json(rundir.costs, {**setup.costs.to_dict(), "candidates": [l.candidates for l in setup.space.layers()],
                                     "cost_scale": setup.cost_scale, "reference": setup.reference})
    t_start = run_epochs(setup, rundir, start, history, on_epoch_end, progress)
    last = history[-1]
    arch = argmax_architecture(setup, last["argmax"], last["argmax_cost"])
    found, found_cost, warnings = found_network(setup, history)
    result = SearchResult(out=rundir.root, epochs=config.schedule.epochs, history=history, argmax=last["argmax"],
                          argmax_cost=last["argmax_cost"], unit=setup.costs.unit, val_acc=last["val_acc"],
                          seconds=time.perf_counter() - t_start, architecture=arch, found=found, found_cost=found_cost,
                          theta_entropy=last["theta_entropy"], warnings=warnings)
    if rundir.main:
        arch.save(rundir.argmax)
        source = ("hwnas search (most likely under θ within the target)" if config.objective.loss == "target"
                  else "hwnas search (argmax of θ)")
        make_architecture(config.space, setup.space, found, name="found",
                          meta={"predicted": {setup.costs.name: found_cost, "unit": setup.costs.unit},
                                "target": config.objective.target if config.objective.loss == "target" else None,
                                "source": source}).save(rundir.found)
        rundir.write_json(rundir.result, result.summary())
        if on_finish is not None:
            on_finish(rundir.root)
    return result


def load_history(out: str | Path) -> dict[str, Any]:
    """``DIR/theta.json`` of a search folder."""
    return json.loads(RunDir(out).theta.read_text())
