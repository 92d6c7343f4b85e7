"""Published latency-table key grammars ↔ our operator keys (torch-free, used by server and search).

Three projects published per-block latency tables measured on phones, each in its own key
grammar (see docs/operator-keys.md, "Published key grammars"):

* ``proxyless`` — ProxylessNAS (Pixel 1): ``expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0``,
  ``expand`` is the expansion **ratio**;
* ``ofa`` — Once-for-All (Note10): the same plus ``-se:X-hs:Y``, ``expand`` is the **mid channel count**;
* ``hwnasbench`` — HW-NAS-Bench's FBNet table: ``ConvBlock_H32_W32_Cin16_Cout24_exp6_kernel3_stride1_group1``,
  ``Skip_…``, ``ConvNorm_…``, ``AvgP_…``, ``FC_…``.

``from_published`` maps a published key to the one ``OpSpec`` that runs the same network piece,
or raises ``UnmappableKey`` with the reason (never a guess); ``to_published`` is the inverse for
export and returns None when the grammar cannot express the spec. For every key ``k`` that maps,
``to_published(g, from_published(g, k)) == k``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from hwnas.errors import HwnasError
from hwnas.opkey import OpKeyError, OpSpec

Grammar = Literal["proxyless", "ofa", "hwnasbench"]
GRAMMARS: tuple[Grammar, ...] = ("proxyless", "ofa", "hwnasbench")

# The stems of both ImageNet networks are 3x3 convolutions; the published key does not say so.
_STEM_KERNEL = 3


class UnmappableKey(HwnasError, ValueError):
    """A published key that has no exact operator key (or is malformed); ``reason`` says why."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


@dataclass(frozen=True)
class _Dims:
    h: int
    w: int
    c: int


# ---------------------------------------------------------------------------------------------
# ProxylessNAS / OFA: "Name-field:value-field:value…"
# ---------------------------------------------------------------------------------------------

_DIMS = re.compile(r"([1-9][0-9]*)x([1-9][0-9]*)x([1-9][0-9]*)")
_INT = re.compile(r"0|[1-9][0-9]*")
_MB_FIELDS = {
    "proxyless": ("input", "output", "expand", "kernel", "stride", "idskip"),
    "ofa": ("input", "output", "expand", "kernel", "stride", "idskip", "se", "hs"),
}


def _split_dash(key: str) -> tuple[str, dict[str, str], list[str]]:
    """``Name-a:1-b:2`` → ("Name", {"a": "1", "b": "2"}, ["a", "b"]) (field order kept)."""
    name, *rest = key.split("-")
    fields: dict[str, str] = {}
    order: list[str] = []
    for part in rest:
        if ":" not in part:
            raise UnmappableKey(key, f"field {part!r} is not name:value")
        k, v = part.split(":", 1)
        if k in fields:
            raise UnmappableKey(key, f"field {k!r} repeated")
        fields[k] = v
        order.append(k)
    return name, fields, order


def _dims(key: str, fields: dict[str, str], name: str) -> _Dims:
    m = _DIMS.fullmatch(fields.get(name, ""))
    if not m:
        raise UnmappableKey(key, f"{name} {fields.get(name)!r} is not HxWxC")
    return _Dims(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def _int(key: str, fields: dict[str, str], name: str) -> int:
    v = fields.get(name, "")
    if not _INT.fullmatch(v):
        raise UnmappableKey(key, f"{name} {v!r} is not a non-negative integer")
    return int(v)


def _stride(key: str, a: _Dims, b: _Dims) -> int:
    """The stride that takes ``a``'s spatial size to ``b``'s (same-padding), or UnmappableKey."""
    if a.h != a.w or b.h != b.w:
        raise UnmappableKey(key, "only square inputs are in our grammar's published layouts")
    for s in (1, 2):
        if math.ceil(a.h / s) == b.h:
            return s
    raise UnmappableKey(key, f"{a.h}x{a.w} -> {b.h}x{b.w} is not stride 1 or 2")


def _shape(d: _Dims) -> tuple[int, int, int, int]:
    return (1, d.c, d.h, d.w)


def _expanded_conv(grammar: Grammar, key: str, f: dict[str, str], order: list[str]) -> OpSpec:
    want = _MB_FIELDS[grammar]
    if tuple(order) != want:
        raise UnmappableKey(key, f"{grammar} expanded_conv fields must be {'-'.join(want)}, got {'-'.join(order)}")
    i, o = _dims(key, f, "input"), _dims(key, f, "output")
    expand, k, s, idskip = (_int(key, f, n) for n in ("expand", "kernel", "stride", "idskip"))
    if _stride(key, i, o) != s:
        raise UnmappableKey(key, f"stride {s} does not take {i.h}x{i.w} to {o.h}x{o.w}")
    residual = int(s == 1 and i.c == o.c)
    # Our blocks add the residual exactly when stride 1 and channels unchanged; a table that says
    # otherwise measured a different block.
    if idskip != residual:
        raise UnmappableKey(
            key, f"idskip:{idskip} but our block has {'a' if residual else 'no'} residual (stride {s}, {i.c}->{o.c} channels)"
        )
    if k % 2 == 0 or k == 0:
        raise UnmappableKey(key, f"kernel {k} is not odd")
    if grammar == "proxyless":
        if expand == 1:
            # ProxylessNAS's expand-1 block has no 1x1 expansion conv; our ``ir`` keeps it (FBNet),
            # OFA's ``mb`` with mid == input channels is exactly this block.
            return OpSpec.make("mb", _shape(i), k=k, s=s, o=o.c, m=i.c)
        if expand == 0:
            raise UnmappableKey(key, "expand ratio 0")
        return OpSpec.make("ir", _shape(i), k=k, e=expand, g=1, s=s, o=o.c)
    se, hs = _int(key, f, "se"), _int(key, f, "hs")
    if se > 1 or hs > 1:
        raise UnmappableKey(key, f"se:{se} hs:{hs} must be 0 or 1")
    if expand == 0:
        raise UnmappableKey(key, "mid channel count 0")
    block = "_".join(["mb"] + (["se"] if se else []) + (["hs"] if hs else []))
    return OpSpec.make(block, _shape(i), k=k, s=s, o=o.c, m=expand)


def _from_dash(grammar: Grammar, key: str) -> OpSpec:
    name, f, order = _split_dash(key)
    if name == "expanded_conv":
        return _expanded_conv(grammar, key, f, order)
    if name == "Conv" and order == ["input", "output"]:
        i, o = _dims(key, f, "input"), _dims(key, f, "output")
        block = "conv_hs" if grammar == "ofa" else "conv"  # OFA's stem uses h-swish, ProxylessNAS's ReLU6
        return OpSpec.make(block, _shape(i), k=_STEM_KERNEL, s=_stride(key, i, o), o=o.c)
    if name == "Conv_1" and order == ["input", "output"]:
        i, o = _dims(key, f, "input"), _dims(key, f, "output")
        block = "conv_hs" if grammar == "ofa" else "conv"
        return OpSpec.make(block, _shape(i), k=1, s=_stride(key, i, o), o=o.c)
    if grammar == "ofa" and name == "AvgPool2D" and order == ["input", "output"]:
        i, o = _dims(key, f, "input"), _dims(key, f, "output")
        if (o.h, o.w, o.c) != (1, 1, i.c):
            raise UnmappableKey(key, "only a global average pool (output 1x1, same channels) is expressible")
        return OpSpec.make("gap", _shape(i))
    if grammar == "ofa" and name == "Conv_2" and order == ["input", "output"]:
        i, o = _dims(key, f, "input"), _dims(key, f, "output")
        if (i.h, i.w, o.h, o.w) != (1, 1, 1, 1):
            raise UnmappableKey(key, "OFA's Conv_2 (feature mix) runs on a 1x1 input")
        # 1x1 conv, no BatchNorm, h-swish: OFA's feature_mix_layer (use_bn=False).
        return OpSpec.make("conv_hs_nobn", _shape(i), k=1, s=1, o=o.c)
    if name == "Logits" and order == ["input", "output"]:
        i = _dims(key, f, "input")
        classes = f.get("output", "")
        if not _INT.fullmatch(classes) or classes == "0":
            raise UnmappableKey(key, f"output {classes!r} is not a class count")
        if grammar == "ofa":
            if (i.h, i.w) != (1, 1):
                raise UnmappableKey(key, "OFA's Logits runs on the pooled 1x1 features")
            return OpSpec.make("fc", _shape(i), o=int(classes))
        return OpSpec.make("gap_fc", _shape(i), o=int(classes))  # ProxylessNAS's Logits pools first
    raise UnmappableKey(key, f"{name!r} with fields {'-'.join(order)} is not a block the {grammar} grammar defines")


def _dash(name: str, **fields: object) -> str:
    return "-".join([name] + [f"{k}:{v}" for k, v in fields.items()])


def _hwc(spec: OpSpec) -> str:
    _, c, h, w = spec.shape
    return f"{h}x{w}x{c}"


def _out_hwc(spec: OpSpec, s: int) -> str:
    _, _, h, w = spec.shape
    return f"{math.ceil(h / s)}x{math.ceil(w / s)}x{spec.get('o')}"


def _params(spec: OpSpec) -> dict[str, int]:
    return dict(spec.params)


def _to_dash(grammar: Grammar, spec: OpSpec) -> str | None:
    n, c, h, w = spec.shape
    p = _params(spec)
    if n != 1 or spec.dtype is not None or h != w:
        return None  # both tables are batch 1, fp32, square
    words = spec.block.split("_")
    if (
        words[0] == "mb"
        and set(p) == {"k", "s", "o", "m"}
        and set(words[1:]) <= {"se", "hs"}
        and words[1:] in ([], ["se"], ["hs"], ["se", "hs"])
    ):
        k, s, o, m = p["k"], p["s"], p["o"], p["m"]
        idskip = int(s == 1 and c == o)
        if grammar == "ofa":
            return _dash(
                "expanded_conv",
                input=_hwc(spec),
                output=_out_hwc(spec, s),
                expand=m,
                kernel=k,
                stride=s,
                idskip=idskip,
                se=int("se" in words),
                hs=int("hs" in words),
            )
        if words == ["mb"] and m == c:
            return _dash("expanded_conv", input=_hwc(spec), output=_out_hwc(spec, s), expand=1, kernel=k, stride=s, idskip=idskip)
        return None
    if grammar == "proxyless" and spec.block == "ir" and set(p) == {"k", "e", "g", "s", "o"} and p["g"] == 1 and p["e"] > 1:
        s = p["s"]
        return _dash(
            "expanded_conv",
            input=_hwc(spec),
            output=_out_hwc(spec, s),
            expand=p["e"],
            kernel=p["k"],
            stride=s,
            idskip=int(s == 1 and c == p["o"]),
        )
    conv = "conv_hs" if grammar == "ofa" else "conv"
    if spec.block == conv and set(p) == {"k", "s", "o"}:
        if p["k"] == _STEM_KERNEL and c == 3:
            return _dash("Conv", input=_hwc(spec), output=_out_hwc(spec, p["s"]))
        if p["k"] == 1 and p["s"] == 1:
            return _dash("Conv_1", input=_hwc(spec), output=_out_hwc(spec, 1))
        return None
    if grammar == "ofa":
        if spec.block == "gap" and not p:
            return _dash("AvgPool2D", input=_hwc(spec), output=f"1x1x{c}")
        if spec.block == "conv_hs_nobn" and p == {"k": 1, "s": 1, "o": p.get("o")} and h == 1:
            return _dash("Conv_2", input=_hwc(spec), output=f"1x1x{p['o']}")
        if spec.block == "fc" and set(p) == {"o"} and h == 1:
            return _dash("Logits", input=_hwc(spec), output=p["o"])
        return None
    if spec.block == "gap_fc" and set(p) == {"o"}:
        return _dash("Logits", input=_hwc(spec), output=p["o"])
    return None


# ---------------------------------------------------------------------------------------------
# HW-NAS-Bench: "Kind_H32_W32_Cin16_Cout24_…" (H, W = the block's input size)
# ---------------------------------------------------------------------------------------------

_HWNB_FIELDS = {
    "ConvBlock": ("H", "W", "Cin", "Cout", "exp", "kernel", "stride", "group"),
    "Skip": ("H", "W", "Cin", "Cout", "stride"),
    "ConvNorm": ("H", "W", "Cin", "Cout", "kernel", "stride", "group"),
    "AvgP": ("H", "W", "Cin", "Cout", "kernel", "stride"),
    "FC": ("Cin", "Cout"),
}
_HWNB_PART = re.compile(r"([A-Za-z]+?)(0|[1-9][0-9]*)")


def _from_hwnasbench(key: str) -> OpSpec:
    kind, *parts = key.split("_")
    if kind not in _HWNB_FIELDS:
        raise UnmappableKey(key, f"{kind!r} is not one of {', '.join(_HWNB_FIELDS)}")
    values: dict[str, int] = {}
    names: list[str] = []
    for part in parts:
        m = _HWNB_PART.fullmatch(part)
        if not m:
            raise UnmappableKey(key, f"part {part!r} is not <name><integer>")
        names.append(m.group(1))
        values[m.group(1)] = int(m.group(2))
    if tuple(names) != _HWNB_FIELDS[kind]:
        raise UnmappableKey(key, f"{kind} fields must be {', '.join(_HWNB_FIELDS[kind])}, got {', '.join(names)}")
    if kind == "FC":
        return OpSpec.make("fc", (1, values["Cin"], 1, 1), o=values["Cout"])
    shape = (1, values["Cin"], values["H"], values["W"])
    if kind == "ConvBlock":
        return OpSpec.make(
            "ir", shape, k=values["kernel"], e=values["exp"], g=values["group"], s=values["stride"], o=values["Cout"]
        )
    if kind == "Skip":
        return OpSpec.make("skip", shape, s=values["stride"], o=values["Cout"])
    if kind == "ConvNorm":
        if values["group"] != 1:
            raise UnmappableKey(key, "grouped ConvNorm: our conv has no groups parameter")
        return OpSpec.make("conv", shape, k=values["kernel"], s=values["stride"], o=values["Cout"])
    # AvgP: a pool over the whole map, same channels, is our global average pool.
    if values["Cin"] != values["Cout"] or values["kernel"] != values["H"] or values["H"] != values["W"] or values["stride"] != 1:
        raise UnmappableKey(key, "only a global average pool (kernel = H = W, stride 1, same channels) is expressible")
    return OpSpec.make("gap", shape)


def _to_hwnasbench(spec: OpSpec) -> str | None:
    n, c, h, w = spec.shape
    p = _params(spec)
    if n != 1 or spec.dtype is not None:
        return None
    if spec.block == "ir" and set(p) == {"k", "e", "g", "s", "o"}:
        return f"ConvBlock_H{h}_W{w}_Cin{c}_Cout{p['o']}_exp{p['e']}_kernel{p['k']}_stride{p['s']}_group{p['g']}"
    if spec.block == "skip" and set(p) == {"s", "o"}:
        return f"Skip_H{h}_W{w}_Cin{c}_Cout{p['o']}_stride{p['s']}"
    if spec.block == "conv" and set(p) == {"k", "s", "o"}:
        return f"ConvNorm_H{h}_W{w}_Cin{c}_Cout{p['o']}_kernel{p['k']}_stride{p['s']}_group1"
    if spec.block == "gap" and not p and h == w:
        return f"AvgP_H{h}_W{w}_Cin{c}_Cout{c}_kernel{h}_stride1"
    if spec.block == "fc" and set(p) == {"o"} and (h, w) == (1, 1):
        return f"FC_Cin{c}_Cout{p['o']}"
    return None


def hwnasbench_key(h: int, cin: int, cout: int, stride: int, op: tuple[int, int, int] | None) -> str:
    """HW-NAS-Bench's key of a block on an h×h input: ``op`` = (kernel, expansion, groups), or None for skip."""
    if op is None:
        return f"Skip_H{h}_W{h}_Cin{cin}_Cout{cout}_stride{stride}"
    k, e, g = op
    return f"ConvBlock_H{h}_W{h}_Cin{cin}_Cout{cout}_exp{e}_kernel{k}_stride{stride}_group{g}"


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def from_published(grammar: Grammar, key: str) -> OpSpec:
    """The operator spec of published ``key`` in ``grammar``; raises ``UnmappableKey`` with the reason."""
    if not isinstance(key, str) or not key:
        raise UnmappableKey(str(key), "empty key")
    try:
        if grammar == "hwnasbench":
            return _from_hwnasbench(key)
        if grammar in ("proxyless", "ofa"):
            return _from_dash(grammar, key)
    except OpKeyError as err:  # a value our grammar rejects (e.g. a 0 dimension)
        raise UnmappableKey(key, f"no valid operator key: {err.part}: {err.reason}") from None
    raise ValueError(f"unknown grammar {grammar!r}; one of {', '.join(GRAMMARS)}")


def to_published(grammar: Grammar, spec: OpSpec | str) -> str | None:
    """The published key of ``spec`` in ``grammar``, or None when that grammar cannot express it."""
    if isinstance(spec, str):
        spec = OpSpec.parse(spec)
    if grammar == "hwnasbench":
        return _to_hwnasbench(spec)
    if grammar in ("proxyless", "ofa"):
        return _to_dash(grammar, spec)
    raise ValueError(f"unknown grammar {grammar!r}; one of {', '.join(GRAMMARS)}")


@dataclass(frozen=True)
class KeyMapping:
    """How the keys of one published table map: ``mapped`` published → spec, ``unmappable`` published → reason."""

    mapped: dict[str, OpSpec]
    unmappable: dict[str, str]


def map_keys(grammar: Grammar, keys: list[str]) -> KeyMapping:
    """Map every key of a published table (the grammars are parsed canonically, so no two keys give one spec)."""
    mapped: dict[str, OpSpec] = {}
    unmappable: dict[str, str] = {}
    for key in keys:
        try:
            mapped[key] = from_published(grammar, key)
        except UnmappableKey as err:
            unmappable[key] = err.reason
    return KeyMapping(mapped, unmappable)


# ---------------------------------------------------------------------------------------------
# Published networks (OFA / ProxylessNAS ``net.config``) -> the published keys their estimators sum
# ---------------------------------------------------------------------------------------------


def _hwc_text(h: int, c: int) -> str:
    return f"{h}x{h}x{c}"


def _mb_blocks(config: dict, size: int) -> tuple[list[tuple[dict, int, int, int]], int]:
    """(block conv, input size, output size, idskip) of every non-zero block, and the final size."""
    out = []
    for block in config["blocks"]:
        conv = block["mobile_inverted_conv"]
        if conv is None or conv.get("name") == "ZeroLayer":
            continue  # a zero block costs nothing (ProxylessNAS, OFA latency_table.py)
        out_size = (size - 1) // conv["stride"] + 1
        out.append((conv, size, out_size, 0 if block.get("shortcut") is None else 1))
        size = out_size
    return out, size


def ofa_net_config_keys(config: dict, image_size: int) -> list[str]:
    """The OFA table keys a MobileNetV3 ``net.config`` sums to, in order (once-for-all's latency_table.py)."""
    size = (image_size + 1) // 2
    first = config["first_conv"]
    keys = [_dash("Conv", input=f"{image_size}x{image_size}x3", output=_hwc_text(size, first["out_channels"]))]
    blocks, size = _mb_blocks(config, size)
    for conv, h, h2, idskip in blocks:
        mid = conv.get("mid_channels") or round(conv["in_channels"] * conv["expand_ratio"])
        keys.append(
            _dash(
                "expanded_conv",
                input=_hwc_text(h, conv["in_channels"]),
                output=_hwc_text(h2, conv["out_channels"]),
                expand=mid,
                kernel=conv["kernel_size"],
                stride=conv["stride"],
                idskip=idskip,
                se=int(bool(conv.get("use_se"))),
                hs=int(conv.get("act_func") == "h_swish"),
            )
        )
    expand, mix, classifier = config["final_expand_layer"], config["feature_mix_layer"], config["classifier"]
    keys += [
        _dash("Conv_1", input=_hwc_text(size, expand["in_channels"]), output=_hwc_text(size, expand["out_channels"])),
        _dash("AvgPool2D", input=_hwc_text(size, expand["out_channels"]), output=f"1x1x{expand['out_channels']}"),
        _dash("Conv_2", input=f"1x1x{mix['in_channels']}", output=f"1x1x{mix['out_channels']}"),
        _dash("Logits", input=f"1x1x{classifier['in_features']}", output=classifier["out_features"]),
    ]
    return keys


def proxyless_net_config_keys(config: dict, image_size: int = 224) -> list[str]:
    """The ProxylessNAS table keys a ``net.config`` sums to, in order (proxylessnas' latency_estimator.py)."""
    size = (image_size + 1) // 2
    keys = [_dash("Conv", input=f"{image_size}x{image_size}x3", output=_hwc_text(size, config["first_conv"]["out_channels"]))]
    blocks, size = _mb_blocks(config, size)
    for conv, h, h2, idskip in blocks:
        keys.append(
            _dash(
                "expanded_conv",
                input=_hwc_text(h, conv["in_channels"]),
                output=_hwc_text(h2, conv["out_channels"]),
                expand=conv["expand_ratio"],
                kernel=conv["kernel_size"],
                stride=conv["stride"],
                idskip=idskip,
            )
        )
    mix, classifier = config["feature_mix_layer"], config["classifier"]
    keys += [
        _dash("Conv_1", input=_hwc_text(size, mix["in_channels"]), output=_hwc_text(size, mix["out_channels"])),
        _dash("Logits", input=_hwc_text(size, classifier["in_features"]), output=classifier["out_features"]),
    ]
    return keys
