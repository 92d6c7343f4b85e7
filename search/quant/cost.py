"""Cost models of bit configurations, in the shape of ``search.cost.CostModel``.

* ``SizeCost``: model size in KB (1 KB = 1024 bytes) = Σ weights × weight bits, plus one 32-bit
  bias per output channel (batch norm folds into it). Per-channel scales are not counted.
* ``BopsCost``: bit operations in MBOPs (10^6) = Σ MACs × weight bits × activation bits.
* ``Int8LatencyCost``: measured latency from a latency table through the project's
  ``LatencyCost``. A runtime has int8 kernels, not int4: a layer whose weights and inputs both
  fit 8 bits is looked up as its ``#w8a8`` operator, anything with a 32-bit side as the fp32
  operator (fake quantization computes in float). So ``w4a8`` costs what ``w8a8`` costs —
  on such a runtime, lower bits save size, not time.

All expose ``layer_costs(space)`` (per layer, per candidate, in the order of
``layer.candidates``) and ``fixed_cost(space)``, so the loss forms of the architecture search
take them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from hwnas.opkey import OpSpec
from search.quant.bits import Bits
from search.quant.space import BitsSpace, QuantLayerInfo

if TYPE_CHECKING:
    from search.space import SearchSpace

FP32 = Bits(32, 32)
INT8 = Bits(8, 8)


class BitsCostModel(Protocol):
    name: str
    unit: str

    def layer_costs(self, space: BitsSpace) -> list[list[float]]: ...

    def fixed_cost(self, space: BitsSpace) -> float: ...


@dataclass
class SizeCost:
    """Model size in KB: Σ params × weight bits (+ 32-bit biases, fixed)."""

    name: str = "size"
    unit: str = "KB"

    def layer_cost(self, layer: QuantLayerInfo, bits: Bits) -> float:
        return layer.weight_params * bits.w / 8 / 1024

    def layer_costs(self, space: BitsSpace) -> list[list[float]]:
        return [[self.layer_cost(lay, b) for b in lay.bits()] for lay in space.layers()]

    def fixed_cost(self, space: BitsSpace) -> float:
        return sum(lay.bias_params for lay in space.layers()) * 32 / 8 / 1024


@dataclass
class BopsCost:
    """Bit operations in MBOPs: Σ MACs × weight bits × activation bits."""

    name: str = "bops"
    unit: str = "MBOPs"

    def layer_cost(self, layer: QuantLayerInfo, bits: Bits) -> float:
        return layer.macs * bits.w * bits.a / 1e6

    def layer_costs(self, space: BitsSpace) -> list[list[float]]:
        return [[self.layer_cost(lay, b) for b in lay.bits()] for lay in space.layers()]

    def fixed_cost(self, space: BitsSpace) -> float:
        return 0.0


def runtime_bits(bits: Bits) -> Bits:
    """The kernel an int8 runtime runs for ``bits``: w8a8 if both fit 8 bits, else fp32."""
    return INT8 if bits.is_int8_runnable else FP32


def latency_key(layer: QuantLayerInfo, bits: Bits | str) -> str:
    """The latency-table key measured for ``layer`` at ``bits`` (see ``runtime_bits``)."""
    b = bits if isinstance(bits, Bits) else Bits.parse(bits)
    return layer.spec(runtime_bits(b)).key


class _RuntimeLayer:
    """A layer seen through ``runtime_bits``: what ``LatencyCost`` looks up."""

    def __init__(self, layer: QuantLayerInfo) -> None:
        self._layer = layer
        self.index = layer.index
        self.candidates = list(layer.candidates)

    def spec(self, candidate: str) -> OpSpec:
        return self._layer.spec(runtime_bits(Bits.parse(candidate)))

    def specs(self) -> list[OpSpec]:
        return [self.spec(c) for c in self.candidates]


class _RuntimeSpace:
    """A bits space seen as the ``SearchSpace`` that ``LatencyCost`` reads (its layers and fixed operators)."""

    def __init__(self, space: BitsSpace) -> None:
        self._space = space
        self.name = space.name
        self.num_layers = space.num_layers

    def layers(self) -> list[_RuntimeLayer]:
        return [_RuntimeLayer(lay) for lay in self._space.layers()]

    def fixed_specs(self) -> list[OpSpec]:
        return []


def _as_search_space(space: BitsSpace) -> SearchSpace:
    # Duck typing: LatencyCost only calls layers() and fixed_specs(), which _RuntimeSpace provides.
    return cast("SearchSpace", _RuntimeSpace(space))


class Int8LatencyCost:
    """Measured latency (ms) of each layer's int8 or fp32 kernel, from a latency table."""

    name = "latency"
    unit = "ms"

    def __init__(self, table: Any) -> None:
        from search.cost import LatencyCost  # the project's table-backed cost model

        self.table = table
        self._inner = LatencyCost(table)

    def layer_costs(self, space: BitsSpace) -> list[list[float]]:
        return self._inner.layer_costs(_as_search_space(space))

    def fixed_cost(self, space: BitsSpace) -> float:
        return float(self._inner.fixed_cost(_as_search_space(space)))

    def required_keys(self, space: BitsSpace) -> list[str]:
        """Every table key this space needs (for a profiling job)."""
        keys = {latency_key(lay, b) for lay in space.layers() for b in lay.bits()}
        return sorted(keys)


def make_cost(name: str, table: Any = None) -> BitsCostModel:
    """``size`` | ``bops`` | ``latency`` (the latter needs a latency table)."""
    if name == "size":
        return SizeCost()
    if name == "bops":
        return BopsCost()
    if name == "latency":
        if table is None:
            raise ValueError("the latency cost needs a latency table (--table or --server/--device)")
        return Int8LatencyCost(table)
    raise ValueError(f"unknown cost {name!r}: size, bops or latency")


def config_cost(model: BitsCostModel, space: BitsSpace, bits: dict[str, str]) -> float:
    """Cost of one configuration: fixed cost plus each layer's cost at its bits.

    The analytic costs (size, BOPs) price any bits; a table-backed cost only the candidates.
    """
    total = model.fixed_cost(space)
    per_layer = getattr(model, "layer_cost", None)
    if per_layer is not None:
        return float(total + sum(per_layer(lay, Bits.parse(bits[lay.name])) for lay in space.layers()))
    for lay, costs in zip(space.layers(), model.layer_costs(space)):
        total += costs[list(lay.candidates).index(Bits.parse(bits[lay.name]).tag)]
    return float(total)


def config_figures(space: BitsSpace, bits: dict[str, str]) -> dict[str, float]:
    """Size (KB), BOPs (G), and how many times smaller than fp32 each is."""
    size, bops = SizeCost(), BopsCost()
    fp32 = space.uniform(FP32)
    s, b = config_cost(size, space, bits), config_cost(bops, space, bits) / 1000
    s32, b32 = config_cost(size, space, fp32), config_cost(bops, space, fp32) / 1000
    return {"size_kb": s, "bops_g": b, "compression_x": s32 / s, "bops_reduction_x": b32 / b}
