"""Quantized networks: a bit configuration document, the fixed-bits network, the bits super net."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from hwnas.errors import HwnasError
from search.mixed import MixedNet
from search.quant.bits import Bits
from search.quant.modules import MixedQuantLayer, QuantLayer, replace_module
from search.quant.space import BitsSpace, SpaceError

CONFIG_KIND = "hwnas.bits-config"


class ConfigError(HwnasError, ValueError):
    """A bit configuration that does not fit its space (unknown layer, bits not offered)."""


@dataclass
class BitsConfig:
    """One bit width per layer of a bits space: the result of a search, as a JSON document."""

    space: BitsSpace
    bits: dict[str, str]  # layer name -> "w4a8"

    def __post_init__(self) -> None:
        names = [lay.name for lay in self.space.layers()]
        unknown = sorted(set(self.bits) - set(names))
        if unknown:
            raise ConfigError(f"bits for unknown layers: {', '.join(unknown)}")
        missing = [n for n in names if n not in self.bits]
        if missing:
            raise ConfigError(f"no bits for layers: {', '.join(missing)}")
        self.bits = {n: Bits.parse(self.bits[n]).tag for n in names}

    @property
    def id(self) -> str:
        """Short content hash: equal configurations of equal spaces have equal ids."""
        blob = json.dumps({"space": self.space.to_json(), "bits": self.bits}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def op_keys(self) -> list[str]:
        return [lay.spec(self.bits[lay.name]).key for lay in self.space.layers()]

    def build(self) -> nn.Module:
        """A fresh float network of the space with this configuration's quantized layers."""
        return quantize_model(self.space.build_float(), self.space, self.bits)

    def to_json(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": CONFIG_KIND, "id": self.id, "space": self.space.to_json(), "bits": dict(self.bits)}
        if extra:
            doc.update(extra)
        return doc

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_json(extra), indent=2) + "\n")
        return p

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "BitsConfig":
        if not isinstance(doc, dict) or doc.get("kind") != CONFIG_KIND:
            raise ConfigError(f"not a bit configuration document (kind must be {CONFIG_KIND!r})")
        try:
            return cls(BitsSpace.from_json(doc["space"]), dict(doc["bits"]))
        except KeyError as e:
            raise ConfigError(f"bit configuration lacks field {e.args[0]!r}") from None

    @classmethod
    def load(cls, path: str | Path) -> "BitsConfig":
        p = Path(path)
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{p}: cannot read bit configuration ({e})") from None
        return cls.from_json(doc)


def quantize_model(model: nn.Module, space: BitsSpace, bits: dict[str, str]) -> nn.Module:
    """Swap each searchable layer of ``model`` for a ``QuantLayer`` at its bits (in place)."""
    for lay in space.layers():
        op = model.get_submodule(lay.name)
        if not isinstance(op, (nn.Conv2d, nn.Linear)):
            raise SpaceError(f"{lay.name} is not a conv/linear layer in this network")
        b = Bits.parse(bits[lay.name])
        replace_module(model, lay.name, QuantLayer(op, b, signed=lay.signed))
    return model


def quant_layers(model: nn.Module) -> list[tuple[str, QuantLayer]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantLayer)]


class QuantSuperNet(MixedNet, nn.Module):
    """The bits super net: the float network with every searchable layer a ``MixedQuantLayer``.

    Same interface as the architecture super net (``arch_parameters``, ``weight_parameters``,
    ``temperature``, ``expected_cost``), so the same losses and training loop drive it.
    """

    def __init__(self, space: BitsSpace, mode: str = "soft", model: nn.Module | None = None) -> None:
        super().__init__()
        if mode not in ("soft", "hard"):
            raise ValueError(f"mode must be 'soft' or 'hard', not {mode!r}")
        self.space = space
        self.net = model if model is not None else space.build_float()
        self._mixed: list[MixedQuantLayer] = []
        for lay in space.layers():
            op = self.net.get_submodule(lay.name)
            if not isinstance(op, (nn.Conv2d, nn.Linear)):
                raise SpaceError(f"{lay.name} is not a conv/linear layer in this network")
            mixed = MixedQuantLayer(op, lay.bits(), signed=lay.signed)
            replace_module(self.net, lay.name, mixed)
            self._mixed.append(mixed)
        self._temperature = 5.0
        self.mode = mode

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = value
        for m in self._mixed:
            m.mode = value

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, tau: float) -> None:
        self._temperature = float(tau)
        for m in self._mixed:
            m.temperature = float(tau)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [m.theta for m in self._mixed]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @property
    def num_layers(self) -> int:
        return len(self._mixed)

    def candidates(self, layer: int) -> list[str]:
        return [c.tag for c in self._mixed[layer].candidates]

    @property
    def last_masks(self) -> list[Tensor] | None:
        masks = [m.last_mask for m in self._mixed]
        return None if any(m is None for m in masks) else masks  # type: ignore[return-value]

    def probabilities(self) -> list[Tensor]:
        """``softmax(θ_l)`` per layer, detached."""
        return [m.probabilities().detach() for m in self._mixed]

    def argmax_choices(self) -> list[str]:
        """The most likely bits tag of every layer."""
        return [m.argmax_bits().tag for m in self._mixed]

    @contextmanager
    def fixed_choices(self, choices: list[str]) -> Iterator[None]:
        """Run one configuration (a bits tag per layer) inside the super net."""
        if len(choices) != self.num_layers:
            raise ValueError(f"{len(choices)} choices for {self.num_layers} searchable layers")
        tags = [self.candidates(i) for i in range(self.num_layers)]
        for i, (c, t) in enumerate(zip(choices, tags)):
            if c not in t:
                raise ValueError(f"layer {i}: {c!r} is not a candidate ({', '.join(t)})")
        try:
            for m, c, t in zip(self._mixed, choices, tags):
                m.fixed_index = t.index(c)
            yield
        finally:
            for m in self._mixed:
                m.fixed_index = None

    def argmax_config(self) -> BitsConfig:
        return BitsConfig(self.space, {lay.name: m.argmax_bits().tag for lay, m in zip(self.space.layers(), self._mixed)})

    def float_state_dict(self) -> dict[str, Tensor]:
        """The shared float weights under the float network's own names (loads into ``build_float``)."""
        prefixes = {f"{lay.name}.op.": f"{lay.name}." for lay in self.space.layers()}
        out = {}
        for k, v in self.net.state_dict().items():
            mod = k.rpartition(".")[0]
            if k.endswith(".theta") and mod in {lay.name for lay in self.space.layers()}:
                continue
            if ".acts." in k:
                continue
            for old, new in prefixes.items():
                if k.startswith(old):
                    k = new + k[len(old) :]
                    break
            out[k] = v
        return out

    def load_float_state_dict(self, state: dict[str, Tensor]) -> None:
        """Start from a trained float network (the usual way: fine-tune, then search)."""
        state = float_state(state, self.space)
        mapped = {}
        names = {lay.name for lay in self.space.layers()}
        for k, v in state.items():
            mod, _, leaf = k.rpartition(".")
            mapped[f"{mod}.op.{leaf}" if mod in names else k] = v
        missing, unexpected = self.net.load_state_dict(mapped, strict=False)
        bad = [k for k in missing if ".theta" not in k and ".acts." not in k]
        if bad or unexpected:
            raise ValueError(f"float state does not fit the super net: missing {bad[:5]}, unexpected {list(unexpected)[:5]}")


def load_float_into_quant(model: nn.Module, state: dict[str, Tensor], space: BitsSpace) -> None:
    """Load a float network's weights into its fixed-bits version (QuantLayer wraps as ``.op``)."""
    state = float_state(state, space)
    names = {lay.name for lay in space.layers()}
    mapped = {}
    for k, v in state.items():
        mod, _, leaf = k.rpartition(".")
        mapped[f"{mod}.op.{leaf}" if mod in names else k] = v
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    bad = [k for k in missing if ".act." not in k]
    if bad or unexpected:
        raise ValueError(f"float state does not fit the quantized network: missing {bad[:5]}, unexpected {list(unexpected)[:5]}")


def float_state(state: dict[str, Tensor], space: BitsSpace) -> dict[str, Tensor]:
    """A float network's state dict from a float, quantized or super-net one (drops clips and θ)."""
    out: dict[str, Tensor] = {}
    names = [lay.name for lay in space.layers()]
    for k, v in state.items():
        for name in names:
            prefix = f"{name}."
            if not k.startswith(prefix):
                continue
            rest = k[len(prefix) :]
            if rest == "theta" or rest.startswith(("act.", "acts.")):
                k = ""
            elif rest.startswith("op."):
                k = prefix + rest[3:]
            break
        if k:
            out[k] = v
    return out
