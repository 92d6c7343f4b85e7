"""The loss forms: FBNet's CE·α·(log LAT)^β exactly, the additive form and the budget (target) form."""

from __future__ import annotations

import math

import pytest
import torch

from search.loss import LossConfig, LossDomainError, additive_loss, fbnet_loss, search_loss, target_loss


def test_fbnet_loss_is_ce_times_alpha_times_log_lat_to_the_beta() -> None:
    ce, lat = torch.tensor(2.0), torch.tensor(30.0)
    got = float(fbnet_loss(ce, lat, alpha=0.2, beta=0.6))
    assert got == pytest.approx(2.0 * 0.2 * math.log(30.0) ** 0.6, rel=1e-6)
    # Not the re-implementation bug log(LAT^β) = β·log LAT, which is a different number.
    assert got != pytest.approx(2.0 * 0.2 * math.log(30.0**0.6), rel=1e-3)


def test_fbnet_loss_rejects_lat_at_or_below_one() -> None:
    with pytest.raises(LossDomainError, match="LAT > 1"):
        fbnet_loss(torch.tensor(1.0), torch.tensor(0.8))


def test_fbnet_loss_gradient_pushes_cost_down() -> None:
    lat = torch.tensor(20.0, requires_grad=True)
    fbnet_loss(torch.tensor(1.5), lat).backward()
    assert lat.grad is not None and float(lat.grad) > 0


def test_additive_and_target_forms() -> None:
    ce = torch.tensor(1.0)
    assert float(additive_loss(ce, torch.tensor(4.0), lam=0.5, reference=2.0)) == pytest.approx(2.0)
    assert float(target_loss(ce, torch.tensor(3.0), lam=1.0, target=3.0)) == pytest.approx(1.0)
    # The budget penalty is symmetric: 50% over and 50% under cost the same.
    over = float(target_loss(ce, torch.tensor(4.5), lam=2.0, target=3.0))
    under = float(target_loss(ce, torch.tensor(1.5), lam=2.0, target=3.0))
    assert over == pytest.approx(under) == pytest.approx(2.0)


def test_search_loss_dispatches_and_scales_only_the_fbnet_form() -> None:
    ce, lat = torch.tensor(1.0), torch.tensor(0.5)  # 0.5 ms: below 1, fine once scaled
    got = float(search_loss(ce, lat, LossConfig(), cost_scale=40.0))
    assert got == pytest.approx(0.2 * math.log(20.0) ** 0.6)
    add = float(search_loss(ce, lat, LossConfig(form="additive", lam=1.0), cost_scale=40.0, reference=0.25))
    assert add == pytest.approx(3.0)
    with pytest.raises(ValueError, match="target"):
        LossConfig(form="target")
    with pytest.raises(ValueError, match="loss form"):
        LossConfig(form="log-lat-beta")
