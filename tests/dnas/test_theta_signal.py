"""θ learns from accuracy in every mode: a layer offering a useful and a harmful candidate at equal cost.

The harmful candidate costs exactly what the useful one costs (it wraps the same block) but
outputs noise; with the cost term switched off, θ must move to the useful one within ~100 θ
steps. Before the θ pass (search/mixed.py), hard mode's straight-through estimator left θ at
0.5 in the layers followed by a BatchNorm; the last test keeps that failure visible.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from search.ops import InvertedResidual, _spatial, register_op, unregister_op
from search.search_config import SearchConfig
from search.searcher import run_search
from tests.support.torch_tests import TINY_SPACE


class _Noise(nn.Module):
    """Runs an ``ir_k3_e1`` block (same cost) and throws its output away for Gaussian noise."""

    def __init__(self, spec) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.inner = InvertedResidual(spec.shape[1], spec.get("o"), 3, 1, 1, spec.get("s"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(self.inner(x))


@pytest.fixture(scope="module")
def noisy_space(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    register_op("noise", params=("k", "e"), defaults={"g": 1}, shape=_spatial, replace=True)(_Noise)
    path = tmp_path_factory.mktemp("noisy") / "noisy.yaml"
    path.write_text(TINY_SPACE.format(name="noisy").replace("[ir_k3_e1, ir_k3_e3, skip]", "[noise_k3_e1, ir_k3_e1]"))
    yield path
    unregister_op("noise")


def _search(out: Path, space: Path, mode: str, estimator: str = "soft", decide: float | None = None) -> list[list[float]]:
    # 1,500 θ images in batches of 50, 4 searching epochs: 120 θ steps; λ = 0: the cost says nothing.
    config = SearchConfig.from_flat(
        out=str(out),
        space=str(space),
        cost="flops",
        loss="additive",
        lam=0.0,
        mode=mode,
        theta_estimator=estimator,
        epochs=5,
        subset=3000,
        w_split=0.5,
        batch_size=50,
        val_subset=200,
        progress=False,
        plots=False,
    )
    if decide is not None:
        config.schedule.theta_decide = decide
    result = run_search(config)
    return result.history[-1]["probabilities"]


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_theta_prefers_the_useful_candidate_in_every_layer(tmp_path: Path, noisy_space: Path, mode: str) -> None:
    probabilities = _search(tmp_path / mode, noisy_space, mode)
    useful = [p[1] for p in probabilities]  # candidates: [noise_k3_e1, ir_k3_e1]
    assert all(p > 0.8 for p in useful), useful


def test_straight_through_hard_mode_learns_nothing_where_a_batchnorm_follows(tmp_path: Path, noisy_space: Path) -> None:
    # Without the decision term, which would turn the estimator's drift into a decision either way.
    probabilities = _search(tmp_path / "st", noisy_space, "hard", "straight-through", decide=0.0)
    useful = [p[1] for p in probabilities]
    # Layers 0 and 2 are stride/channel changes or feed the head: BatchNorm right after → θ stays at 0.5.
    assert abs(useful[0] - 0.5) < 0.05 and abs(useful[2] - 0.5) < 0.05, useful
