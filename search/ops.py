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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from hwnas.opkey import OpKeyError, OpSpec
from search.blocks import ConvBNReLU, GapFC, InvertedResidual, Pool, Skip

Shape = tuple[int, int, int, int]
Factory = Callable[[OpSpec], nn.Module]
ShapeFn = Callable[[OpSpec], Shape]
CheckFn = Callable[[OpSpec], None]


class OpError(ValueError):
    """An operator that cannot be built: unknown block, missing/unknown parameter, impossible geometry."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")


@dataclass(frozen=True)
class OpDef:
    """One registered operator: its factory, the parameters it takes and how it is shaped."""

    name: str
    factory: Factory
    params: tuple[str, ...] = ()  # letters a candidate must give (after defaults), e.g. ("k", "e")
    defaults: dict[str, int] = field(default_factory=dict)  # letters filled in when a candidate omits them
    geometry: tuple[str, ...] = ("s", "o")  # letters the layer supplies: stride, output channels
    shape_fn: ShapeFn | None = None
    check: CheckFn | None = None
    doc: str = ""

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(self.params) | frozenset(self.defaults) | frozenset(self.geometry)


_REGISTRY: dict[str, OpDef] = {}
_VERSION = [0]  # bumped on every (un)registration, so caches keyed by op key notice a replaced operator


def registry_version() -> int:
    """A number that changes whenever an operator is registered, replaced or removed."""
    return _VERSION[0]


def register_op(
    name: str,
    *,
    params: Iterable[str] = (),
    defaults: dict[str, int] | None = None,
    geometry: Iterable[str] = ("s", "o"),
    shape: ShapeFn | None = None,
    check: CheckFn | None = None,
    doc: str | None = None,
    replace: bool = False,
) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(spec) -> nn.Module`` as the operator ``name`` (the key's block type)."""
    try:
        OpSpec.make(name, (1, 1, 1, 1))
    except OpKeyError as exc:
        raise OpError(f"operator name {name!r}", exc.reason) from None

    def deco(factory: Factory) -> Factory:
        if name in _REGISTRY and not replace:
            raise OpError(f"operator {name!r}", "already registered (pass replace=True to override)")
        _REGISTRY[name] = OpDef(
            name=name,
            factory=factory,
            params=tuple(params),
            defaults=dict(defaults or {}),
            geometry=tuple(geometry),
            shape_fn=shape,
            check=check,
            doc=doc if doc is not None else (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else "",
        )
        _VERSION[0] += 1
        return factory

    return deco


def unregister_op(name: str) -> None:
    """Remove an operator (tests, or replacing a built-in on purpose); unknown names are ignored."""
    if _REGISTRY.pop(name, None) is not None:
        _VERSION[0] += 1


_EXTENSIONS_LOADED = [False]


def _load_extensions() -> None:
    """Register the operators defined outside this module (the quantized qconv/qlinear of search/quant).

    Imported on first need rather than at the bottom of this module: search.quant.registry imports
    this module, and a module-level import back would make an import cycle.
    """
    if not _EXTENSIONS_LOADED[0]:
        _EXTENSIONS_LOADED[0] = True
        from search.quant import registry  # noqa: F401  (import registers)


def registered_ops() -> dict[str, OpDef]:
    """All registered operators by name (a copy)."""
    _load_extensions()
    return dict(_REGISTRY)


def get_op(name: str) -> OpDef:
    """The registration of block type ``name``; ``OpError`` listing the known ones otherwise."""
    if name not in _REGISTRY:
        _load_extensions()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise OpError(f"operator {name!r}", f"not registered; known: {', '.join(sorted(_REGISTRY))}") from None


def _as_spec(spec: OpSpec | str) -> OpSpec:
    if isinstance(spec, OpSpec):
        return spec
    try:
        return OpSpec.parse(spec)
    except OpKeyError as exc:
        raise OpError(f"operator key {spec!r}", f"{exc.part}: {exc.reason}") from None


def _validate(spec: OpSpec) -> OpDef:
    op = get_op(spec.block)
    given = {k for k, _ in spec.params}
    unknown = sorted(given - op.allowed)
    if unknown:
        raise OpError(spec.key, f"unknown parameter(s) {', '.join(unknown)} for {op.name!r}; takes {', '.join(sorted(op.allowed))}")
    missing = [k for k in (*op.params, *op.defaults, *op.geometry) if k not in given]
    if missing:
        raise OpError(spec.key, f"missing parameter(s) {', '.join(missing)} for {op.name!r}")
    for k, v in spec.params:
        if k != "e" and v == 0:
            raise OpError(spec.key, f"parameter {k} must be at least 1")
    if op.check is not None:
        op.check(spec)
    return op


def check_spec(spec: OpSpec | str) -> OpSpec:
    """Validate a spec against its registration without building it; returns the parsed spec."""
    spec = _as_spec(spec)
    _validate(spec)
    return spec


def build_op(spec: OpSpec | str) -> nn.Module:
    """A standalone module for ``spec`` that takes a tensor of ``spec.shape``; it carries ``op_key``."""
    spec = _as_spec(spec)
    op = _validate(spec)
    module = op.factory(spec)
    # The key travels with the module so a built network can say what it is made of.
    module.op_key = spec.key
    return module


def output_shape(spec: OpSpec | str) -> Shape:
    """The NCHW shape ``build_op(spec)`` produces (a classifier's logits appear as N×classes×1×1)."""
    spec = _as_spec(spec)
    op = _validate(spec)
    if op.shape_fn is not None:
        return op.shape_fn(spec)
    with torch.device("meta"):
        out = op.factory(spec).eval()(torch.empty(spec.shape))
    shape = tuple(out.shape) + (1,) * (4 - out.dim())
    return (shape[0], shape[1], shape[2], shape[3])


def candidate_spec(
    candidate: str, in_shape: tuple[int, int, int, int], out_channels: int, stride: int, dtype: str | None = None
) -> OpSpec:
    """Place a candidate (``ir_k3_e6``, ``skip``, ``maxpool_k3`` …) in a layer: add defaults, stride, channels, shape."""
    try:
        parsed = OpSpec.parse(f"{candidate}@1x1x1x1")
    except OpKeyError as exc:
        raise OpError(f"candidate {candidate!r}", f"{exc.part}: {exc.reason}") from None
    op = get_op(parsed.block)
    params = dict(parsed.params)
    fixed = sorted(set(params) & set(op.geometry))
    if fixed:
        raise OpError(f"candidate {candidate!r}", f"must not set {', '.join(fixed)}: the layer gives stride and channels")
    for k, v in op.defaults.items():
        params.setdefault(k, v)
    geometry = {"s": stride, "o": out_channels}
    for letter in op.geometry:
        params[letter] = geometry[letter]
    spec = OpSpec(block=parsed.block, params=tuple(params.items()), shape=tuple(in_shape), dtype=dtype)  # type: ignore[arg-type]
    try:
        _validate(spec)
    except OpError as exc:
        raise OpError(f"candidate {candidate!r} at input {'x'.join(map(str, in_shape))}", exc.reason) from None
    return spec


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

