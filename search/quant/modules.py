"""Quantized convolution / linear layers and the mixed-precision (super-net) layer.

All wrap an existing ``nn.Conv2d`` / ``nn.Linear`` and share its weight, so a float model is
turned into a quantized one (or a bit-width super net) by swapping modules in place, and the
float checkpoint loads into either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from search.quant.bits import Bits
from search.gumbel import hard_mask, soft_mask
from search.quant.fakequant import PactQuantizer, quantize_weight

QuantizableModule = nn.Conv2d | nn.Linear


def _apply(op: QuantizableModule, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if isinstance(op, nn.Conv2d):
        return F.conv2d(x, weight, bias, op.stride, op.padding, op.dilation, op.groups)
    return F.linear(x, weight, bias)


class QuantLayer(nn.Module):
    """A conv or linear layer at fixed bits: PACT on its input, per-channel symmetric weights."""

    def __init__(self, op: QuantizableModule, bits: Bits, signed: bool = False) -> None:
        super().__init__()
        self.op = op
        self.bits = bits
        self.signed = signed
        self.act = PactQuantizer(bits.a, signed=signed)

    def forward(self, x: Tensor) -> Tensor:
        return _apply(self.op, self.act(x), quantize_weight(self.op.weight, self.bits.w), self.op.bias)

    def extra_repr(self) -> str:
        return f"bits={self.bits.tag}"


class MixedQuantLayer(nn.Module):
    """One super-net edge: the same conv at several (w, a) bit widths, mixed by Gumbel masks.

    The candidates share the float weight (one copy, quantized per width on the fly) and each
    activation width has its own PACT clip. Because a convolution is bilinear,
    ``Σ_i m_i·conv(Qa_i(x), Qw_i(W)) = Σ_a conv(Qa(x), Σ_{i: a_i = a} m_i·Qw_i(W))``: soft mode
    costs one convolution per distinct activation width, not one per candidate. Hard mode runs
    only the sampled candidate in the weight steps; its θ steps run soft (``MixedNet.theta_pass``:
    the BatchNorm after this layer would cancel a straight-through mask's gradient).
    """

    def __init__(self, op: QuantizableModule, candidates: list[Bits], signed: bool = False) -> None:
        super().__init__()
        if not candidates:
            raise ValueError("a mixed layer needs at least one candidate")
        self.op = op
        self.candidates = list(candidates)
        self.signed = signed
        self.theta = nn.Parameter(torch.zeros(len(candidates)))
        self.acts = nn.ModuleDict({str(a): PactQuantizer(a, signed=signed) for a in sorted({c.a for c in candidates})})
        self.mode = "soft"
        self.temperature = 5.0
        self.last_mask: Tensor | None = None
        self.fixed_index: int | None = None  # run one candidate (set by QuantSuperNet.fixed_choices)
        self.forward_calls = 0  # candidate convolutions run; tests count them

    def probabilities(self) -> Tensor:
        return F.softmax(self.theta, dim=0)

    def sample_mask(self) -> Tensor:
        """Gumbel-softmax weights (soft) or a straight-through one-hot (hard); a fixed one-hot if set."""
        if self.fixed_index is not None:
            return F.one_hot(torch.tensor(self.fixed_index), len(self.candidates)).to(self.theta)
        if not self.training:
            # Deterministic, as in the architecture super net: soft mixes with softmax(θ/τ) (the
            # batch-norm statistics were gathered under mixing), hard runs the most likely width.
            if self.mode == "soft":
                return F.softmax(self.theta.detach() / self.temperature, dim=0)
            return F.one_hot(self.theta.detach().argmax(), len(self.candidates)).to(self.theta)
        if self.mode == "hard":
            return hard_mask(self.theta, self.temperature)[0]
        return soft_mask(self.theta, self.temperature)

    def forward(self, x: Tensor) -> Tensor:
        mask = self.sample_mask()
        self.last_mask = mask
        if self.mode == "hard" or self.fixed_index is not None:
            i = int(mask.detach().argmax())
            c = self.candidates[i]
            self.forward_calls += 1
            w = quantize_weight(self.op.weight, c.w)
            y = _apply(self.op, self.acts[str(c.a)](x), w, None)
            # Times the straight-through mask entry (1.0 in value): the "straight-through" θ estimator,
            # kept for comparison; the default θ step of hard mode runs soft (search/mixed.py).
            y = y * mask[i]
            return y if self.op.bias is None else y + _bias_view(self.op, y)
        out: Tensor | None = None
        wq_cache: dict[int, Tensor] = {}
        for a in sorted({c.a for c in self.candidates}):
            w_mix: Tensor | None = None
            for i, c in enumerate(self.candidates):
                if c.a != a:
                    continue
                if c.w not in wq_cache:
                    wq_cache[c.w] = quantize_weight(self.op.weight, c.w)
                term = mask[i] * wq_cache[c.w]
                w_mix = term if w_mix is None else w_mix + term
            assert w_mix is not None  # a is some candidate's width
            self.forward_calls += 1
            y = _apply(self.op, self.acts[str(a)](x), w_mix, None)
            out = y if out is None else out + y
        assert out is not None
        # Σ mask = 1, so the bias is added once.
        return out if self.op.bias is None else out + _bias_view(self.op, out)

    def argmax_bits(self) -> Bits:
        return self.candidates[int(self.theta.detach().argmax())]

    def extra_repr(self) -> str:
        return f"candidates=[{', '.join(c.tag for c in self.candidates)}], signed={self.signed}"


def _bias_view(op: QuantizableModule, y: Tensor) -> Tensor:
    assert op.bias is not None
    return op.bias.view(1, -1, *([1] * (y.dim() - 2)))


def get_submodule_parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The parent module of ``name`` and the attribute under which it holds it."""
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Swap the submodule at dotted path ``name`` for ``new`` (works inside Sequential/ModuleList)."""
    parent, attr = get_submodule_parent(model, name)
    setattr(parent, attr, new)
