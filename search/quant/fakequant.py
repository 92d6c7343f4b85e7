"""Fake quantization with straight-through gradients.

* Weights: symmetric, one step per output channel, weight = integer level × step. Up to 7 bits
  the levels are the 2^b odd integers −(2^b−1)..2^b−1 (mid-rise: 2 bits = {±1, ±3}); at 8 bits
  −127..127. Every level is an int8 value, so an integer runtime runs any of them as is. The
  step puts the top level at ``r·max|w|``, the ratio ``r`` minimising the squared error, chosen
  afresh each step without gradient: weights are shared between bit widths in the super net
  and keep moving, so a learned or once-calibrated step would go stale.
* Activations: PACT (Choi et al. 2018): clip to a learned ``[0, α]`` (or ``[-α, α]`` for an
  input that can be negative), quantize uniformly; ``α`` gets the PACT gradient (1 where the
  input is clipped), the input the straight-through one.
* 32 bits (or more) is the identity, exactly: same tensor, no clipping.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hwnas.errors import HwnasError

FULL_PRECISION = 32
# Clip ratios tried per channel for the weight scale; 1.0 (max) keeps every weight in range.
_CLIP_RATIOS = torch.tensor([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])


class BitsError(HwnasError, ValueError):
    """A bit width that is not supported (weights and activations: 1..16 or 32)."""


def check_bits(bits: int, what: str = "bits", low: int = 1) -> int:
    """Return ``bits`` if it is ``low``..16 or 32, else raise ``BitsError`` naming ``what``."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not (low <= bits <= 16 or bits == FULL_PRECISION):
        raise BitsError(f"{what}: {bits!r} is not a supported bit width ({low}..16 or 32)")
    return bits


def is_full_precision(bits: int) -> bool:
    return bits >= FULL_PRECISION


# Up to this width the weight grid is mid-rise: 2^b levels at odd multiples of the step.
MIDRISE_MAX_BITS = 7


def weight_levels(bits: int) -> int:
    """Largest integer level ``L`` of a ``bits``-bit weight: 2^b − 1 (odd levels) up to 7 bits, else 2^(b−1) − 1."""
    return 2**bits - 1 if bits <= MIDRISE_MAX_BITS else 2 ** (bits - 1) - 1


def _to_grid(v: Tensor, bits: int) -> Tensor:
    """Integer levels of ``v`` (already divided by the step)."""
    lv = weight_levels(bits)
    if bits <= MIDRISE_MAX_BITS:
        # Mid-rise: the odd integers −L..L, 2^b of them. With no zero level, 2 bits are four
        # values {±1, ±3}·step, not the three of a ternary grid: every code is used, and the
        # squared error of a Gaussian weight drops by about 40 %. Odd integers up to 127 are
        # int8 values, so an int8 kernel still computes the layer exactly.
        return torch.clamp(2 * torch.floor(v / 2) + 1, -lv, lv)
    return torch.clamp(torch.round(v), -lv, lv)


@torch.no_grad()
def weight_scale(w: Tensor, bits: int) -> Tensor:
    """Per-output-channel step (shape ``[C_out]``): weight = integer level × step."""
    flat = w.detach().reshape(w.shape[0], -1)
    amax = flat.abs().amax(dim=1).clamp_min(1e-8)
    if bits == 1:
        # Binary weights ±s: the least-squares s is the mean magnitude.
        return flat.abs().mean(dim=1).clamp_min(1e-8)
    lv = weight_levels(bits)
    if bits >= 8:
        return amax / lv  # fine grid: clipping buys nothing worth the search
    ratios = _CLIP_RATIOS.to(w.device, w.dtype)
    scales = ratios[:, None] * amax[None, :] / lv  # [R, C]: the top level at r·max|w|
    x = flat[None, :, :] / scales[:, :, None]
    err = ((_to_grid(x, bits) * scales[:, :, None] - flat[None]) ** 2).sum(dim=2)  # [R, C]
    best = err.argmin(dim=0)
    return scales.gather(0, best[None, :])[0]


def quantize_weight(w: Tensor, bits: int) -> Tensor:
    """Fake-quantize a weight (``[C_out, ...]``) per output channel; straight-through gradient."""
    if is_full_precision(bits):
        return w
    q, step = weight_integers(w, bits)
    q = q * step.reshape(-1, *([1] * (w.dim() - 1)))
    # q + (w − w): exactly q in value (x − x is exactly 0 in floating point, while w + (q − w) is
    # not exactly q), with the identity gradient to w.
    return q + (w - w.detach())


@torch.no_grad()
def weight_integers(w: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """The integer levels (a float tensor of int8 values for ≤ 8 bits) and the per-channel step."""
    step = weight_scale(w, bits)
    s = step.reshape(-1, *([1] * (w.dim() - 1)))
    if bits == 1:
        return torch.where(w >= 0, 1.0, -1.0).to(w.dtype), step
    return _to_grid(w.detach() / s, bits), step


class _PactFunction(torch.autograd.Function):
    """Clip to [lo, α], round to the grid; PACT gradients in one fused backward.

    d/dx = 1 inside the clip range, 0 outside (straight-through rounding);
    d/dα = Σ grad where x ≥ α (minus Σ grad where x ≤ −α when signed): PACT's rule.
    Only the input is kept for the backward (the masks are recomputed there): activations are
    the big tensors of a small network, so every elementwise pass and saved mask shows.
    """

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, levels: int, signed: bool) -> Tensor:
        a = alpha.detach().abs() + 1e-8
        lo = -a if signed else torch.zeros_like(a)
        step = a / levels
        out = torch.round(torch.clamp(x, lo, a) / step).mul_(step)
        ctx.signed = signed
        ctx.save_for_backward(x, a, alpha.detach())
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a, alpha = ctx.saved_tensors
        lo = -a if ctx.signed else torch.zeros_like(a)
        upper = x >= a
        lower = x <= lo
        gx = grad.masked_fill(upper | lower, 0.0)
        ga = None
        if ctx.needs_input_grad[1]:
            ga = grad[upper].sum()
            if ctx.signed:
                ga = ga - grad[lower].sum()
            # α enters as |α|: its gradient takes α's sign.
            ga = ga * (1.0 if float(alpha) >= 0 else -1.0)
        return gx, ga, None, None


def pact_quantize(x: Tensor, alpha: Tensor, bits: int, signed: bool) -> Tensor:
    """PACT: clip ``x`` to ``[0, α]`` (``[-α, α]`` if signed) and quantize to ``bits`` bits."""
    if is_full_precision(bits):
        return x
    levels = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return _PactFunction.apply(x, alpha, levels, signed)


class PactQuantizer(nn.Module):
    """Activation quantizer with a learned clip level α (one per instance)."""

    initialized: Tensor  # buffer, registered in __init__; declared so that it reads as a Tensor

    def __init__(self, bits: int, signed: bool = False, init_alpha: float | None = None) -> None:
        super().__init__()
        # 2 bits at least: a signed 1-bit grid {-α, 0, α} would have three values.
        self.bits = check_bits(bits, "activation bits", low=2)
        self.signed = signed
        self.alpha = nn.Parameter(torch.tensor(float(init_alpha) if init_alpha else 1.0))
        # The first batch seen in training sets α from the data unless given explicitly.
        self.register_buffer("initialized", torch.tensor(init_alpha is not None))

    @torch.no_grad()
    def calibrate(self, x: Tensor) -> None:
        """Set α to a high quantile of |x| (robust to a few outliers)."""
        flat = x.detach().abs().flatten()
        if flat.numel() > 200_000:
            flat = flat[torch.randint(0, flat.numel(), (200_000,), device=flat.device)]
        q = torch.quantile(flat.float(), 0.999).item() if flat.numel() else 1.0
        self.alpha.fill_(max(q, 1e-3))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        if is_full_precision(self.bits):
            return x
        if not bool(self.initialized):
            self.calibrate(x)
        return pact_quantize(x, self.alpha, self.bits, self.signed)

    def scale(self) -> float:
        """Quantization step (what an integer runtime calls the scale)."""
        levels = (2 ** (self.bits - 1) - 1) if self.signed else (2**self.bits - 1)
        return float(self.alpha.detach().abs()) / levels

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"
