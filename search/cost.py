"""Cost models, one interface: a cost for every (searchable layer, candidate) plus the fixed parts.

The super net's expected cost is ``Σ_l Σ_i p[l][i] · layer_costs[l][i] + fixed_cost`` and an
architecture's cost is ``fixed_cost + Σ_l layer_costs[l][choice_l]``:

* ``FlopsCost`` — multiply-accumulates (``torch.utils.flop_counter``; MACs = FLOPs / 2), in millions.
* ``ParamsCost`` — parameters, in millions.
* ``LatencyCost`` — milliseconds from a ``LatencyTable`` (a ``free`` operator, ``zero``, costs 0 without an entry). A table measures each operator as
  its own model, so every entry contains one per-invocation overhead; the network is predicted
  as ``overhead + Σ (entry − overhead)`` rather than a sum of N overheads. Layer costs are
  therefore ``entry − overhead`` and the fixed cost is ``overhead + Σ_fixed (entry − overhead)``.
  When the table carries a calibration (``hwnas validate --calibrate``), a network costs
  ``scale · prediction + offset_ms``: layer costs are scaled, the offset joins the fixed cost,
  so the super net's expected cost stays linear in the architecture probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.flop_counter import FlopCounterMode

from hwnas.opkey import OpSpec
from search.arch import Architecture
from search.lut import LatencyTable, MissingEntriesError
from search.ops import _as_spec, get_op, is_free, registry_version
from search.space import SearchSpace


@dataclass
class CostTable:
    """A cost model evaluated on a space: per-layer candidate costs and the fixed part, in the model's unit."""

    name: str
    unit: str
    layer_costs: list[list[float]]
    fixed: float
    source: dict[str, Any] = field(default_factory=dict)

    def arch_cost(self, space: Any, choices: list[str]) -> float:
        """Predicted cost of one architecture: fixed part plus its candidate of every layer."""
        total = self.fixed
        for layer, choice in zip(space.layers(), choices):
            total += self.layer_costs[layer.index][layer.candidates.index(choice)]
        return total

    def min_cost(self) -> float:
        """Cost of the cheapest architecture (every layer at its cheapest candidate)."""
        return self.fixed + sum(min(row) for row in self.layer_costs)

    def to_dict(self) -> dict[str, Any]:
        return {"cost": self.name, "unit": self.unit, "fixed": self.fixed, "layer_costs": self.layer_costs, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CostTable":
        return cls(d["cost"], d["unit"], [list(map(float, c)) for c in d["layer_costs"]], float(d["fixed"]), d.get("source", {}))


@runtime_checkable
class CostModel(Protocol):
    """What the search needs from a cost: a name, a unit, per-layer-per-candidate costs and the fixed part."""

    name: str
    unit: str

    def layer_costs(self, space: SearchSpace) -> list[list[float]]: ...

    def fixed_cost(self, space: SearchSpace) -> float: ...


# ---- counting one operator -------------------------------------------------------------------
def _meta_module(spec: OpSpec) -> torch.nn.Module:
    # Built on the meta device: shapes only, no memory, so counting a 1984-channel head is free.
    with torch.device("meta"):
        return get_op(spec.block).factory(spec).eval()


@lru_cache(maxsize=8192)
def _count(key: str, version: int) -> tuple[int, int]:  # version: see ops.registry_version
    spec = OpSpec.parse(key)
    module = _meta_module(spec)
    params = sum(p.numel() for p in module.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.empty(spec.shape, device="meta"))
    return counter.get_total_flops() // 2, params


def op_macs(spec: OpSpec | str) -> int:
    """Multiply-accumulates of one operator at its input shape (batch included)."""
    return _count(_as_spec(spec).key, registry_version())[0]


def op_params(spec: OpSpec | str) -> int:
    """Learnable parameters of one operator."""
    return _count(_as_spec(spec).key, registry_version())[1]


# ---- the shared shape of all per-operator costs ------------------------------------------------
class SpecCost:
    """A cost that is ``base + Σ spec_cost(op)`` over the network's operators; subclasses give ``spec_cost``."""

    name = "cost"
    unit = ""

    @property
    def base(self) -> float:
        """What a network costs before any operator (the latency table's overhead; 0 otherwise)."""
        return 0.0

    def spec_cost(self, spec: OpSpec) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def require(self, specs: list[OpSpec]) -> None:
        """Raise before computing anything if some specs cannot be costed (latency: missing entries)."""

    def layer_costs(self, space: SearchSpace) -> list[list[float]]:
        specs = [layer.specs() for layer in space.layers()]
        self.require([s for row in specs for s in row] + space.fixed_specs())
        return [[self.spec_cost(s) for s in row] for row in specs]

    def fixed_cost(self, space: SearchSpace) -> float:
        fixed = space.fixed_specs()
        self.require(fixed)
        return self.base + sum(self.spec_cost(s) for s in fixed)


class FlopsCost(SpecCost):
    """Multiply-accumulates in millions (MMACs)."""

    name = "flops"
    unit = "MMACs"

    def spec_cost(self, spec: OpSpec) -> float:
        return op_macs(spec) / 1e6


class ParamsCost(SpecCost):
    """Parameters in millions."""

    name = "params"
    unit = "Mparams"

    def spec_cost(self, spec: OpSpec) -> float:
        return op_params(spec) / 1e6


class LatencyCost(SpecCost):
    """Milliseconds from a latency table, with its per-model overhead counted once and its calibration applied."""

    name = "latency"
    unit = "ms"

    def __init__(self, table: LatencyTable, calibrated: bool = True) -> None:
        self.table = table
        # calibrated=False: the raw table sum (what `hwnas validate` checks before fitting a correction).
        self.calibration = table.calibration if calibrated else None

    @property
    def base(self) -> float:
        if self.calibration is None:
            return self.table.overhead
        return self.calibration.scale * self.table.overhead + self.calibration.offset_ms

    def require(self, specs: list[OpSpec]) -> None:
        # A `free` operator (a dropped layer) needs no entry: it adds nothing to the network.
        missing = self.table.missing([s.key for s in specs if not is_free(s)])
        if missing:
            raise MissingEntriesError(missing, self.table.describe())

    def spec_cost(self, spec: OpSpec) -> float:
        if is_free(spec):
            return 0.0
        cost = self.table.entries[spec.key] - self.table.overhead
        return cost if self.calibration is None else self.calibration.scale * cost


# ---- architectures -----------------------------------------------------------------------------
def arch_specs(arch: Architecture) -> tuple[list[OpSpec], list[OpSpec]]:
    """(fixed specs, one spec per searchable layer) of an architecture."""
    space = arch.resolve_space()
    return space.fixed_specs(), [layer.spec(c) for layer, c in zip(space.layers(), arch.choices)]


def arch_cost(cost_model: CostModel, arch: Architecture) -> float:
    """The cost of one architecture: fixed part plus its candidate of every layer."""
    if isinstance(cost_model, SpecCost):
        fixed, layers = arch_specs(arch)
        cost_model.require(fixed + layers)  # all missing entries at once, not the first one
        return cost_model.base + sum(cost_model.spec_cost(s) for s in fixed + layers)
    space = arch.resolve_space()
    costs = cost_model.layer_costs(space)
    return cost_model.fixed_cost(space) + sum(
        costs[layer.index][layer.candidates.index(c)] for layer, c in zip(space.layers(), arch.choices)
    )


@dataclass(frozen=True)
class Prediction:
    """What ``hwnas predict`` reports for one architecture."""

    macs: int
    params: int
    latency_ms: float | None = None
    ops: int = 0

    def to_dict(self) -> dict[str, float | int | None]:
        return {"latency_ms": self.latency_ms, "mmacs": self.macs / 1e6, "mparams": self.params / 1e6, "ops": self.ops}


def predict(arch: Architecture, table: LatencyTable | None = None) -> Prediction:
    """MACs and parameters of an architecture, and its latency when a table is given."""
    fixed, layers = arch_specs(arch)
    specs = fixed + layers
    latency = arch_cost(LatencyCost(table), arch) if table is not None else None
    return Prediction(
        macs=sum(op_macs(s) for s in specs), params=sum(op_params(s) for s in specs), latency_ms=latency, ops=len(specs)
    )


@dataclass(frozen=True)
class PartialLatency:
    """An architecture's latency over the operators a table covers, and the ones it lacks (never estimated)."""

    covered_ms: float  # overhead + Σ (entry − overhead) over the covered operators
    covered: int  # operators priced from the table
    dropped: int  # free operators (zero: dropped layers), which cost nothing and need no entry
    missing: list[str]  # keys without an entry, in network order, deduplicated

    def to_dict(self) -> dict[str, Any]:
        return {
            "covered_ms": self.covered_ms,
            "covered_ops": self.covered,
            "dropped_layers": self.dropped,
            "missing": self.missing,
        }


def partial_latency(arch: Architecture, table: LatencyTable) -> PartialLatency:
    """The sum over the operators ``table`` has; the others are listed, not guessed (a lower bound, not a prediction)."""
    fixed, layers = arch_specs(arch)
    specs = fixed[:1] + layers + fixed[1:]  # network order
    cost = LatencyCost(table)
    free = [s for s in specs if is_free(s)]
    have = [s for s in specs if not is_free(s) and s.key in table.entries]
    missing = table.missing(s.key for s in specs if not is_free(s) and s.key not in table.entries)
    return PartialLatency(cost.base + sum(cost.spec_cost(s) for s in have), len(have), len(free), missing)
