"""Search spaces as data: stem, stages of (candidates, channels, repeats, stride), head, classes.

A space document (JSON or YAML; the built-in ones are ``search/spaces/*.yaml``)::

    name: fbnet
    input_shape: [3, 224, 224]          # C, H, W
    classes: 1000
    candidates: [ir_k3_e1, ..., skip]    # default list for every stage
    stem: {op: conv_k3, channels: 16, stride: 2}
    stages:                              # only a stage's first layer carries the stride
      - {channels: 16, repeats: 1, stride: 1}
      - {channels: 24, repeats: 4, stride: 2, candidates: [...]}   # a stage may override
    head: {op: conv_k1, channels: 1984}  # then global average pool + linear to `classes`

``head`` may also be a list of fixed operators (MobileNetV3: final 1×1 conv, ``gap``, a 1×1 conv on
the pooled map), and ``classifier`` names the operator placed last with ``o = classes``:
``gap_fc`` (default: pool and linear layer in one) or ``fc`` (after a head that pooled already).

Every mistake is a ``SpaceError`` naming the field, e.g. ``stages[2].channels``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hwnas.errors import HwnasError
from hwnas.opkey import OpSpec
from search.ops import OpError, candidate_spec, output_shape

BUILTIN_DIR = Path(__file__).with_name("spaces")
CLASSIFIER = "gap_fc"  # the default last operator: global average pool + linear layer to the classes
Shape = tuple[int, int, int, int]


class SpaceError(HwnasError, ValueError):
    """A space that cannot be built: an architecture space (``field`` is the offending entry's path,
    ``stages[2].channels``) or a bits space (``search.quant.space``, which raises it with a message alone).
    """

    def __init__(self, source: str, field: str | None = None, reason: str | None = None) -> None:
        self.source = source
        self.field = field
        self.reason = reason
        super().__init__(source if field is None else f"space {source}: {field}: {reason}")


# ---- the document schema (pydantic: types and required fields) ------------------------------
PosInt = Annotated[int, Field(strict=True, gt=0)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _FixedDoc(_Doc):
    op: str = Field(min_length=1)
    channels: PosInt | None = None  # None: keeps the input's channels (an operator without `o`, such as `gap`)
    stride: PosInt = 1


class _StageDoc(_Doc):
    channels: PosInt
    repeats: PosInt
    stride: PosInt = 1
    candidates: list[str] | None = Field(default=None, min_length=1)
    name: str | None = None


class _SpaceDoc(_Doc):
    name: str = Field(min_length=1)
    description: str = ""
    input_shape: list[PosInt] = Field(min_length=3, max_length=3)
    classes: PosInt
    candidates: list[str] | None = Field(default=None, min_length=1)
    stem: _FixedDoc
    stages: list[_StageDoc] = Field(min_length=1)
    head: _FixedDoc | list[_FixedDoc] | None = None
    classifier: str = Field(default=CLASSIFIER, min_length=1)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


# ---- the model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FixedOp:
    """A non-searchable part (stem or a head operator): a candidate string placed with channels and stride."""

    op: str
    channels: int | None = None  # None: the input's channels
    stride: int = 1


@dataclass(frozen=True)
class Stage:
    channels: int
    repeats: int
    stride: int
    candidates: tuple[str, ...]
    name: str | None = None


@dataclass(frozen=True)
class Layer:
    """One searchable layer: its candidates and geometry; ``spec(c)`` places candidate ``c`` in it."""

    index: int
    candidates: list[str]
    in_shape: Shape
    out_channels: int
    stride: int
    stage: int = 0
    out_shape: Shape = (1, 1, 1, 1)

    def spec(self, candidate: str | int) -> OpSpec:
        """The operator spec of ``candidate`` (a name or an index into ``candidates``) in this layer."""
        if isinstance(candidate, int):
            candidate = self.candidates[candidate]
        return candidate_spec(candidate, self.in_shape, self.out_channels, self.stride)

    def specs(self) -> list[OpSpec]:
        """Specs of all candidates, in candidate order."""
        return [self.spec(c) for c in self.candidates]


@dataclass(frozen=True)
class SearchSpace:
    """A declarative FBNet-style space; building it checks every candidate of every layer."""

    name: str
    input_shape: tuple[int, int, int]
    classes: int
    stem: FixedOp
    stages: tuple[Stage, ...]
    head: tuple[FixedOp, ...] | FixedOp | None  # stored as a tuple; one FixedOp or None are accepted
    description: str = ""
    candidates: tuple[str, ...] = ()
    source: str | None = None
    classifier: str = CLASSIFIER
    _layers: tuple[Layer, ...] = field(default=(), init=False, repr=False, compare=False)
    _fixed: tuple[OpSpec, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        head = () if self.head is None else (self.head,) if isinstance(self.head, FixedOp) else tuple(self.head)
        object.__setattr__(self, "head", head)
        layers, fixed = _geometry(self)
        object.__setattr__(self, "_layers", tuple(layers))
        object.__setattr__(self, "_fixed", tuple(fixed))

    # -- structure
    def layers(self) -> list[Layer]:
        """The searchable layers in network order."""
        return list(self._layers)

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def stem_spec(self) -> OpSpec:
        return self._fixed[0]

    def head_specs(self) -> list[OpSpec]:
        """The fixed operators after the last searchable layer: the head operators (if any), then the classifier."""
        return list(self._fixed[1:])

    def fixed_specs(self) -> list[OpSpec]:
        """Stem, head operators and classifier specs, in network order."""
        return list(self._fixed)

    @property
    def size(self) -> int:
        """Number of architectures in the space (product of candidate counts)."""
        return math.prod(len(layer.candidates) for layer in self._layers)

    def op_keys(self) -> list[str]:
        """Every distinct operator key the space can use (stem and head included), in network order."""
        keys = [self.stem_spec().key]
        for layer in self._layers:
            keys.extend(s.key for s in layer.specs())
        keys.extend(s.key for s in self.head_specs())
        return list(dict.fromkeys(keys))

    # -- variants and serialisation
    def with_input(
        self, input_size: int | tuple[int, ...] | None = None, classes: int | None = None, head_channels: int | None = None
    ) -> "SearchSpace":
        """The same space at another input size / class count / head width (geometry recomputed)."""
        shape = self.input_shape
        if input_size is not None:
            size = (input_size,) if isinstance(input_size, int) else tuple(input_size)
            if len(size) == 1:
                shape = (shape[0], size[0], size[0])
            elif len(size) == 2:
                shape = (shape[0], size[0], size[1])
            elif len(size) == 3:
                shape = (size[0], size[1], size[2])
            else:
                raise SpaceError(self.name, "input_size", f"{input_size!r} is not S, (H, W) or (C, H, W)")
        head = self.head
        if head_channels is not None:
            if not head:
                raise SpaceError(self.name, "head", "space has no head conv whose channels could be changed")
            # The first head operator is the head conv whose width FBNet-A/B1/C1 changed.
            head = (dataclasses.replace(head[0], channels=head_channels), *head[1:])  # type: ignore[index]
        if (shape, classes or self.classes, head) == (self.input_shape, self.classes, self.head):
            return self
        return dataclasses.replace(self, input_shape=shape, classes=classes or self.classes, head=head)

    def to_dict(self) -> dict[str, Any]:
        """The space as a document (``SearchSpace.from_dict(space.to_dict()) == space``)."""
        doc: dict[str, Any] = {"name": self.name}
        if self.description:
            doc["description"] = self.description
        doc["input_shape"] = list(self.input_shape)
        doc["classes"] = self.classes
        if self.candidates:
            doc["candidates"] = list(self.candidates)
        doc["stem"] = _fixed_dict(self.stem)
        stages = []
        for st in self.stages:
            d: dict[str, Any] = {"channels": st.channels, "repeats": st.repeats, "stride": st.stride}
            if tuple(st.candidates) != tuple(self.candidates):
                d["candidates"] = list(st.candidates)
            if st.name:
                d["name"] = st.name
            stages.append(d)
        doc["stages"] = stages
        head = [_fixed_dict(f) for f in self.head]  # type: ignore[union-attr]
        if head:
            doc["head"] = head[0] if len(head) == 1 else head
        if self.classifier != CLASSIFIER:
            doc["classifier"] = self.classifier
        return doc

    @classmethod
    def from_dict(cls, doc: Any, source: str | None = None) -> "SearchSpace":
        """Validate a space document; ``SpaceError`` names the stage and field of the first problem."""
        name = doc.get("name") if isinstance(doc, dict) else None
        label = source or (name if isinstance(name, str) else "<document>")
        if not isinstance(doc, dict):
            raise SpaceError(label, "document", f"must be a mapping, got {type(doc).__name__}")
        try:
            d = _SpaceDoc.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SpaceError(label, _loc(err["loc"]), err["msg"]) from None
        stages = []
        for i, st in enumerate(d.stages):
            cands = st.candidates or d.candidates
            if not cands:
                raise SpaceError(
                    label, f"stages[{i}].candidates", "no candidates (give the stage or the space a candidates list)"
                )
            if len(set(cands)) != len(cands):
                raise SpaceError(label, f"stages[{i}].candidates", f"repeated candidate in {cands}")
            stages.append(Stage(st.channels, st.repeats, st.stride, tuple(cands), st.name))
        fixed = lambda f: FixedOp(f.op, f.channels, f.stride)  # noqa: E731
        heads = [] if d.head is None else [d.head] if isinstance(d.head, _FixedDoc) else d.head
        return cls(
            name=d.name,
            input_shape=(d.input_shape[0], d.input_shape[1], d.input_shape[2]),
            classes=d.classes,
            stem=fixed(d.stem),
            stages=tuple(stages),
            head=tuple(fixed(h) for h in heads),
            description=d.description,
            candidates=tuple(d.candidates or ()),
            source=source,
            classifier=d.classifier,
        )


def _fixed_dict(op: FixedOp) -> dict[str, Any]:
    d = dataclasses.asdict(op)
    if d["channels"] is None:
        del d["channels"]
    return d


def _geometry(space: SearchSpace) -> tuple[list[Layer], list[OpSpec]]:
    """Walk the space once: place every candidate, check that a layer's candidates agree on the output shape."""
    label = space.source or space.name

    def place(where: str, candidate: str, shape: Shape, channels: int | None, stride: int) -> OpSpec:
        try:
            return candidate_spec(candidate, shape, shape[1] if channels is None else channels, stride)
        except OpError as exc:
            raise SpaceError(label, where, str(exc)) from None

    shape: Shape = (1, *space.input_shape)
    stem = place("stem.op", space.stem.op, shape, space.stem.channels, space.stem.stride)
    shape = output_shape(stem)
    layers: list[Layer] = []
    for si, st in enumerate(space.stages):
        for r in range(st.repeats):
            stride = st.stride if r == 0 else 1
            outs: dict[Shape, str] = {}
            for ci, cand in enumerate(st.candidates):
                spec = place(f"stages[{si}].candidates[{ci}]", cand, shape, st.channels, stride)
                outs.setdefault(output_shape(spec), cand)
            if len(outs) != 1:
                detail = "; ".join(f"{c} -> {'x'.join(map(str, s))}" for s, c in outs.items())
                raise SpaceError(label, f"stages[{si}].candidates", f"candidates disagree on the output shape ({detail})")
            out = next(iter(outs))
            layers.append(Layer(len(layers), list(st.candidates), shape, st.channels, stride, si, out))
            shape = out
    fixed = [stem]
    heads: tuple[FixedOp, ...] = space.head  # type: ignore[assignment]  # a tuple after __post_init__
    for hi, op in enumerate(heads):
        where = "head.op" if len(heads) == 1 else f"head[{hi}].op"
        spec = place(where, op.op, shape, op.channels, op.stride)
        fixed.append(spec)
        shape = output_shape(spec)
    fixed.append(place("classifier", space.classifier, shape, space.classes, 1))
    return layers, fixed


# ---- loading ---------------------------------------------------------------------------------
def list_spaces() -> list[str]:
    """Names of the built-in spaces."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def read_document(path: Path) -> Any:
    """Parse a JSON or YAML file (by suffix; YAML also reads JSON)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def load_space(path: str | Path) -> SearchSpace:
    """Load a space document from a JSON or YAML file."""
    path = Path(path)
    try:
        doc = read_document(path)
    except OSError as exc:
        raise SpaceError(str(path), "file", exc.strerror or str(exc)) from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpaceError(str(path), "file", f"not valid JSON/YAML: {str(exc).splitlines()[0]}") from None
    return SearchSpace.from_dict(doc, source=str(path))


_CACHE: dict[str, SearchSpace] = {}


def get_space(name_or_path: str | Path | dict[str, Any] | SearchSpace) -> SearchSpace:
    """A built-in space by name (``fbnet``, ``fbnet-fmnist``, ``fbnet-cifar``), a file path, or an inline document."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    if isinstance(name_or_path, dict):
        return SearchSpace.from_dict(name_or_path)
    name = str(name_or_path)
    if name in _CACHE:
        return _CACHE[name]
    builtin = BUILTIN_DIR / f"{name}.yaml"
    if "/" not in name and builtin.is_file():
        space = dataclasses.replace(load_space(builtin), source=None)
        _CACHE[name] = space
        return space
    path = Path(name)
    if path.is_file():
        return load_space(path)
    raise SpaceError(name, "name", f"no built-in space or file of that name; built in: {', '.join(list_spaces())}")
