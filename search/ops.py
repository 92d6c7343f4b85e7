"""The FBNet operators (``ir``, ``conv``, pools, ``skip``, ``zero``, the head), registered in the operator
registry (``search.op_registry``), and the registry's import point: importing this module registers them and the
quantized ones (``search.quant.registry``) and re-exports the registry's API, one place for super net, device
agent and cost models. The registry itself (storage, validation, shapes) lives in ``search.op_registry``, which
both sets of operators import, so that neither imports the other.

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
from search.blocks import (
    Classifier,
    ConvAct,
    ConvBNReLU,
    GapFC,
    GlobalPool,
    InvertedResidual,
    MobileBlock,
    Pool,
    Skip,
    make_divisible,
)
from search.op_registry import (  # noqa: F401 - the registry's API, re-exported: search.ops is where callers find it
    CheckFn,
    DeriveFn,
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


@register_op(
    "ir",
    params=("k", "e"),
    defaults={"g": 1},
    shape=_spatial,
    check=_ir_check,
    doc="inverted residual: 1x1 (group) conv-BN-ReLU [shuffle] -> kxk depthwise-BN-ReLU -> 1x1 (group) conv-BN [+x]",
)
def _ir(spec: OpSpec) -> nn.Module:
    return InvertedResidual(spec.shape[1], spec.get("o"), spec.get("k"), spec.get("e"), spec.get("g"), spec.get("s"))  # type: ignore[arg-type]


@register_op(
    "ir_cdw",
    params=("k", "e"),
    defaults={"g": 1},
    shape=_spatial,
    check=_ir_check,
    doc="inverted residual with two cascaded kxk depthwise convs (mobile-vision's ir_k3_sep / cdw)",
)
def _ir_cdw(spec: OpSpec) -> nn.Module:
    return InvertedResidual(spec.shape[1], spec.get("o"), spec.get("k"), spec.get("e"), spec.get("g"), spec.get("s"), depthwise=2)  # type: ignore[arg-type]


def _zero_check(spec: OpSpec) -> None:
    if spec.get("s") != 1 or spec.get("o") != spec.shape[1]:
        raise OpError(spec.key, "zero (a dropped layer) needs stride 1 and unchanged channels: only an identity can be dropped")


# ProxylessNAS's "zero" op and Once-for-All's elastic depth: the layer is not there at all. Unlike an
# identity `skip` (which our own tables measure like any operator), it is `free`: latency 0, no
# table entry needed — what ProxylessNAS's latency estimator counts for it, and the only way a
# published table (which has no entry for a layer that does not exist) can price a shallower network.
@register_op(
    "zero",
    shape=_spatial,
    check=_zero_check,
    free=True,
    doc="a dropped layer (ProxylessNAS zero, OFA elastic depth): the input passes unchanged; costs nothing",
)
def _zero(spec: OpSpec) -> nn.Module:
    return nn.Identity()


@register_op("skip", shape=_spatial, doc="identity; 1x1 conv-BN-ReLU projection when channels or stride change")
def _skip(spec: OpSpec) -> nn.Module:
    return Skip(spec.shape[1], spec.get("o"), spec.get("s"))  # type: ignore[arg-type]


@register_op("conv", params=("k",), shape=_spatial, check=_odd_kernel, doc="kxk conv-BN-ReLU (stem, head 1x1 conv)")
def _conv(spec: OpSpec) -> nn.Module:
    return ConvBNReLU(spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s"))  # type: ignore[arg-type]


@register_op(
    "maxpool",
    params=("k",),
    shape=_spatial,
    check=_odd_kernel,
    doc="kxk max pooling with the stride; 1x1 conv-BN-ReLU projection after it when channels change",
)
def _maxpool(spec: OpSpec) -> nn.Module:
    return Pool("max", spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s"))  # type: ignore[arg-type]


@register_op(
    "avgpool",
    params=("k",),
    shape=_spatial,
    check=_odd_kernel,
    doc="kxk average pooling with the stride; 1x1 conv-BN-ReLU projection after it when channels change",
)
def _avgpool(spec: OpSpec) -> nn.Module:
    return Pool("avg", spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s"))  # type: ignore[arg-type]


@register_op(
    "gap_fc",
    geometry=("o",),
    shape=lambda s: (s.shape[0], s.get("o"), 1, 1),  # type: ignore[arg-type,return-value]
    doc="global average pool -> linear classifier (o = classes)",
)
def _gap_fc(spec: OpSpec) -> nn.Module:
    return GapFC(spec.shape[1], spec.get("o"))  # type: ignore[arg-type]


# ---- MobileNetV3 / Once-for-All operators ------------------------------------------------------
# `mb` is parameterised by its mid width `m`, because that is what Once-for-All's tables key on
# (`expand:408` is 136 channels x 3). A candidate may give the expansion ratio instead (`mb_k3_e3`):
# it becomes m = make_divisible(C_in * e, 8), OFA's own rounding, so one candidate list serves
# the first layer of a stage and the ones after it.
def _mb_derive(params: dict[str, int], in_shape: Shape) -> dict[str, int]:
    params = dict(params)
    e = params.pop("e", None)
    if e is not None:
        if "m" in params:
            raise OpError("mb", "give the mid width m or the expansion e, not both")
        if e < 1:
            raise OpError("mb", "expansion e must be at least 1")
        # e1 means "no expansion conv" (m == C_in), which rounding must not turn into another width.
        params["m"] = in_shape[1] if e == 1 else make_divisible(in_shape[1] * e, 8)
    return params


def _mb_check(spec: OpSpec) -> None:
    _odd_kernel(spec)
    m = spec.get("m") or 0
    if m < spec.shape[1]:
        raise OpError(spec.key, f"mid width m{m} is below the input channels {spec.shape[1]} (m = input channels: no expansion)")


def _register_mb(name: str, se: bool, act: str, what: str) -> None:
    @register_op(
        name,
        params=("k", "m"),
        shape=_spatial,
        check=_mb_check,
        derive=_mb_derive,
        doc=f"MobileNetV3 block{what}: [1x1 conv to m] -> kxk depthwise -> {'SE -> ' if se else ''}1x1 conv-BN [+x]; "
        "m = input channels leaves out the expansion conv",
    )
    def _mb(spec: OpSpec) -> nn.Module:
        return MobileBlock(spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s"), spec.get("m"), se=se, act=act)  # type: ignore[arg-type]


for _name, _se, _act, _what in (
    ("mb", False, "relu", " (ReLU)"),
    ("mb_se", True, "relu", " with squeeze-excite (ReLU)"),
    ("mb_hs", False, "hswish", " (h-swish)"),
    ("mb_se_hs", True, "hswish", " with squeeze-excite, h-swish"),
):
    _register_mb(_name, _se, _act, _what)


@register_op(
    "conv_hs", params=("k",), shape=_spatial, check=_odd_kernel, doc="kxk conv-BN-h-swish (MobileNetV3 stem and final 1x1 conv)"
)
def _conv_hs(spec: OpSpec) -> nn.Module:
    return ConvAct(spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s"), act="hswish")  # type: ignore[arg-type]


@register_op(
    "conv_hs_nobn",
    params=("k",),
    shape=_spatial,
    check=_odd_kernel,
    doc="kxk conv (no bias) -> h-swish, no BatchNorm: Once-for-All's feature_mix_layer after the pool",
)
def _conv_hs_nobn(spec: OpSpec) -> nn.Module:
    return ConvAct(spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s"), act="hswish", bn=False)  # type: ignore[arg-type]


@register_op("gap", geometry=(), shape=lambda s: (s.shape[0], s.shape[1], 1, 1), doc="global average pool to N x C x 1 x 1")
def _gap(spec: OpSpec) -> nn.Module:
    return GlobalPool()


@register_op(
    "fc",
    geometry=("o",),
    shape=lambda s: (s.shape[0], s.get("o"), 1, 1),  # type: ignore[arg-type,return-value]
    doc="flatten -> linear classifier (o = classes), after a pool that is its own operator",
)
def _fc(spec: OpSpec) -> nn.Module:
    n, c, h, w = spec.shape
    return Classifier(c * h * w, spec.get("o"))  # type: ignore[arg-type]


def is_free(spec: OpSpec | str) -> bool:
    """True for an operator that runs nothing (``zero``): it costs nothing and needs no latency-table entry."""
    return get_op(_as_spec(spec).block).free


# The quantized operators register themselves on import; importing them here makes ``search.ops`` the whole registry.
from search.quant import registry as _quantized  # noqa: E402,F401
