"""Quantized operators in the project's operator registry: ``qconv`` and ``qlinear``.

Keys carry the bit widths as dtype::

    qconv_k3_g1_s1_o16@1x16x28x28#w4a8     3×3 conv, 16→16, weights 4 bits, input 8 bits
    qlinear_o10@1x64x1x1#w8a8              classifier 64→10 at 8/8 bits
    qconv_k3_g1_s1_o16@1x16x28x28          the same conv in fp32 (fp32 is implied)

``build_op(key)`` gives a ``QuantOp``: in training a fake-quantized layer (STE, PACT); in eval
mode — which is how the device agent exports operators — a layer with both widths ≤ 8 is
written with QuantizeLinear/DequantizeLinear on input, weight and output, so ONNX Runtime runs
it as an int8 ``QLinearConv`` / ``QGemm``: the kernel a phone or host would really use.
Wider layers run in float (their fake quantization is float arithmetic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hwnas.opkey import OpSpec
from search.op_registry import OpError, register_op
from search.quant.bits import Bits
from search.quant.fakequant import BitsError, weight_integers
from search.quant.modules import QuantLayer

# The block names of the quantized operators' keys (``qconv_k3_g1_s1_o16@1x16x32x32:w4a8``).
CONV_BLOCK = "qconv"
LINEAR_BLOCK = "qlinear"


def _bits_of(spec: OpSpec) -> Bits:
    try:
        return Bits.from_dtype(spec.dtype)
    except BitsError as exc:
        raise OpError(spec.key, str(exc)) from None


class QuantOp(QuantLayer):
    """A standalone quantized operator: trains like ``QuantLayer``, exports as int8 QDQ in eval mode."""

    out_absmax: Tensor  # buffer, registered in __init__; declared so that it reads as a Tensor

    def __init__(self, op: nn.Conv2d | nn.Linear, bits: Bits, in_shape: tuple[int, ...]) -> None:
        super().__init__(op, bits, signed=False)
        self.register_buffer("out_absmax", torch.tensor(0.0))
        if not op.weight.is_meta:
            # Ranges from a standard-normal input, set now: exporting traces the module, and a
            # trace must not write buffers. Latency does not depend on the exact ranges.
            with torch.no_grad():
                x = torch.randn(in_shape, generator=torch.Generator().manual_seed(0))
                self.act.calibrate(x)
                self.eval()
                self.out_absmax.fill_(float(self._int8_conv(x).abs().max().clamp_min(1e-6)))

    def forward(self, x: Tensor) -> Tensor:
        if x.is_meta:
            # Shape and FLOP counting on the meta device: the arithmetic is the float layer's.
            return self.op(x)
        if self.training or not self.bits.is_int8_runnable:
            return super().forward(x)
        y = self._int8_conv(x)
        # An int8 kernel writes an 8-bit output: the Q/DQ pair lets the runtime use it.
        return torch.fake_quantize_per_tensor_affine(y, float(self.out_absmax) / 127, 0, -128, 127)

    def _int8_conv(self, x: Tensor) -> Tensor:
        alpha = float(self.act.alpha.detach().abs())
        levels = 2**self.bits.a - 1
        xq = torch.clamp(x, 0.0, alpha) if self.bits.a < 8 else x
        xq = torch.fake_quantize_per_tensor_affine(xq, alpha / levels, 0, 0, 255)
        q, step = weight_integers(self.op.weight, self.bits.w)
        w = q * step.view(-1, *([1] * (q.dim() - 1)))
        w = torch.fake_quantize_per_channel_affine(w, step, torch.zeros_like(step, dtype=torch.int32), 0, -128, 127)
        if isinstance(self.op, nn.Conv2d):
            y = F.conv2d(xq, w, self.op.bias, self.op.stride, self.op.padding, self.op.dilation, self.op.groups)
        else:
            y = F.linear(xq, w, self.op.bias)
        return y


class _Flatten(nn.Module):
    def __init__(self, inner: QuantOp) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x.flatten(1))


def _conv_check(spec: OpSpec) -> None:
    k, g, o = spec.get("k"), spec.get("g"), spec.get("o")
    if k is not None and k % 2 == 0:
        raise OpError(spec.key, f"kernel k{k} must be odd (padding k//2 keeps the size)")
    if g and (spec.shape[1] % g or (o or 0) % g):
        raise OpError(spec.key, f"channels {spec.shape[1]}→{o} not divisible by groups g{g}")
    _bits_of(spec)


def _conv_shape(spec: OpSpec) -> tuple[int, int, int, int]:
    n, _, h, w = spec.shape
    s = spec.get("s") or 1
    return (n, spec.get("o") or 1, -(-h // s), -(-w // s))


@register_op(
    CONV_BLOCK,
    params=("k", "g"),
    shape=_conv_shape,
    check=_conv_check,
    doc="kxk (group) convolution with bias (BN folded), weights/input fake-quantized to the key's #w<b>a<b>",
)
def _qconv(spec: OpSpec) -> nn.Module:
    k, g, s, o = spec.get("k"), spec.get("g"), spec.get("s"), spec.get("o")
    # build_op has checked that the key has every parameter the registration names.
    assert k is not None and g is not None and s is not None and o is not None
    conv = nn.Conv2d(spec.shape[1], o, k, s, k // 2, groups=g, bias=True)
    return QuantOp(conv, _bits_of(spec), spec.shape)


def _linear_check(spec: OpSpec) -> None:
    _bits_of(spec)


@register_op(
    LINEAR_BLOCK,
    geometry=("o",),
    shape=lambda s: (s.shape[0], s.get("o"), 1, 1),  # type: ignore[arg-type,return-value]
    check=_linear_check,
    doc="linear layer on the flattened input, fake-quantized to the key's #w<b>a<b>",
)
def _qlinear(spec: OpSpec) -> nn.Module:
    _, c, h, w = spec.shape
    return _Flatten(QuantOp(nn.Linear(c * h * w, spec.get("o")), _bits_of(spec), (spec.shape[0], c * h * w)))  # type: ignore[arg-type]
