"""Mixed-precision search: the architecture search's loop, losses and data, driving the bits super net.

What is shared with ``search.searcher`` (not copied): the configuration and its validation
(``QuantSearchConfig`` extends ``SearchConfig``), the setup (``build_setup``, given this
module's space, cost, super net and θ optimiser hooks: data split, optimisers, cost scale, the
distributed replica), the per-epoch schedule (``run_epochs``/``train_epoch``: weights on 80 %,
θ on 20 % after the warm-up, τ annealing, evaluation), the loss forms (FBNet
``CE·α·(log C)^β``, additive, target), checkpoints and resume, ``theta.json`` and the plots.
What is particular: the super net (``QuantSuperNet``: shared float weights, one θ per layer
over (w, a) pairs), the cost models (size, BOPs, int8 latency), the optional float
initialisation, the θ optimiser choice (Adam or SGD), and the result — a bit configuration document, kept within a hard budget
("at most N KB") when the target loss is used.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from search.data import DatasetInfo
from search.hooks import ProgressFactory, RunFinished, no_progress
from search.quant.bits import DEFAULT_ACT_BITS, DEFAULT_WEIGHT_BITS, Bits
from search.quant.cost import BitsCostModel, BopsCost, Int8LatencyCost, SizeCost, config_cost, config_figures
from search.quant.network import BitsConfig, QuantSuperNet
from search.quant.space import BitsSpace, get_bits_space
from search.search_config import CostSource, Objective, Schedule, SearchConfig, SearchConfigError
from search.resume import restore_checkpoint
from search.search_setup import SearchSetup, build_setup, make_cost_model
from search.searcher import open_rundir, run_epochs

QUANT_COSTS: tuple[str, ...] = ("size", "bops", "latency")
# Fields beyond the architecture search's that must match when resuming.
_QUANT_RESUME_FIELDS = ("weight_bits", "act_bits", "pins", "init", "theta_optimizer")


QUANT_TARGET_LAMBDA = 1.0


@dataclass
class QuantSearchConfig(SearchConfig):
    """A bits search; the architecture search's options plus the bit sets and a float start."""

    COST_KINDS: ClassVar[tuple[str, ...]] = QUANT_COSTS

    space: str = "resnet20"
    # Off: the bits search's budget fitting (fit_budget) already turns an unsure θ into a configuration at the
    # budget, and with SGD on θ the decision term would override the size gradient's per-layer magnitudes
    # (measured: the smallest layer of resnet8-w8 went from undecided to p = 0.99 in 3 epochs). θ's automatic
    # Adam step is the one the bits search was measured with (4 logits of travel).
    schedule: Schedule = field(default_factory=lambda: Schedule(theta_decide=0.0, theta_travel=4.0))
    cost_source: CostSource = field(default_factory=lambda: CostSource(kind="size"))
    # θ starts uniform: the size gradient's per-layer magnitudes under SGD are what the bits search was measured
    # with (benchmarks/mixed_precision.py), and a tilted start would move the small layers before it does.
    objective: Objective = field(default_factory=lambda: Objective(target_start=False))
    weight_bits: list[int] = field(default_factory=lambda: list(DEFAULT_WEIGHT_BITS))
    act_bits: list[int] = field(default_factory=lambda: list(DEFAULT_ACT_BITS))
    pins: dict[str, str] = field(default_factory=dict)  # layer name -> bits fixed, not searched
    init: str | None = None  # float weights to start from (a quant-train fp32 run, or hwnas train)
    strict_budget: bool = True  # target loss: the result's cost is at most the target
    # Adam (FBNet's) normalises every θ coordinate's step, so a layer of 72 weights is pushed to
    # low bits as fast as one of 37,000: the size gradient's magnitude — the layer's share of the
    # model — is lost. Plain SGD (with momentum) keeps it: big layers move first.
    theta_optimizer: str = "adam"
    theta_momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.objective.lam is None and self.objective.loss == "target":
            # The λ the bits search was measured with (benchmarks/mixed_precision.py): its budget is met by
            # fit_budget, not by holding θ's expected size against a decision term.
            self.objective.lam = QUANT_TARGET_LAMBDA
        for b in self.weight_bits:
            _check(lambda b=b: Bits(int(b), 32), "--weight-bits")
        for b in self.act_bits:
            _check(lambda b=b: Bits(32, int(b)), "--act-bits")
        for name, tag in self.pins.items():
            _check(lambda tag=tag: Bits.parse(tag), f"--pin {name}")
        if self.theta_optimizer not in ("adam", "sgd"):
            raise SearchConfigError(f"--theta-optimizer must be adam or sgd, not {self.theta_optimizer!r}")
        super().__post_init__()


def _check(fn: Any, what: str) -> None:
    try:
        fn()
    except ValueError as exc:
        raise SearchConfigError(f"{what}: {exc}") from None


def make_quant_cost(config: QuantSearchConfig) -> BitsCostModel:
    """Size, BOPs, or int8 latency from the configured table (server or file, like the architecture search)."""
    if config.cost_source.kind == "size":
        return SizeCost()
    if config.cost_source.kind == "bops":
        return BopsCost()
    return Int8LatencyCost(make_cost_model(config.cost_source).table)


def load_float_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A float state dict from a file (a bare state dict, or a checkpoint holding one)."""
    from search.export import WeightsFileError, read_state_dict

    try:
        return read_state_dict(path)
    except WeightsFileError as exc:
        raise SearchConfigError(f"--init: {exc}") from None


def _bits_space(config: QuantSearchConfig, info: DatasetInfo) -> BitsSpace:
    return get_bits_space(config.space, info.input_shape, info.num_classes, config.weight_bits, config.act_bits, config.pins)


def _bits_supernet(space: BitsSpace, config: QuantSearchConfig) -> QuantSuperNet:
    model = QuantSuperNet(space, mode=config.schedule.mode)
    model.temperature = config.schedule.tau(0)
    if config.init:
        try:
            model.load_float_state_dict(load_float_weights(config.init))
        except ValueError as exc:
            raise SearchConfigError(f"--init {config.init}: {exc}") from None
    return model


def _theta_optimizer(params: list[torch.nn.Parameter], config: QuantSearchConfig, lr: float) -> torch.optim.Optimizer:
    wd = config.schedule.theta_wd
    if config.theta_optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.theta_momentum, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def build_quant_setup(config: QuantSearchConfig, cost_model: BitsCostModel | None = None) -> SearchSetup:
    """The architecture search's ``build_setup`` with the bits space, cost models, super net and θ optimiser."""
    # build_setup's hooks are typed with the SearchConfig it takes; it passes them this config, a QuantSearchConfig.
    setup = build_setup(
        config,
        cost_model,
        make_space=lambda _, info: _bits_space(config, info),
        make_cost=lambda _: make_quant_cost(config),
        make_supernet=lambda space, _: _bits_supernet(space, config),
        make_theta_optimizer=lambda params, _, lr: _theta_optimizer(params, config, lr),
    )
    costs, target = setup.costs, _target(config)
    if target is not None and config.strict_budget and target < costs.min_cost():
        # Fail before training, not after: no configuration could meet this budget.
        raise SearchConfigError(
            f"--target {target:g} {costs.unit}: the smallest configuration of {setup.space.name} "
            f"costs {costs.min_cost():.4g} {costs.unit}"
        )
    return setup


def _target(config: QuantSearchConfig) -> float | None:
    """The target loss's budget; None for the other losses."""
    return config.objective.target if config.objective.has_target else None


def fit_budget(
    config: BitsConfig,
    layer_costs: list[list[float]],
    fixed: float,
    budget: float,
    probabilities: list[list[float]],
    fill: bool = False,
) -> BitsConfig:
    """The most likely configuration at most ``budget``, starting from ``config`` (the argmax).

    Above the budget: lower widths where θ gives up the least log-probability per unit of cost
    saved, until it fits. With ``fill`` (the target loss, which asks for a cost *at* the budget)
    and below it: raise widths where θ gives up the least log-probability per unit of cost
    added, while the result still fits. Both are the greedy steps of maximising Σ log p(choice)
    under the budget. Argmax rounding alone lands well below a budget whenever θ is unsure.
    """
    space = config.space
    layers = space.layers()
    choice = [list(lay.candidates).index(config.bits[lay.name]) for lay in layers]

    def total() -> float:
        return fixed + sum(layer_costs[i][c] for i, c in enumerate(choice))

    def lost(i: int, j: int) -> float:
        return math.log(max(probabilities[i][choice[i]], 1e-12)) - math.log(max(probabilities[i][j], 1e-12))

    while total() > budget + 1e-9:
        best: tuple[float, int, int] | None = None
        for i, lay in enumerate(layers):
            for j in range(len(lay.candidates)):
                saved = layer_costs[i][choice[i]] - layer_costs[i][j]
                if saved > 0 and (best is None or lost(i, j) / saved < best[0]):
                    best = (lost(i, j) / saved, i, j)
        if best is None:
            raise SearchConfigError(
                f"no configuration of this space fits the budget {budget:g}: the smallest costs {total():.4g}"
            )
        choice[best[1]] = best[2]
    while fill:
        room = budget - total()
        best = None
        for i, lay in enumerate(layers):
            for j in range(len(lay.candidates)):
                added = layer_costs[i][j] - layer_costs[i][choice[i]]
                if 0 < added <= room + 1e-9 and (best is None or lost(i, j) / added < best[0]):
                    best = (lost(i, j) / added, i, j)
        if best is None:
            break
        choice[best[1]] = best[2]
    return BitsConfig(space, {lay.name: lay.candidates[c] for lay, c in zip(layers, choice)})


@dataclass
class QuantSearchResult:
    """What a bits search produced (also ``DIR/result.json`` and ``DIR/bits.json``)."""

    out: Path
    config: BitsConfig
    cost: float
    unit: str
    size_kb: float
    bops_g: float
    val_acc: float
    epochs: int
    seconds: float
    history: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "bits": self.config.bits,
            "cost": self.cost,
            "unit": self.unit,
            "size_kb": self.size_kb,
            "bops_g": self.bops_g,
            "supernet_val_acc": self.val_acc,
            "seconds": self.seconds,
            "bits_document": "bits.json",
        }


def run_quant_search(
    config: QuantSearchConfig,
    cost_model: BitsCostModel | None = None,
    progress: ProgressFactory = no_progress,
    on_finish: RunFinished | None = None,
) -> QuantSearchResult:
    """Run (or resume) a bits search into ``config.out``; ``progress`` and ``on_finish`` as in ``run_search``."""
    rundir = open_rundir(config)
    setup = build_quant_setup(config, cost_model)
    start = 0
    history: list[dict[str, Any]] = []
    if config.run.resume:
        start, history = restore_checkpoint(setup, rundir.load_checkpoint(map_location=setup.device), _QUANT_RESUME_FIELDS)
    rundir.mkdir()
    rundir.write_json(rundir.config, config.to_dict())
    rundir.write_json(
        rundir.costs,
        {
            **setup.costs.to_dict(),
            "candidates": [list(l.candidates) for l in setup.space.layers()],
            "layers": [l.name for l in setup.space.layers()],
            "cost_scale": setup.cost_scale,
            "reference": setup.reference,
        },
    )
    t_start = run_epochs(setup, rundir, start, history, progress=progress)
    model: QuantSuperNet = setup.model  # type: ignore[assignment]
    result_config = model.argmax_config()
    budgeted = False
    target = _target(config)
    if target is not None and config.strict_budget:
        fitted = fit_budget(
            result_config,
            setup.costs.layer_costs,
            setup.costs.fixed,
            target,
            [p.tolist() for p in model.probabilities()],
            fill=True,
        )
        budgeted = fitted.bits != result_config.bits
        result_config = fitted
    cost = config_cost(_CostView(setup.costs), setup.space, result_config.bits)
    d = config_figures(result_config.space, result_config.bits)
    result = QuantSearchResult(
        out=rundir.root,
        config=result_config,
        cost=cost,
        unit=setup.costs.unit,
        size_kb=d["size_kb"],
        bops_g=d["bops_g"],
        val_acc=history[-1]["val_acc"],
        epochs=config.schedule.epochs,
        seconds=time.perf_counter() - t_start,
        history=history,
    )
    if rundir.main:
        meta = {
            "predicted": {setup.costs.name: cost, "unit": setup.costs.unit, **d},
            "source": "hwnas quant-search (argmax of θ" + (", moved to the budget)" if budgeted else ")"),
            "supernet_val_acc": result.val_acc,
        }
        result_config.save(rundir.root / "bits.json", {"meta": meta})
        torch.save(model.float_state_dict(), rundir.root / "supernet_float.pt")
        rundir.write_json(rundir.result, result.summary())
        if on_finish is not None:
            on_finish(rundir.root)
    return result


class _CostView:
    """A cost table seen as a cost model (so ``config_cost`` prices a configuration from it)."""

    def __init__(self, table: Any) -> None:
        self._t = table
        self.name, self.unit = table.name, table.unit

    def layer_costs(self, space: BitsSpace) -> list[list[float]]:
        return self._t.layer_costs

    def fixed_cost(self, space: BitsSpace) -> float:
        return self._t.fixed
