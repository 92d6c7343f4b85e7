"""One weight set per searchable layer, sliced by every candidate (issue 23: a super net that can learn single paths).

With a weight set per candidate, a layer's 11 candidates produce 11 unrelated feature bases and the next layer
cannot fit them all: uniformly random paths stayed at 10–12% training accuracy after 160 steps. Here the
candidates of a layer are views of one set, as in Single-Path NAS and Once-for-All:

* ``ir_kK_eE[_gG]``: the 1×1 expansion takes the first ``C·E`` rows of the widest expansion's weight, the depthwise
  kernel is the centre K×K of the largest kernel, the 1×1 projection the first ``C·E`` columns; a grouped variant
  takes the block diagonal of the same weights (group i sees input block i, writes output block i).
* ``skip`` and ``maxpool_kK``/``avgpool_kK``: when the layer changes channels or stride they share one 1×1
  projection (conv-BN-ReLU); ``zero`` and an identity ``skip`` hold nothing.
* BatchNorm: one per place, sliced to the candidate's channels; its running statistics mix every path trained,
  so a child is evaluated with statistics recomputed for it (``search.evaluate.recalibrated_bn``).

Candidates keep their operator keys (latency tables do not change), and ``export_state`` gives the state dict of
the plain module (``search.ops.build_op``) that carries exactly the sliced weights: a child exported from the
super net computes what the super net computes on that path.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from hwnas.errors import HwnasError
from hwnas.opkey import OpSpec

SHAREABLE = ("ir", "skip", "maxpool", "avgpool", "zero")


class SharingError(HwnasError, ValueError):
    """A layer whose candidates cannot share one weight set (another block type)."""


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, n: int) -> torch.Tensor:
    """``bn`` on the first ``n`` channels, with nn.BatchNorm2d's own running-statistics rules."""
    mean, var, tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked
    # every BatchNorm of SharedMixedOp keeps running statistics (nn.BatchNorm2d's default)
    assert mean is not None and var is not None and tracked is not None
    factor = 0.0
    if bn.training and bn.track_running_stats:
        tracked.add_(1)
        factor = bn.momentum if bn.momentum is not None else 1.0 / float(tracked)
    use_batch = bn.training or not bn.track_running_stats
    return F.batch_norm(x, mean[:n], var[:n], bn.weight[:n], bn.bias[:n], use_batch, factor, bn.eps)


def _block_diagonal(w: torch.Tensor, groups: int) -> torch.Tensor:
    """The grouped-conv weight (R, C/g, ...) made of the g diagonal blocks of a dense (R, C, ...) weight."""
    if groups == 1:
        return w
    r, c = w.shape[0] // groups, w.shape[1] // groups
    return torch.cat([w[i * r : (i + 1) * r, i * c : (i + 1) * c] for i in range(groups)], dim=0)


def _shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _sliced_bn_state(bn: nn.BatchNorm2d, n: int, prefix: str) -> dict[str, torch.Tensor]:
    assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
    return {
        f"{prefix}.weight": bn.weight[:n].detach().clone(),
        f"{prefix}.bias": bn.bias[:n].detach().clone(),
        f"{prefix}.running_mean": bn.running_mean[:n].clone(),
        f"{prefix}.running_var": bn.running_var[:n].clone(),
        f"{prefix}.num_batches_tracked": bn.num_batches_tracked.clone(),
    }


def _param(spec: OpSpec, letter: str) -> int:
    """A parameter the op registry requires of ``spec``'s block (``k`` and ``e`` of ``ir``, ``k`` of a pool)."""
    value = spec.get(letter)
    assert value is not None, f"{spec.key} has no parameter {letter}"
    return value


def _conv_weight(shape: tuple[int, ...]) -> nn.Parameter:
    w = torch.empty(shape)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # nn.Conv2d's own initialisation
    return nn.Parameter(w)


class SharedMixedOp(nn.Module):
    """The candidates of one searchable layer as slices of one weight set; same interface as ``MixedOp``."""

    def __init__(self, candidates: list[str], specs: list[OpSpec]) -> None:
        super().__init__()
        bad = [c for c, s in zip(candidates, specs) if s.block not in SHAREABLE]
        if bad:
            raise SharingError(f"candidates {', '.join(bad)} cannot share weights (shareable blocks: {', '.join(SHAREABLE)})")
        self.names = list(candidates)
        self.specs = list(specs)
        n, c, h, w = specs[0].shape
        self.in_ch = c
        self.out_ch = specs[0].get("o", c) or c
        self.stride = specs[0].get("s", 1) or 1
        irs = [s for s in specs if s.block == "ir"]
        if irs:
            self.kmax = max(_param(s, "k") for s in irs)
            self.mid = c * max(_param(s, "e") for s in irs)
            self.pw = _conv_weight((self.mid, c, 1, 1))
            self.pw_bn = nn.BatchNorm2d(self.mid)
            self.dw = _conv_weight((self.mid, 1, self.kmax, self.kmax))
            self.dw_bn = nn.BatchNorm2d(self.mid)
            self.pwl = _conv_weight((self.out_ch, self.mid, 1, 1))
            self.pwl_bn = nn.BatchNorm2d(self.out_ch)
        if any(self._needs_projection(s) for s in specs):
            self.proj = _conv_weight((self.out_ch, c, 1, 1))
            self.proj_bn = nn.BatchNorm2d(self.out_ch)

    def _needs_projection(self, spec: OpSpec) -> bool:
        if spec.block == "skip":
            return self.in_ch != self.out_ch or self.stride != 1
        return spec.block in ("maxpool", "avgpool") and self.in_ch != self.out_ch

    # ------------------------------------------------------------------ one candidate
    def _ir_weights(self, spec: OpSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, g, mid = _param(spec, "k"), spec.get("g", 1) or 1, self.in_ch * _param(spec, "e")
        off = (self.kmax - k) // 2
        return (
            _block_diagonal(self.pw[:mid], g),
            self.dw[:mid, :, off : off + k, off : off + k],
            _block_diagonal(self.pwl[:, :mid], g),
        )

    def run(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Candidate ``index`` on ``x``."""
        spec = self.specs[index]
        if spec.block == "ir":
            k, g, mid = _param(spec, "k"), spec.get("g", 1) or 1, self.in_ch * _param(spec, "e")
            pw, dw, pwl = self._ir_weights(spec)
            y = F.relu(_bn(F.conv2d(x, pw, groups=g), self.pw_bn, mid))
            if g > 1:
                y = _shuffle(y, g)
            y = F.relu(_bn(F.conv2d(y, dw, stride=self.stride, padding=k // 2, groups=mid), self.dw_bn, mid))
            y = _bn(F.conv2d(y, pwl, groups=g), self.pwl_bn, self.out_ch)
            return x + y if self.stride == 1 and self.in_ch == self.out_ch else y
        if spec.block in ("maxpool", "avgpool"):
            k = _param(spec, "k")
            y = (
                F.max_pool2d(x, k, self.stride, k // 2)
                if spec.block == "maxpool"
                else F.avg_pool2d(x, k, self.stride, k // 2, count_include_pad=False)
            )
            return F.relu(_bn(F.conv2d(y, self.proj), self.proj_bn, self.out_ch)) if self._needs_projection(spec) else y
        if spec.block == "skip" and self._needs_projection(spec):
            return F.relu(_bn(F.conv2d(x, self.proj, stride=self.stride), self.proj_bn, self.out_ch))
        return x  # identity skip, zero

    def forward(self, x: torch.Tensor, mask: torch.Tensor, index: int | None = None) -> torch.Tensor:
        if index is not None:
            return mask[index] * self.run(x, index)
        out = mask[0] * self.run(x, 0)
        for i in range(1, len(self.specs)):
            out = torch.addcmul(out, mask[i], self.run(x, i))
        return out

    # ------------------------------------------------------------------ export
    def export_state(self, index: int) -> dict[str, torch.Tensor]:
        """The state dict of ``build_op(spec)`` for candidate ``index``, carrying its slices of the shared weights."""
        spec = self.specs[index]
        if spec.block == "ir":
            mid = self.in_ch * _param(spec, "e")
            pw, dw, pwl = (w.detach().clone() for w in self._ir_weights(spec))
            return {
                "pw.0.weight": pw,
                **_sliced_bn_state(self.pw_bn, mid, "pw.1"),
                "dw.0.weight": dw,
                **_sliced_bn_state(self.dw_bn, mid, "dw.1"),
                "pwl.0.weight": pwl,
                **_sliced_bn_state(self.pwl_bn, self.out_ch, "pwl.1"),
            }
        if self._needs_projection(spec):
            return {"proj.0.weight": self.proj.detach().clone(), **_sliced_bn_state(self.proj_bn, self.out_ch, "proj.1")}
        return {}
