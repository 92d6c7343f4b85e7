"""Bit-width search spaces: every conv / linear layer of a float network picks (w, a) bits.

Two sources of the float network:

* ``resnet20`` (also ``resnet8``, ``resnet14``, ``resnet32`` …, and ``-w8`` for a narrower first
  stage): the small-image ResNet of ``search.quant.resnet``;
* an architecture document (a path to its JSON, e.g. one found by ``hwnas search``), built with
  ``search.arch.build``: "quantize a given architecture".

The layers are found by running the float network once on a dummy input with forward hooks:
that gives each layer's input shape (hence its operator key and MACs) and whether its input can
be negative (signed activation quantizer) — a ReLU output is never negative, whatever the
weights, while anything else on a random normal input is, with overwhelming probability.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.opkey import OpSpec
from search.quant.bits import DEFAULT_ACT_BITS, DEFAULT_WEIGHT_BITS, Bits, bits_grid
from search.quant.registry import CONV_BLOCK, LINEAR_BLOCK
from search.quant.resnet import SmallResNet
from search.space import SpaceError  # one error for every space (unknown name, unreadable architecture, bad pin)

# Block names of the quantized operators in the operator registry (see search.quant.registry).

_RESNET = re.compile(r"resnet(\d+)(?:-w(\d+))?")


@dataclass(frozen=True)
class QuantLayerInfo:
    """One searchable layer: where it sits, its geometry, and its bit-width candidates."""

    index: int
    name: str  # dotted module path in the float network
    kind: str  # "conv" | "linear"
    in_shape: tuple[int, int, int, int]  # 1×C×H×W (linear: 1×C×1×1)
    out_shape: tuple[int, int, int, int]
    out_channels: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    padding: int = 0
    signed: bool = False
    weight_params: int = 0
    macs: int = 0
    candidates: tuple[str, ...] = ()

    @property
    def bias_params(self) -> int:
        # After folding batch norm every layer has one 32-bit bias per output channel.
        return self.out_channels

    def bits(self) -> list[Bits]:
        return [Bits.parse(c) for c in self.candidates]

    def specs(self) -> list[OpSpec]:
        """One operator spec per candidate, in candidate order."""
        return [self.spec(c) for c in self.candidates]

    def spec(self, candidate: str | Bits) -> OpSpec:
        """The operator key of this layer at ``candidate`` bits, e.g. ``qconv_k3_g1_s1_o16@1x16x28x28#w4a8``."""
        bits = candidate if isinstance(candidate, Bits) else Bits.parse(candidate)
        if self.kind == "linear":
            return OpSpec.make(LINEAR_BLOCK, self.in_shape, dtype=bits.dtype, o=self.out_channels)
        params: dict[str, int] = {"k": self.kernel, "g": self.groups, "s": self.stride, "o": self.out_channels}
        return OpSpec.make(CONV_BLOCK, self.in_shape, dtype=bits.dtype, **params)


@dataclass
class BitsSpace:
    """A float network plus, for each of its conv/linear layers, the bit widths to choose from."""

    name: str
    source: dict[str, Any]  # how to rebuild the float network (see build_float_model)
    input_shape: tuple[int, int, int]
    classes: int
    weight_bits: tuple[int, ...]
    act_bits: tuple[int, ...]
    pins: dict[str, str] = field(default_factory=dict)  # layer name -> fixed bits tag
    _layers: list[QuantLayerInfo] = field(default_factory=list, repr=False)

    def layers(self) -> list[QuantLayerInfo]:
        return list(self._layers)

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def fixed_specs(self) -> list[OpSpec]:
        """Operators outside the searched layers that a cost table would hold (none here)."""
        return []

    def layer(self, name: str) -> QuantLayerInfo:
        for lay in self._layers:
            if lay.name == name:
                return lay
        raise SpaceError(f"no layer {name!r} in space {self.name}; layers: {', '.join(l.name for l in self._layers)}")

    def build_float(self) -> nn.Module:
        return build_float_model(self.source, self.input_shape, self.classes)

    def uniform(self, bits: Bits | str) -> dict[str, str]:
        """Every layer at ``bits`` (pins win)."""
        tag = bits.tag if isinstance(bits, Bits) else Bits.parse(bits).tag
        return {lay.name: self.pins.get(lay.name, tag) for lay in self._layers}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "weight_bits": list(self.weight_bits),
            "act_bits": list(self.act_bits),
            "pins": dict(self.pins),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "BitsSpace":
        try:
            return make_space(
                doc["name"],
                doc["source"],
                tuple(doc["input_shape"]),
                int(doc["classes"]),
                tuple(doc["weight_bits"]),
                tuple(doc["act_bits"]),
                dict(doc.get("pins", {})),
            )
        except KeyError as e:
            raise SpaceError(f"bits-space document lacks field {e.args[0]!r}") from None


def build_float_model(source: dict[str, Any], input_shape: tuple[int, int, int], classes: int) -> nn.Module:
    """Build the float network a bits space quantizes."""
    kind = source.get("kind")
    if kind == "resnet":
        return SmallResNet(int(source["depth"]), int(source.get("width", 16)), input_shape[0], classes)
    if kind == "arch":
        from search.arch import Architecture, ArchError, build  # the search-space helper's builder

        try:
            return build(Architecture.from_dict(source["arch"]))
        except ArchError as e:
            raise SpaceError(str(e)) from None
    raise SpaceError(f"unknown float-network source {source!r}")


def _trace_layers(model: nn.Module, input_shape: tuple[int, int, int]) -> list[dict[str, Any]]:
    """Run ``model`` once with hooks; return each conv/linear call in execution order."""
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    hooks = []

    def hook_for(name: str):
        def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if name in seen:
                raise SpaceError(f"layer {name!r} runs twice in one forward pass; shared layers cannot get one bit width each")
            seen.add(name)
            x = inputs[0]
            found.append(
                {"name": name, "module": mod, "in": tuple(x.shape), "out": tuple(output.shape), "signed": bool((x < 0).any())}
            )

        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(hook_for(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            model(torch.randn((2, *input_shape), generator=gen))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return found


def make_space(
    name: str,
    source: dict[str, Any],
    input_shape: tuple[int, int, int],
    classes: int,
    weight_bits: tuple[int, ...] = DEFAULT_WEIGHT_BITS,
    act_bits: tuple[int, ...] = DEFAULT_ACT_BITS,
    pins: dict[str, str] | None = None,
) -> BitsSpace:
    """Trace the float network of ``source`` and make its bits space."""
    pins = {k: Bits.parse(v).tag for k, v in (pins or {}).items()}
    grid = [b.tag for b in bits_grid(weight_bits, act_bits)]
    model = build_float_model(source, input_shape, classes)
    layers: list[QuantLayerInfo] = []
    traced = _trace_layers(model, input_shape)
    names = {t["name"] for t in traced}
    for pin in pins:
        if pin not in names:
            raise SpaceError(f"pinned layer {pin!r} is not a conv/linear layer of {name}")
    for i, t in enumerate(traced):
        mod = t["module"]
        cands = (pins[t["name"]],) if t["name"] in pins else tuple(grid)
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            sh, sw = mod.stride
            ph, pw = mod.padding if isinstance(mod.padding, tuple) else (0, 0)
            if kh != kw or sh != sw or ph != pw or mod.dilation != (1, 1) or ph != kh // 2:
                # The operator key has no padding or dilation: it describes 'same'-padded square convs.
                raise SpaceError(f"layer {t['name']}: only square, undilated convolutions with padding k//2 are supported")
            _, cin, h, w = t["in"]
            _, cout, oh, ow = t["out"]
            wp = mod.weight.numel()
            layers.append(
                QuantLayerInfo(
                    index=i, name=t["name"], kind="conv", in_shape=(1, cin, h, w), out_shape=(1, cout, oh, ow),
                    out_channels=cout, kernel=kh, stride=sh, groups=mod.groups, padding=ph, signed=t["signed"],
                    weight_params=wp, macs=oh * ow * wp, candidates=cands,
                )
            )  # fmt: skip
        else:
            cin, cout = mod.in_features, mod.out_features
            layers.append(
                QuantLayerInfo(
                    index=i, name=t["name"], kind="linear", in_shape=(1, cin, 1, 1), out_shape=(1, cout, 1, 1),
                    out_channels=cout, signed=t["signed"], weight_params=mod.weight.numel(),
                    macs=mod.weight.numel(), candidates=cands,
                )
            )  # fmt: skip
    if not layers:
        raise SpaceError(f"{name}: the network has no conv or linear layer to quantize")
    return BitsSpace(name, source, tuple(input_shape), classes, tuple(weight_bits), tuple(act_bits), pins, layers)  # type: ignore[arg-type]


def get_bits_space(
    name_or_path: str,
    input_shape: tuple[int, int, int] | None = None,
    classes: int | None = None,
    weight_bits: tuple[int, ...] | list[int] = DEFAULT_WEIGHT_BITS,
    act_bits: tuple[int, ...] | list[int] = DEFAULT_ACT_BITS,
    pins: dict[str, str] | None = None,
) -> BitsSpace:
    """``resnet20`` / ``resnet<6n+2>[-w<width>]`` or the path of an architecture document."""
    m = _RESNET.fullmatch(name_or_path.strip().lower())
    if m:
        shape, ncls = input_shape or (1, 28, 28), classes or 10
        source = {"kind": "resnet", "depth": int(m.group(1)), "width": int(m.group(2) or 16)}
        try:
            return make_space(name_or_path, source, shape, ncls, tuple(weight_bits), tuple(act_bits), pins)
        except ValueError as e:
            if isinstance(e, SpaceError):
                raise
            raise SpaceError(str(e)) from None
    return arch_bits_space(name_or_path, input_shape, classes, weight_bits, act_bits, pins)


def arch_bits_space(
    name_or_path: str,
    input_shape: tuple[int, int, int] | None = None,
    classes: int | None = None,
    weight_bits: tuple[int, ...] | list[int] = DEFAULT_WEIGHT_BITS,
    act_bits: tuple[int, ...] | list[int] = DEFAULT_ACT_BITS,
    pins: dict[str, str] | None = None,
) -> BitsSpace:
    """ "Quantize a given architecture": an architecture document (path or shipped name) as a bits space.

    ``input_shape``/``classes`` re-target the architecture (e.g. FBNet-A at 28×28, 10 classes).
    """
    from search.arch import ArchError, get_arch

    try:
        arch = get_arch(name_or_path)
        doc = arch.to_dict()
        space = arch.resolve_space()
        if not isinstance(arch.space, dict) and str(arch.space) not in _builtin_spaces():
            # A space given by a relative path travels inline, so the bits document stands alone.
            doc["space"] = space.to_dict()
        if input_shape is not None or classes is not None:
            if input_shape is not None and tuple(input_shape[:1]) != tuple(space.input_shape[:1]):
                raise SpaceError(f"{name_or_path}: takes {space.input_shape[0]}-channel input, not {input_shape[0]}")
            if input_shape is not None:
                doc["input_size"] = int(input_shape[1]) if input_shape[1] == input_shape[2] else None
                if doc["input_size"] is None:
                    raise SpaceError(f"{name_or_path}: architecture documents take square inputs")
            if classes is not None:
                doc["classes"] = int(classes)
            space = get_arch_from_doc(doc).resolve_space()
    except (ArchError, SpaceError, OSError) as e:
        if isinstance(e, SpaceError) and e.field is None:  # raised just above: already says what is wrong
            raise
        raise SpaceError(
            f"{name_or_path!r} is neither a bits space (resnet20, resnet8, resnet20-w8, …) nor a usable architecture document: {e}"
        ) from None
    source = {"kind": "arch", "arch": doc}
    name = arch.name or Path(str(name_or_path)).stem
    return make_space(name, source, space.input_shape, int(space.classes), tuple(weight_bits), tuple(act_bits), pins)


def get_arch_from_doc(doc: dict[str, Any]):
    from search.arch import Architecture

    return Architecture.from_dict(doc)


def _builtin_spaces() -> set[str]:
    from search.space import list_spaces

    return set(list_spaces())
