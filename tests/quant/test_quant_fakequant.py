"""Fake quantization: identity at 32 bits, at most 2^b values at b bits, gradients reach θ, α and the weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from search.quant.bits import Bits, bits_grid
from search.quant.fakequant import BitsError, PactQuantizer, pact_quantize, quantize_weight, weight_integers
from search.quant.modules import MixedQuantLayer, QuantLayer


def test_32_bits_is_the_identity() -> None:
    w = torch.randn(8, 4, 3, 3) * 5
    x = torch.randn(2, 4, 6, 6) * 7
    assert quantize_weight(w, 32) is w
    assert pact_quantize(x, torch.tensor(1.0), 32, signed=False) is x
    q = PactQuantizer(32)
    assert torch.equal(q(x), x)  # no clipping either: negative and large values survive
    conv = nn.Conv2d(4, 8, 3, padding=1)
    assert torch.equal(QuantLayer(conv, Bits(32, 32))(x), conv(x))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_weights_take_at_most_2_to_the_b_values_per_output_channel(bits: int) -> None:
    w = torch.randn(16, 8, 3, 3)
    q = quantize_weight(w, bits)
    for c in range(w.shape[0]):
        assert len(torch.unique(q[c])) <= 2**bits
    # Symmetric: the grid of a channel is ±k·step, so the values come in sign pairs.
    levels = torch.unique(q[0].abs())
    assert len(levels) <= 2 ** (bits - 1) + (1 if bits >= 8 else 0)
    assert not torch.equal(q, w)
    # Integer levels an int8 kernel can run: odd −(2^b−1)..2^b−1 up to 7 bits (every code used).
    ints, step = weight_integers(w, bits)
    assert step.shape == (16,) and float(ints.abs().max()) <= 127
    assert torch.equal(ints * step.view(-1, 1, 1, 1), q)
    if 1 < bits <= 7:
        assert bool((ints.remainder(2) == 1).all())
        assert max(len(torch.unique(ints[c])) for c in range(16)) == 2**bits


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("signed", [False, True])
def test_activations_take_at_most_2_to_the_b_values(bits: int, signed: bool) -> None:
    x = torch.randn(4, 8, 10, 10) * 3
    q = PactQuantizer(bits, signed=signed)
    y = q(x).detach()
    assert len(torch.unique(y)) <= 2**bits
    alpha = float(q.alpha.detach())
    assert float(y.max()) <= alpha + 1e-5
    assert float(y.min()) >= (-alpha - 1e-5 if signed else 0.0)


def test_pact_gradients_reach_alpha_and_the_input() -> None:
    x = torch.linspace(-2, 3, 11, requires_grad=True)
    alpha = torch.tensor(1.5, requires_grad=True)
    pact_quantize(x, alpha, 4, signed=False).sum().backward()
    # PACT: d/dα = number of clipped inputs (x ≥ α: 1.5, 2, 2.5, 3); d/dx = 1 strictly inside (0, α).
    assert float(alpha.grad) == pytest.approx(4.0)
    assert x.grad.tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]


def test_weight_gradients_are_straight_through() -> None:
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    (quantize_weight(w, 2) * 3.0).sum().backward()
    assert torch.allclose(w.grad, torch.full_like(w, 3.0))


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_gradients_reach_theta(mode: str) -> None:
    conv = nn.Conv2d(4, 6, 3, padding=1)
    layer = MixedQuantLayer(conv, bits_grid([2, 4, 32], [4, 32]))
    layer.mode = mode
    layer.train()
    y = layer(torch.relu(torch.randn(2, 4, 8, 8)))
    (y**2).mean().backward()
    assert layer.theta.grad is not None
    assert float(layer.theta.grad.abs().sum()) > 0
    assert conv.weight.grad is not None and float(conv.weight.grad.abs().sum()) > 0


def test_hard_mode_runs_one_candidate_soft_mode_one_conv_per_activation_width() -> None:
    layer = MixedQuantLayer(nn.Conv2d(4, 4, 3, padding=1), bits_grid([2, 4, 8, 32], [4, 8, 32]))
    layer.train()
    x = torch.relu(torch.randn(1, 4, 8, 8))
    layer.mode = "hard"
    for _ in range(5):
        layer(x)
    assert layer.forward_calls == 5
    layer.forward_calls = 0
    layer.mode = "soft"
    layer(x)
    assert layer.forward_calls == 3  # 12 candidates, 3 activation widths: conv is bilinear


def test_soft_mixture_equals_the_sum_of_candidates() -> None:
    """Σ_i m_i·conv(Qa_i x, Qw_i W) computed with one conv per activation width is exact."""
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    cands = bits_grid([2, 8], [4, 32])
    layer = MixedQuantLayer(conv, cands).train()
    x = torch.relu(torch.randn(2, 3, 6, 6))
    layer.acts["4"].calibrate(x)
    torch.manual_seed(7)
    y = layer(x)
    mask = layer.last_mask.detach()
    ref = sum(
        mask[i] * nn.functional.conv2d(layer.acts[str(c.a)](x), quantize_weight(conv.weight, c.w), None, padding=1)
        for i, c in enumerate(cands)
    ) + conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(y, ref, atol=1e-5)


def test_bad_bit_widths_are_refused() -> None:
    with pytest.raises(BitsError):
        Bits(0, 8)
    with pytest.raises(BitsError):
        Bits(4, 1)  # activations: 2 bits at least
    with pytest.raises(BitsError):
        Bits.parse("w4x8")
    assert Bits.parse("int8") == Bits(8, 8)
    assert Bits.parse("fp32").dtype is None and Bits(4, 8).dtype == "w4a8"
