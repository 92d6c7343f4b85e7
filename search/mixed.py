"""What the architecture and the bits super nets share: θ per layer, its costs, and how θ learns in hard mode.

Both super nets (``search.supernet.SuperNet``, ``search.quant.network.QuantSuperNet``) mix the
candidates of a layer with a Gumbel mask over ``θ_l``. They inherit ``MixedNet`` for everything
that does not depend on what a candidate is: the cost under the masks, the learned distribution's
expected cost and entropy, and the θ step of hard mode.

Why hard mode's θ step runs every candidate: a hard (straight-through) mask runs one candidate and
multiplies its output by a mask entry whose value is 1. What follows is a BatchNorm in train mode,
which divides any scale away, so ``∂CE/∂θ`` is ~0 (measured: 1e-9…3e-8 against ~1e-3 for the cost
term) and θ follows the cost alone. The weights do not need the other candidates, θ does: in hard
mode the weight steps stay single-path (cheap) and the θ steps mix every candidate with the soft
Gumbel mask, so θ sees how each candidate changes the loss. The θ split is a fifth of the data,
so a hard search still costs well under half of a soft one (``benchmarks/search_quality.py``
reports the ratio). ``estimator="straight-through"`` keeps the old single-path θ step for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

THETA_ESTIMATORS: tuple[str, ...] = ("soft", "straight-through")


class MixedNet:
    """Mixin for a super net with ``arch_parameters()`` (θ per layer), ``mode``, ``last_masks`` and ``probabilities()``."""

    mode: str

    def arch_parameters(self) -> list[torch.nn.Parameter]:  # pragma: no cover - provided by the super net
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        return len(self.arch_parameters())

    def probabilities(self) -> list[Tensor]:
        """``softmax(θ_l)`` per layer, detached: the learned sampling distribution."""
        return [torch.softmax(t.detach(), dim=-1) for t in self.arch_parameters()]

    def _current_masks(self) -> Sequence[Tensor] | None:
        return getattr(self, "last_masks", None)

    # ------------------------------------------------------------------ cost
    def cost_tensors(self, layer_costs: Sequence[Sequence[float]] | Sequence[Tensor]) -> list[Tensor]:
        """The per-layer cost vectors as float32 tensors on θ's device (convert once, reuse every step)."""
        theta = self.arch_parameters()
        if len(layer_costs) != len(theta):
            raise ValueError(f"cost table has {len(layer_costs)} layers, the super net {len(theta)}")
        tensors = []
        for layer, (costs, t) in enumerate(zip(layer_costs, theta)):
            c = torch.as_tensor(costs).to(device=t.device, dtype=torch.float32)
            if c.numel() != t.numel():
                raise ValueError(f"layer {layer}: {c.numel()} costs for {t.numel()} candidates")
            tensors.append(c)
        return tensors

    def expected_cost(
        self, layer_costs: Sequence[Sequence[float]] | Sequence[Tensor], fixed: float = 0.0, masks: Sequence[Tensor] | None = None
    ) -> Tensor:
        """``Σ_l Σ_i m_{l,i}·cost_{l,i} + fixed`` under the masks of the last forward (or ``masks``; softmax(θ) before any)."""
        costs = self.cost_tensors(layer_costs)
        if masks is None:
            masks = self._current_masks() or [torch.softmax(t, -1) for t in self.arch_parameters()]
        total = torch.zeros((), device=costs[0].device)
        for m, c in zip(masks, costs):
            total = total + (m * c).sum()
        return total + fixed

    def distribution_cost(self, layer_costs: Sequence[Sequence[float]] | Sequence[Tensor], fixed: float = 0.0) -> float:
        """Expected cost of an architecture drawn from ``softmax(θ)`` (no noise): what the search is heading for."""
        return float(self.expected_cost(layer_costs, fixed, masks=self.probabilities()))

    # ------------------------------------------------------------------ convergence
    def theta_entropy(self) -> float:
        """Mean over layers of the entropy of ``softmax(θ_l)`` divided by ``log K_l``: 1 uniform, 0 decided."""
        return normalised_entropy([p.tolist() for p in self.probabilities()])

    # ------------------------------------------------------------------ θ step
    @contextmanager
    def theta_pass(self, estimator: str = "soft") -> Iterator[None]:
        """Inside, a hard-mode super net mixes every candidate (soft Gumbel mask) so θ gets the accuracy signal."""
        if estimator not in THETA_ESTIMATORS:
            raise ValueError(f"θ estimator must be one of {', '.join(THETA_ESTIMATORS)}, not {estimator!r}")
        if self.mode != "hard" or estimator == "straight-through":
            yield
            return
        self.mode = "soft"
        try:
            yield
        finally:
            self.mode = "hard"


def normalised_entropy(probabilities: Sequence[Sequence[float]]) -> float:
    """Mean per-layer entropy over ``log K`` (layers with one candidate are left out); 0.0 with none."""
    values = []
    for p in probabilities:
        if len(p) < 2:
            continue
        h = -sum(v * math.log(v) for v in p if v > 0)
        values.append(h / math.log(len(p)))
    return sum(values) / len(values) if values else 0.0
