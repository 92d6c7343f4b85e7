"""The search's setup: data, the θ/weight split, the cost table, the super net and both optimisers.

Built with no file I/O so that every rank of a distributed search builds its own (``build_setup``) and
another search reuses it through hooks (the bits search, ``search.quant.searcher``). The split is drawn
from the run's seed, so a resumed run puts every image on the same side as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from search.cost import CostTable
from search.data import DatasetInfo, NoEvaluationSplit, dataset_info, dataset_len, load_dataset
from search.loss import default_cost_scale
from search.search_config import CostSource, SearchConfig, SearchConfigError
from search.supernet import SuperNet


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
        # CostSource.validate: a latency table without --lut needs --server and --device
        assert source.server is not None and source.device is not None
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
    return CostTable(
        name=getattr(cost_model, "name", source.kind if source else "cost"),
        unit=getattr(cost_model, "unit", ""),
        layer_costs=[[float(c) for c in row] for row in cost_model.layer_costs(space)],
        fixed=float(cost_model.fixed_cost(space)),
        source=where,
    )


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
            raise SearchConfigError(
                f"space {space.name!r} takes {space.input_shape[0]}-channel input, data set {info.name!r} has {c} channels"
            )
        # Same stage table at the data set's size and class count.
        space = space.with_input((h, w), info.num_classes)
    return space


def _default_supernet(space: Any, config: SearchConfig) -> SuperNet:
    net = SuperNet(space, mode=config.schedule.mode, temperature=config.schedule.tau(0), weights=config.schedule.weights)
    net.uniform_paths = config.schedule.paths != "theta"
    return net


def _default_theta_optimizer(params: list[nn.Parameter], config: SearchConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=config.schedule.theta_wd)


def build_setup(
    config: SearchConfig,
    cost_model=None,
    *,
    make_space: Callable[[SearchConfig, DatasetInfo], Any] | None = None,
    make_cost: Callable[[SearchConfig], Any] | None = None,
    make_supernet: Callable[[Any, SearchConfig], nn.Module] | None = None,
    make_theta_optimizer: Callable[[list[nn.Parameter], SearchConfig, float], torch.optim.Optimizer] | None = None,
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

    n = dataset_len(train_set)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(run.seed))
    n_w = int(round(sched.w_split * n))
    sched.resolve_warmup(n_w)
    sched.check_splits(n_w, n - n_w)
    device = _torch_device(run.torch_device)
    theta_lr = sched.resolved_theta_lr(n - n_w)

    torch.manual_seed(run.seed)  # weight initialisation
    # The bits search's QuantSuperNet is not a SuperNet but has the interface a search uses (MixedNet's and more)
    model = cast(SuperNet, (make_supernet or _default_supernet)(space, config).to(device))
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=sched.w_lr, momentum=sched.w_momentum, weight_decay=sched.w_wd)
    t_opt = (make_theta_optimizer or _default_theta_optimizer)(model.arch_parameters(), config, theta_lr)
    cost_tensors = model.cost_tensors(costs.layer_costs)
    uniform = model.distribution_cost(cost_tensors, costs.fixed)  # θ starts uniform
    try:
        # Only FBNet's (log LAT)^β needs a unit scale (and LAT > 0): the target and additive losses take any sign, and
        # a calibrated table can price its cheapest networks below 0 ms (a demo calibration of scale 1.4 and offset
        # −0.015 ms did, and the target search stopped here).
        scale = (
            objective.cost_scale
            if objective.cost_scale is not None
            else default_cost_scale(uniform, costs.min_cost(), objective.beta)
            if objective.loss == "fbnet"
            else 1.0
        )
    except ValueError as exc:
        raise SearchConfigError(str(exc)) from None
    reference = objective.reference or uniform
    theta_index = perm[n_w:]
    if val_set is None:
        val_set, val_index = train_set, theta_index[: run.val_subset] if run.val_subset else theta_index
    else:
        val_index = torch.arange(dataset_len(val_set))
    if sched.paths in ("sandwich", "distill") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SearchConfigError(
            "--paths sandwich runs three paths per weight step and is not yet made to work with "
            "DistributedDataParallel: use --paths uniform with --nproc > 1"
        )
    setup = SearchSetup(
        config,
        space,
        info,
        train_set,
        val_set,
        perm[:n_w],
        theta_index,
        val_index,
        model,
        w_opt,
        t_opt,
        costs,
        cost_tensors,
        scale,
        reference,
        device,
        theta_lr,
    )
    from search.replica import ReplicaConfigError, attach

    try:  # DDP, data shards, AMP, channels_last (search/replica.py); None for a plain single process
        setup.replica = attach(setup, amp=run.amp, channels_last=run.channels_last, sync_bn=run.sync_bn)
    except ReplicaConfigError as exc:
        raise SearchConfigError(str(exc)) from None
    return setup
