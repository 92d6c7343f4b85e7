"""The operator registry: block name → module factory, one place for super net, device agent and cost models.

An operator is registered once::

    @register_op("ir", params=("k", "e"), defaults={"g": 1}, doc="inverted residual")
    def _ir(spec: OpSpec) -> nn.Module: ...

after which ``candidate_spec("ir_k3_e6", (1, 16, 112, 112), 24, 2)`` gives the spec
``ir_k3_e6_g1_s2_o24@1x16x112x112``, ``build_op`` gives its module and ``output_shape`` its
output shape. A *candidate* is the block part of a key without the layer geometry (stride
``s`` and output channels ``o``), which the search space supplies per layer.
"""

from __future__ import annotations

import math

from torch import nn

from hwnas.opkey import OpSpec
from search.blocks import ConvBNReLU, GapFC, InvertedResidual, Pool, Skip
from search.op_registry import (  # noqa: F401 - the registry's API, re-exported: search.ops is where callers find it
    CheckFn,
    Factory,
    OpDef,
    OpError,
    Shape,
    ShapeFn,
    _as_spec,
    build_op,
    candidate_spec,
    check_spec,
    get_op,
    output_shape,
    register_op,
    registered_ops,
    registry_version,
    unregister_op,
)


# ---- shape helpers -------------------------------------------------------------------------
def _spatial(spec: OpSpec) -> Shape:
    n, c, h, w = spec.shape
    s = spec.get("s", 1) or 1
    return (n, spec.get("o", c) or c, math.ceil(h / s), math.ceil(w / s))


def _divisible(spec: OpSpec) -> None:
    g = spec.get("g", 1) or 1
    c = spec.shape[1]
    mid = c * (spec.get("e", 1) or 1)
    o = spec.get("o", c) or c
    for what, n in (("input channels", c), ("expanded channels", mid), ("output channels", o)):
        if n % g:
            raise OpError(spec.key, f"{what} {n} not divisible by groups g{g}")
    if spec.get("e") == 0:
        raise OpError(spec.key, "parameter e must be at least 1")


def _odd_kernel(spec: OpSpec) -> None:
    k = spec.get("k")
    if k is not None and k % 2 == 0:
        raise OpError(spec.key, f"kernel k{k} must be odd (padding k//2 keeps the size)")


# ---- built-in operators ----------------------------------------------------------------------
def _ir_check(spec: OpSpec) -> None:
    _odd_kernel(spec)
    _divisible(spec)


@register_op("ir", params=("k", "e"), defaults={"g": 1}, shape=_spatial, check=_ir_check,
             doc="inverted residual: 1x1 (group) conv-BN-ReLU [shuffle] -> kxk depthwise-BN-ReLU -> 1x1 (group) conv-BN [+x]")
def _ir(spec: OpSpec) -> nn.Module:
    return InvertedResidual(spec.shape[1], spec.get("o"), spec.get("k"), spec.get("e"), spec.get("g"), spec.get("s"))  # type: ignore[arg-type]


@register_op("ir_cdw", params=("k", "e"), defaults={"g": 1}, shape=_spatial, check=_ir_check,
             doc="inverted residual with two cascaded kxk depthwise convs (mobile-vision's ir_k3_sep / cdw)")
def _ir_cdw(spec: OpSpec) -> nn.Module:
    return InvertedResidual(spec.shape[1], spec.get("o"), spec.get("k"), spec.get("e"), spec.get("g"), spec.get("s"), depthwise=2)  # type: ignore[arg-type]


@register_op("skip", shape=_spatial, doc="identity; 1x1 conv-BN-ReLU projection when channels or stride change")
def _skip(spec: OpSpec) -> nn.Module:
    return Skip(spec.shape[1], spec.get("o"), spec.get("s"))  # type: ignore[arg-type]


@register_op("conv", params=("k",), shape=_spatial, check=_odd_kernel, doc="kxk conv-BN-ReLU (stem, head 1x1 conv)")
def _conv(spec: OpSpec) -> nn.Module:
    return ConvBNReLU(spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s"))  # type: ignore[arg-type]


@register_op("maxpool", params=("k",), shape=_spatial, check=_odd_kernel,
             doc="kxk max pooling with the stride; 1x1 conv-BN-ReLU projection after it when channels change")
def _maxpool(spec: OpSpec) -> nn.Module:
    return Pool("max", spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s"))  # type: ignore[arg-type]


@register_op("avgpool", params=("k",), shape=_spatial, check=_odd_kernel,
             doc="kxk average pooling with the stride; 1x1 conv-BN-ReLU projection after it when channels change")
def _avgpool(spec: OpSpec) -> nn.Module:
    return Pool("avg", spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s"))  # type: ignore[arg-type]


@register_op("gap_fc", geometry=("o",), shape=lambda s: (s.shape[0], s.get("o"), 1, 1),  # type: ignore[arg-type,return-value]
             doc="global average pool -> linear classifier (o = classes)")
def _gap_fc(spec: OpSpec) -> nn.Module:
    return GapFC(spec.shape[1], spec.get("o"))  # type: ignore[arg-type]


# The quantized operators register themselves on import; importing them here makes ``search.ops`` the whole registry.
from search.quant import registry as _quantized  # noqa: E402,F401
