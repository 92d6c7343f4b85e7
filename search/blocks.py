"""The module classes behind the operator registry: FBNet's blocks and the fixed parts of a network.

Every class here takes plain integers; ``search.ops`` turns an ``OpSpec`` into one of them.
Padding is always ``kernel // 2``, so a layer's output size is ``ceil(H / stride)`` whatever
candidate it picks (the super net needs every candidate of a layer to agree on the shape).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """K×K convolution (no bias) → BatchNorm → optional ReLU, the unit every block is made of."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: mixes the groups of a grouped 1×1 conv so information crosses them."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class InvertedResidual(nn.Module):
    """FBNet's IRF block: 1×1 (group) conv-BN-ReLU [→ shuffle] → K×K depthwise (stride) -BN-ReLU → 1×1 (group) conv-BN.

    The expansion 1×1 conv is kept even when e=1: the released FBNet graphs have it
    (e.g. a 16→16 1×1 conv in FBNet-B's first layer), and their MACs only add up with it.
    The residual add is used when stride is 1 and the channel count does not change.
    ``depthwise=2`` cascades two K×K depthwise convs (the first carries the stride), the
    ``cdw`` variant found in the released FBNet-B/C graphs.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, expansion: int, groups: int, stride: int, depthwise: int = 1
    ) -> None:
        super().__init__()
        mid = in_ch * expansion
        self.pw = ConvBNReLU(in_ch, mid, 1, groups=groups)
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        dws = [ConvBNReLU(mid, mid, kernel, stride if i == 0 else 1, groups=mid) for i in range(depthwise)]
        self.dw = dws[0] if depthwise == 1 else nn.Sequential(*dws)
        self.pwl = ConvBNReLU(mid, out_ch, 1, groups=groups, relu=False)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwl(self.dw(self.shuffle(self.pw(x))))
        return x + y if self.use_residual else y


class Skip(nn.Module):
    """FBNet's ``skip``: identity, or a 1×1 conv-BN-ReLU projection when channels or stride change."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        # Same choice as mobile-vision's Identity block: a layer that changes shape cannot be
        # skipped for free, and its latency entry must say so.
        self.proj = ConvBNReLU(in_ch, out_ch, 1, stride) if (in_ch != out_ch or stride != 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else self.proj(x)


class Pool(nn.Module):
    """K×K max or average pooling with the stride, then a 1×1 conv-BN-ReLU projection if channels change."""

    def __init__(self, kind: str, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        if kind == "max":
            self.pool: nn.Module = nn.MaxPool2d(kernel, stride, kernel // 2)
        else:
            # count_include_pad=False: border outputs average real pixels only.
            self.pool = nn.AvgPool2d(kernel, stride, kernel // 2, count_include_pad=False)
        self.proj = ConvBNReLU(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x)
        return y if self.proj is None else self.proj(y)


class GapFC(nn.Module):
    """Classifier: global average pool → flatten → linear layer to the class logits."""

    def __init__(self, in_ch: int, classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


# ---- MobileNetV3 / Once-for-All blocks ---------------------------------------------------------
def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10 % below it.

    The channel rounding of MobileNetV2/V3 and Once-for-All: their published tables and configs
    hold channel counts rounded this way, so ours must round the same to meet the same keys.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "hswish": nn.Hardswish}


class ConvAct(nn.Sequential):
    """K×K convolution → [BatchNorm] → activation (``relu`` or ``hswish``); without BN the conv has no bias either.

    OFA's ``feature_mix_layer`` (the 1×1 conv after the pool) is the BN-less case: a conv
    without bias followed by h-swish, exactly as its net.config says (``use_bn: false``, ``bias: false``).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, act: str = "relu", bn: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False)]
        if bn:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(ACTIVATIONS[act]())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """OFA MobileNetV3's squeeze-excite: mean over H×W → 1×1 conv to C/4 (rounded to 8) → ReLU → 1×1 conv → h-sigmoid → scale."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        mid = make_divisible(channels // reduction, 8)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(w))))


class MobileBlock(nn.Module):
    """MobileNetV3-style block with an explicit mid width: [1×1 conv-BN-act] → K×K depthwise-BN-act → [SE] → 1×1 conv-BN [+x].

    ``mid == in_ch`` leaves out the 1×1 expansion conv, as Once-for-All and ProxylessNAS do for
    expand ratio 1 (their first block): the table keys of those projects time that block without it.
    The activation is ReLU or h-swish; squeeze-excite sits on the mid channels after the depthwise
    conv. Residual add exactly when stride is 1 and the channel count does not change.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, mid: int, se: bool = False, act: str = "relu") -> None:
        super().__init__()
        self.expand = ConvAct(in_ch, mid, 1, act=act) if mid != in_ch else None
        self.dw = nn.Sequential(
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), ACTIVATIONS[act]()
        )
        self.se = SqueezeExcite(mid) if se else None
        self.project = nn.Sequential(nn.Conv2d(mid, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x if self.expand is None else self.expand(x))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.use_residual else y


class GlobalPool(nn.Module):
    """Global average pool that keeps N×C×1×1, so a 1×1 conv can follow it (OFA's ``feature_mix_layer``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class Classifier(nn.Module):
    """Flatten → linear layer to the class logits: the classifier after a pool that was its own operator."""

    def __init__(self, in_features: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))
