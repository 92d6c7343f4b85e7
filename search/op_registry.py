"""The operator registry: block name → module factory, with validation and shapes (the one registry).

It holds no operators. They are registered by the modules that define them — the FBNet blocks in
``search.ops``, the quantized ``qconv``/``qlinear`` in ``search.quant.registry`` — and ``search.ops``
imports both, so importing it gives the whole registry filled. This module imports neither: each
depends on it, never the other way round. See ``search.ops`` for the grammar of keys and candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.opkey import OpKeyError, OpSpec

Shape = tuple[int, int, int, int]
Factory = Callable[[OpSpec], nn.Module]
ShapeFn = Callable[[OpSpec], Shape]
CheckFn = Callable[[OpSpec], None]
# Candidate parameters + layer input shape -> key parameters (e.g. an expansion ratio turned into a mid width).
DeriveFn = Callable[[dict[str, int], Shape], dict[str, int]]


class OpError(HwnasError, ValueError):
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
    derive: DeriveFn | None = None  # applied by candidate_spec after defaults and geometry
    free: bool = False  # runs no computation (a dropped layer): costs nothing, needs no latency-table entry

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
    derive: DeriveFn | None = None,
    free: bool = False,
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
            derive=derive,
            free=free,
        )
        _VERSION[0] += 1
        return factory

    return deco


def unregister_op(name: str) -> None:
    """Remove an operator (tests, or replacing a built-in on purpose); unknown names are ignored."""
    if _REGISTRY.pop(name, None) is not None:
        _VERSION[0] += 1


def registered_ops() -> dict[str, OpDef]:
    """All registered operators by name (a copy)."""
    return dict(_REGISTRY)


def get_op(name: str) -> OpDef:
    """The registration of block type ``name``; ``OpError`` listing the known ones otherwise."""
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
        raise OpError(
            spec.key, f"unknown parameter(s) {', '.join(unknown)} for {op.name!r}; takes {', '.join(sorted(op.allowed))}"
        )
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
    module.op_key = spec.key  # type: ignore[assignment]  # nn.Module's stub types every attribute as Tensor | Module
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
    if op.derive is not None:
        try:
            params = op.derive(params, tuple(in_shape))  # type: ignore[arg-type]
        except OpError as exc:
            raise OpError(f"candidate {candidate!r} at input {'x'.join(map(str, in_shape))}", exc.reason) from None
    spec = OpSpec(block=parsed.block, params=tuple(params.items()), shape=tuple(in_shape), dtype=dtype)  # type: ignore[arg-type]
    try:
        _validate(spec)
    except OpError as exc:
        raise OpError(f"candidate {candidate!r} at input {'x'.join(map(str, in_shape))}", exc.reason) from None
    return spec
