"""Cost-aware search losses: FBNet's multiplicative form, an additive form, and a budget (target) form.

``lat`` is the expected cost of the super net under the current masks, in the cost model's unit
times ``LossConfig.cost_scale``. FBNet's form is ``CE · α · (log LAT)^β`` — the power applies to
the logarithm. (A popular re-implementation computes ``log(LAT^β) = β·log LAT``, which is a
different loss; see docs/search.md.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from hwnas.errors import HwnasError

LossForm = Literal["fbnet", "additive", "target"]
LOSS_FORMS: tuple[str, ...] = ("fbnet", "additive", "target")
# The target form's λ holds the expected cost on its budget against θ's decision term (search/search_epoch.py):
# measured on fbnet-fmnist, λ = 1 let it fall to 0.6–0.7 of the target as θ decided, λ = 5 kept it within 4%.
_DEFAULT_LAMBDA = {"fbnet": 0.0, "additive": 0.1, "target": 5.0}


class LossDomainError(HwnasError, ValueError):
    """The cost is outside the domain of the chosen loss (e.g. log LAT ≤ 0 in FBNet's form)."""


@dataclass(frozen=True)
class LossConfig:
    """Which loss and its constants; defaults are FBNet's α=0.2, β=0.6."""

    form: str = "fbnet"
    alpha: float = 0.2
    beta: float = 0.6
    lam: float | None = None  # weight of the cost term in the additive and target forms
    reference: float | None = None  # additive form: LAT is divided by this (default: cost at uniform θ)
    target: float | None = None  # target form: the budget, in the cost model's own unit (ms, MACs, params)

    def __post_init__(self) -> None:
        if self.form not in LOSS_FORMS:
            raise ValueError(f"loss form must be one of {', '.join(LOSS_FORMS)}, not {self.form!r}")
        if self.form == "target" and (self.target is None or self.target <= 0):
            raise ValueError("the target loss needs a positive --target budget")
        if self.form == "additive" and self.reference is not None and self.reference <= 0:
            raise ValueError("the additive loss needs a positive reference cost")

    @property
    def weight(self) -> float:
        """λ of the additive and target forms (their per-form default when not given)."""
        return _DEFAULT_LAMBDA[self.form] if self.lam is None else float(self.lam)


# FBNet's α=0.2, β=0.6 were tuned with LAT in ms on a Samsung S8, where networks take about 20 ms.
FBNET_LAT_REFERENCE = 20.0
# The cheapest architecture's (log LAT)^β is kept at ≥ 80% of the uniform θ's: collapsing to pools and
# skips may lower the loss by at most a fifth. In the paper's own units the FBNet-A…C range (19.8–28.1 ms)
# spans (log 19.8 / log 28.1)^0.6 ≈ 0.94; a small space whose cheapest network costs a tenth of the
# uniform one would, mapped to 20 alone, reach 2 "ms" and halve the multiplier, which is what made the
# search collapse.
COLLAPSE_FLOOR = 0.8


def default_cost_scale(uniform_cost: float, min_cost: float, beta: float = 0.6) -> float:
    """Unit scale for FBNet's loss: uniform θ at ≥ 20 "FBNet ms", the cheapest architecture's multiplier ≥ 0.8 of it.

    ``(log LAT)^β`` depends on the unit: log of MACs is ~15, of µs ~7, of a small net's ms below 0
    (undefined). The scale is the smallest that (1) maps the cost at uniform θ to the paper's
    operating point, 20, and (2) keeps ``(log s·c_min / log s·c_uniform)^β ≥ COLLAPSE_FLOOR``, so that
    the cost term cannot pay for collapsing the network much more than in the paper's ms range.
    """
    if uniform_cost <= 0 or min_cost <= 0:
        raise LossDomainError(
            "the cost model gives non-positive costs; the FBNet loss needs LAT > 0 (use --loss additive or target)"
        )
    scale = FBNET_LAT_REFERENCE / uniform_cost
    if min_cost < uniform_cost:
        r = COLLAPSE_FLOOR ** (1.0 / beta)  # the floor on log(s·c_min) / log(s·c_uniform)
        a, b = math.log(min_cost), math.log(uniform_cost)
        scale = max(scale, math.exp((r * b - a) / (1.0 - r)))
    return scale


def fbnet_loss(ce: torch.Tensor, lat: torch.Tensor, alpha: float = 0.2, beta: float = 0.6) -> torch.Tensor:
    """FBNet (Wu et al. 2019, eq. 2): ``CE · α · (log LAT)^β``; LAT must exceed 1 so that log LAT > 0."""
    if bool((lat <= 1.0).any()):
        raise LossDomainError(
            f"FBNet loss needs LAT > 1 so that (log LAT)^β is defined, got {float(lat.min()):.4g}; "
            "use a smaller unit (--cost-scale) or the additive/target loss"
        )
    return ce * alpha * torch.log(lat).pow(beta)


def additive_loss(ce: torch.Tensor, lat: torch.Tensor, lam: float, reference: float) -> torch.Tensor:
    """``CE + λ · LAT / reference``: a cost penalty that does not rescale the cross-entropy."""
    return ce + lam * lat / reference


def target_loss(ce: torch.Tensor, lat: torch.Tensor, lam: float, target: float) -> torch.Tensor:
    """``CE + λ · |LAT / target − 1|``: pulls the expected cost towards a budget from either side."""
    return ce + lam * torch.abs(lat / target - 1.0)


def search_loss(
    ce: torch.Tensor, lat: torch.Tensor, config: LossConfig, *, cost_scale: float = 1.0, reference: float | None = None
) -> torch.Tensor:
    """The configured loss; ``lat`` in the cost model's unit, scaled by ``cost_scale`` for the FBNet form only.

    The scale matters only to FBNet's form (log LAT depends on the unit); the additive form divides by a
    reference and the target form by a budget, both in the cost model's unit.
    """
    if config.form == "fbnet":
        return fbnet_loss(ce, lat * cost_scale, config.alpha, config.beta)
    if config.form == "additive":
        ref = config.reference if config.reference is not None else reference
        if ref is None or ref <= 0:
            raise ValueError("additive loss needs a positive reference cost")
        return additive_loss(ce, lat, config.weight, ref)
    assert config.target is not None
    return target_loss(ce, lat, config.weight, config.target)
