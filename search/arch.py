"""Architecture documents: a space plus one candidate per searchable layer, as plain JSON.

::

    {"space": "fbnet", "choices": ["ir_k3_e1", "ir_k3_e6", ...], "input_size": 224, "classes": 1000}

Optional fields: ``head_channels`` (overrides the width of the space's head 1×1 conv —
FBNet-A, B1 and C1 were released with 1504 instead of 1984), ``extra_candidates`` (registered
candidates this architecture may use in any layer beyond the space's lists — the released
FBNet-B/C graphs have ``ir_cdw_k3_e6`` layers that the paper's 9 candidates cannot express;
such a document says so openly instead of silently rounding to the nearest candidate),
``name`` and ``meta`` (free-form:
provenance, predicted cost, …). ``space`` is a built-in name, a path to a space file (relative
paths are resolved next to the document), or the space document itself inline. The id is a
hash of the canonical JSON of the fields that decide the network; ``name`` and ``meta`` do not
change it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import yaml
from torch import nn

from hwnas.errors import HwnasError
from search.ops import OpError, build_op, output_shape
from search.space import SearchSpace, SpaceError, get_space, list_spaces, read_document

ARCHS_DIR = Path(__file__).with_name("archs")
_FIELDS = ("space", "choices", "input_size", "classes", "head_channels", "extra_candidates", "name", "meta")


class ArchError(HwnasError, ValueError):
    """A malformed architecture document; ``field`` names the offending entry (``choices[3]``)."""

    def __init__(self, source: str, field: str, reason: str) -> None:
        self.source = source
        self.field = field
        self.reason = reason
        super().__init__(f"architecture {source}: {field}: {reason}")


def _pos_int(source: str, name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ArchError(source, name, f"must be a positive integer, got {value!r}")
    return value


@dataclass
class Architecture:
    """One network of a search space; ``build(arch)`` makes it, ``arch.op_keys()`` lists its operators."""

    space: str | dict[str, Any]
    choices: list[str]
    input_size: int | None = None  # square input side; None: the space's
    classes: int | None = None  # None: the space's
    head_channels: int | None = None  # None: the space's head width
    extra_candidates: list[str] = field(default_factory=list)  # allowed in any layer, beyond the space's
    name: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    base_dir: Path | None = field(default=None, repr=False, compare=False)  # where a relative space path lives
    source: str | None = field(default=None, repr=False, compare=False)  # file it came from, for error messages

    @property
    def _src(self) -> str:
        return self.source or self.name or "<document>"

    def __post_init__(self) -> None:
        src = self._src
        if not isinstance(self.space, (str, dict)) or (isinstance(self.space, str) and not self.space):
            raise ArchError(src, "space", f"must be a space name, a path or an inline space document, got {self.space!r}")
        if not isinstance(self.choices, (list, tuple)) or not all(isinstance(c, str) for c in self.choices):
            raise ArchError(src, "choices", "must be a list of candidate names (strings)")
        self.choices = list(self.choices)
        if not isinstance(self.extra_candidates, (list, tuple)) or not all(isinstance(c, str) for c in self.extra_candidates):
            raise ArchError(src, "extra_candidates", "must be a list of candidate names (strings)")
        self.extra_candidates = list(self.extra_candidates)
        self.input_size = _pos_int(src, "input_size", self.input_size)
        self.classes = _pos_int(src, "classes", self.classes)
        self.head_channels = _pos_int(src, "head_channels", self.head_channels)
        if not isinstance(self.meta, dict):
            raise ArchError(src, "meta", "must be a mapping")

    # -- the space it lives in
    def resolve_space(self) -> SearchSpace:
        """The space at this architecture's input size, classes and head width; checks the choices."""
        src = self._src
        try:
            space = self._base_space()
            space = space.with_input(self.input_size, self.classes, self.head_channels)
        except SpaceError as exc:
            raise ArchError(src, "space", str(exc)) from None
        layers = space.layers()
        if len(self.choices) != len(layers):
            raise ArchError(
                src, "choices", f"{len(self.choices)} given, space {space.name!r} has {len(layers)} searchable layers"
            )
        for layer, choice in zip(layers, self.choices):
            if choice in layer.candidates:
                continue
            if choice not in self.extra_candidates:
                raise ArchError(
                    src,
                    f"choices[{layer.index}]",
                    f"{choice!r} is not a candidate of layer {layer.index} (stage {layer.stage}); candidates: "
                    f"{', '.join(layer.candidates)} (an architecture may list others in extra_candidates)",
                )
            try:
                shape = output_shape(layer.spec(choice))
            except OpError as exc:
                raise ArchError(src, f"choices[{layer.index}]", str(exc)) from None
            if shape != layer.out_shape:
                raise ArchError(
                    src, f"choices[{layer.index}]", f"{choice!r} gives {shape}, layer {layer.index} must give {layer.out_shape}"
                )
        return space

    def _base_space(self) -> SearchSpace:
        if isinstance(self.space, dict):
            return get_space(self.space)
        if self.base_dir is not None and not Path(self.space).is_absolute():
            candidate = self.base_dir / self.space
            if candidate.is_file():
                return get_space(str(candidate))
        return get_space(self.space)

    # -- what it is made of
    def op_keys(self) -> list[str]:
        """Every operator key of the network in order: stem, one per layer, head operators, classifier."""
        space = self.resolve_space()
        keys = [space.stem_spec().key]
        keys += [layer.spec(c).key for layer, c in zip(space.layers(), self.choices)]
        keys += [s.key for s in space.head_specs()]
        return keys

    # -- identity and serialisation
    def _identity(self) -> dict[str, Any]:
        d: dict[str, Any] = {"space": self.space, "choices": self.choices}
        for k in ("input_size", "classes", "head_channels"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.extra_candidates:
            d["extra_candidates"] = self.extra_candidates
        return d

    @property
    def id(self) -> str:
        """Stable id: the first 16 hex digits of sha256 over the canonical JSON of the defining fields."""
        canon = json.dumps(self._identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.name:
            d["name"] = self.name
        d.update(self._identity())
        if self.meta:
            d["meta"] = self.meta
        return d

    def to_json(self) -> str:
        """One field per line, each value compact: diffs stay readable and choices fit on one line."""
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in self.to_dict().items())
        return "{\n" + body + "\n}"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, doc: Any, source: str | None = None, base_dir: Path | None = None) -> "Architecture":
        """Validate a document; ``ArchError`` names the field of the first problem."""
        src = source or "<document>"
        if not isinstance(doc, dict):
            raise ArchError(src, "document", f"must be a JSON object, got {type(doc).__name__}")
        unknown = sorted(set(doc) - set(_FIELDS))
        if unknown:
            raise ArchError(src, unknown[0], f"unknown field; allowed: {', '.join(_FIELDS)}")
        for required in ("space", "choices"):
            if required not in doc:
                raise ArchError(src, required, "missing")
        if not isinstance(doc.get("name", ""), (str, type(None))):
            raise ArchError(src, "name", "must be a string")
        try:
            arch = cls(**{k: doc[k] for k in _FIELDS if k in doc}, base_dir=base_dir, source=source)
        except ArchError as exc:
            raise ArchError(src, exc.field, exc.reason) from None
        return arch

    @classmethod
    def load(cls, path: str | Path) -> "Architecture":
        """Read an architecture JSON (or YAML) file."""
        path = Path(path)
        try:
            doc = read_document(path)
        except OSError as exc:
            raise ArchError(str(path), "file", exc.strerror or str(exc)) from None
        except ValueError as exc:  # json.JSONDecodeError and yaml errors
            raise ArchError(str(path), "file", f"not valid JSON: {str(exc).splitlines()[0]}") from None
        except yaml.YAMLError as exc:  # not a ValueError
            raise ArchError(str(path), "file", f"not valid JSON/YAML: {str(exc).splitlines()[0]}") from None
        return cls.from_dict(doc, source=str(path), base_dir=path.parent)


def builtin_archs() -> list[str]:
    """Names of the shipped architecture documents (``fbnet_a`` …)."""
    return sorted(p.stem for p in ARCHS_DIR.glob("*.json"))


def get_arch(name_or_path: str | Path) -> Architecture:
    """A shipped architecture (``fbnet_a``, ``fbnet-b``, ``FBNet-C`` …) or a document path."""
    key = str(name_or_path).lower().replace("-", "_")
    builtin = ARCHS_DIR / f"{key}.json"
    if "/" not in str(name_or_path) and builtin.is_file():
        return Architecture.load(builtin)
    if not Path(name_or_path).exists() and "/" not in str(name_or_path) and not Path(name_or_path).suffix:
        # A bare word that is neither a file nor a shipped name is a mistyped name, not a missing file.
        raise ArchError(
            str(name_or_path),
            "name",
            f"no such file and no shipped architecture of that name (shipped: {', '.join(builtin_archs())})",
        )
    return Architecture.load(name_or_path)


def make_architecture(
    space_name: str, space: SearchSpace, choices: list[str], name: str | None = None, meta: dict[str, Any] | None = None
) -> Architecture:
    """An architecture document of ``space`` (the search's space, at the data set's size and classes)."""
    c, h, w = space.input_shape
    if space_name in list_spaces():
        # A built-in space is named, with the input size and classes the search used.
        return Architecture(
            space=space_name,
            choices=list(choices),
            input_size=h if h == w else None,
            classes=space.classes,
            name=name,
            meta=dict(meta or {}),
        )
    # A user's space file travels inline (at the size searched) so the document stands alone.
    return Architecture(space=space.to_dict(), choices=list(choices), name=name, meta=dict(meta or {}))


class Network(nn.Module):
    """A built architecture: stem → searchable layers → head (head conv, pool + classifier)."""

    def __init__(self, stem: nn.Module, layers: list[nn.Module], head: list[nn.Module]) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))

    def op_modules(self) -> list[nn.Module]:
        """The operator modules in network order (each has ``op_key``)."""
        return [self.stem, *self.layers, *self.head]

    def op_keys(self) -> list[str]:
        """The operator keys the modules were built from, read back off the modules."""
        return [cast(str, m.op_key) for m in self.op_modules()]  # set by build_op


def build_network(space: SearchSpace, choices: list[str]) -> Network:
    """The network of ``space`` with one candidate per layer (names, already validated)."""
    layers = [build_op(layer.spec(c)) for layer, c in zip(space.layers(), choices)]
    return Network(build_op(space.stem_spec()), layers, [build_op(s) for s in space.head_specs()])


def build(arch: Architecture) -> Network:
    """The ``nn.Module`` of an architecture document."""
    return build_network(arch.resolve_space(), arch.choices)
