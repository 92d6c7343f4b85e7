"""Cost-aware search losses: FBNet's multiplicative form, an additive form, and a budget (target) form.

``lat`` is the expected cost of the super net under the current masks, in the cost model's unit
times ``LossConfig.cost_scale``. FBNet's form is ``CE · α · (log LAT)^β`` — the power applies to
the logarithm. (A popular re-implementation computes ``log(LAT^β) = β·log LAT``, which is a
different loss; see docs/search.md.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

LossForm = Literal["fbnet", "additive", "target"]
LOSS_FORMS: tuple[str, ...] = ("fbnet", "additive", "target")
_DEFAULT_LAMBDA = {"fbnet": 0.0, "additive": 0.1, "target": 1.0}


class LossDomainError(ValueError):
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


def fbnet_loss(ce: torch.Tensor, lat: torch.Tensor, alpha: float = 0.2, beta: float = 0.6) -> torch.Tensor:
    """FBNet (Wu et al. 2019, eq. 2): ``CE · α · (log LAT)^β``; LAT must exceed 1 so that log LAT > 0."""
    if bool((lat <= 1.0).any()):
        raise LossDomainError(
            f"FBNet loss needs LAT > 1 so that (log LAT)^β is defined, got {float(lat.min()):.4g}; "
            "use a smaller unit (--cost-scale) or the additive/target loss")
    return ce * alpha * torch.log(lat).pow(beta)


def additive_loss(ce: torch.Tensor, lat: torch.Tensor, lam: float, reference: float) -> torch.Tensor:
    """``CE + λ · LAT / reference``: a cost penalty that does not rescale the cross-entropy."""
    return ce + lam * lat / reference


def target_loss(ce: torch.Tensor, lat: torch.Tensor, lam: float, target: float) -> torch.Tensor:
    """``CE + λ · |LAT / target − 1|``: pulls the expected cost towards a budget from either side."""
    return ce + lam * torch.abs(lat / target - 1.0)


def search_loss(ce: torch.Tensor, lat: torch.Tensor, config: LossConfig, *, cost_scale: float = 1.0,
                reference: float | None = None) -> torch.Tensor:
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
