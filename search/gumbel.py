"""Gumbel-softmax masks over the candidates of one layer: soft (FBNet) and straight-through hard.

Noise comes from torch's global generator on the logits' device, so a seeded run is reproducible
and a checkpoint that restores the RNG state resumes it exactly.
"""

from __future__ import annotations

import torch


def gumbel_noise(like: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise of ``like``'s shape, dtype and device."""
    u = torch.rand_like(like)
    # Clamp both ends so that log never sees 0 (or 1, which would give log(-log 1) = -inf).
    eps = torch.finfo(u.dtype).tiny
    return -torch.log(-torch.log(u.clamp(min=eps, max=1.0 - 1e-7)))


def soft_mask(logits: torch.Tensor, tau: float, noise: torch.Tensor | None = None) -> torch.Tensor:
    """FBNet's mask ``m = softmax((θ + g) / τ)``; every candidate gets a (differentiable) weight."""
    g = gumbel_noise(logits) if noise is None else noise
    return torch.softmax((logits + g) / tau, dim=-1)


def hard_mask(logits: torch.Tensor, tau: float, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Straight-through Gumbel: a one-hot mask (forward) whose gradient is that of the soft mask.

    Returns the mask and the sampled index. The index is ``argmax(θ + g)``, an exact sample of
    ``softmax(θ)`` whatever τ is; τ only shapes the gradient.
    """
    g = gumbel_noise(logits) if noise is None else noise
    y = torch.softmax((logits + g) / tau, dim=-1)
    index = int(torch.argmax(logits.detach() + g))
    one_hot = torch.zeros_like(y)
    one_hot[index] = 1.0
    return one_hot - y.detach() + y, index
