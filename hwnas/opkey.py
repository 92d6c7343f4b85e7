"""Operator keys: the one canonical, readable text name of an operator microbenchmark.

Grammar (see docs/operator-keys.md)::

    key    := block "@" N "x" C "x" H "x" W [ "#" dtype ]
    block  := type ( "_" letter value )*
    type   := word ( "_" word )*        a word is [a-z][a-z0-9]* and is not letter+digits
    dtype  := "int8" | "fp16" | "w" bits "a" bits      fp32 is implied and never written

Parameters appear in the fixed order of ``PARAM_ORDER`` (unknown letters after those,
alphabetically), values are non-negative integers without leading zeros, so that
``OpSpec.parse(key).key == key`` for every valid key and for nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hwnas.errors import HwnasError

# kernel, expansion, groups, stride, output channels: the FBNet block vocabulary.
PARAM_ORDER: tuple[str, ...] = ("k", "e", "g", "s", "o")
OVERHEAD_KEY = "__overhead__"

_WORD = re.compile(r"[a-z][a-z0-9]*")
_PARAM = re.compile(r"([a-z])(0|[1-9][0-9]*)")
# Dimensions and parameters are stored in 32-bit integer columns: 9 digits always fit.
MAX_DIGITS = 9
_DIM = re.compile(r"0|[1-9][0-9]*")
_DTYPE = re.compile(r"int8|fp16|w([1-9][0-9]?)a([1-9][0-9]?)")


class OpKeyError(HwnasError, ValueError):
    """A malformed operator key; ``part`` names the piece that is wrong."""

    def __init__(self, key: str, part: str, reason: str) -> None:
        self.key = key
        self.part = part
        self.reason = reason
        super().__init__(f"bad operator key {key!r}: {part}: {reason}")


def _param_rank(letter: str) -> tuple[int, str]:
    return (PARAM_ORDER.index(letter), "") if letter in PARAM_ORDER else (len(PARAM_ORDER), letter)


@dataclass(frozen=True)
class OpSpec:
    """One operator microbenchmark: block type, its parameters, input shape and dtype."""

    block: str
    params: tuple[tuple[str, int], ...] = ()
    shape: tuple[int, int, int, int] = (1, 1, 1, 1)
    dtype: str | None = None  # None means fp32
    _key: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        params = tuple(sorted(((str(k), int(v)) for k, v in dict(self.params).items()), key=lambda kv: _param_rank(kv[0])))
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.dtype == "fp32":
            object.__setattr__(self, "dtype", None)
        key = self._format()
        # Validate by parsing what we would print: one grammar, one place.
        _parse_parts(key)
        object.__setattr__(self, "_key", key)

    @classmethod
    def make(cls, block: str, shape: tuple[int, int, int, int], dtype: str | None = None, **params: int) -> "OpSpec":
        """Build a spec from keyword parameters, e.g. ``OpSpec.make("ir", (1,16,56,56), k=3, e=6, g=1, s=2, o=24)``."""
        return cls(block=block, params=tuple(params.items()), shape=shape, dtype=dtype)

    @classmethod
    def parse(cls, key: str) -> "OpSpec":
        """Parse a canonical key; raise ``OpKeyError`` naming the bad part otherwise."""
        block, params, shape, dtype = _parse_parts(key)
        spec = cls(block=block, params=params, shape=shape, dtype=dtype)
        if spec.key != key:  # pragma: no cover - _parse_parts enforces canonical form
            raise OpKeyError(key, "key", f"not canonical; canonical form is {spec.key!r}")
        return spec

    @property
    def key(self) -> str:
        return self._key

    def _format(self) -> str:
        block = "_".join([self.block] + [f"{k}{v}" for k, v in self.params])
        key = f"{block}@{'x'.join(str(d) for d in self.shape)}"
        return f"{key}#{self.dtype}" if self.dtype else key

    def get(self, letter: str, default: int | None = None) -> int | None:
        """The value of parameter ``letter`` (``k``, ``e``, ``g``, ``s``, ``o`` …) or ``default``."""
        return dict(self.params).get(letter, default)

    @property
    def block_name(self) -> str:
        """The block part of the key (type and parameters, no shape)."""
        return self.key.split("@", 1)[0]

    def __str__(self) -> str:
        return self.key


def _parse_parts(key: str) -> tuple[str, tuple[tuple[str, int], ...], tuple[int, int, int, int], str | None]:
    if not isinstance(key, str) or not key:
        raise OpKeyError(str(key), "key", "empty")
    if key.count("@") != 1:
        raise OpKeyError(key, "key", "expected exactly one '@' between block and input shape")
    block_part, rest = key.split("@")
    dtype: str | None = None
    if "#" in rest:
        rest, dtype = rest.split("#", 1)
        if dtype == "fp32":
            raise OpKeyError(key, "dtype", "fp32 is implied; omit '#fp32'")
        if not _DTYPE.fullmatch(dtype):
            raise OpKeyError(key, "dtype", f"{dtype!r} is not one of int8, fp16, w<bits>a<bits>")
    dims = rest.split("x")
    if len(dims) != 4:
        raise OpKeyError(key, "shape", f"{rest!r} must be NxCxHxW (4 dimensions)")
    for name, d in zip("NCHW", dims):
        if not _DIM.fullmatch(d):
            raise OpKeyError(key, f"shape.{name}", f"{d!r} is not a non-negative integer without leading zeros")
        if int(d) == 0:
            raise OpKeyError(key, f"shape.{name}", "must be at least 1")
        if len(d) > MAX_DIGITS:
            raise OpKeyError(key, f"shape.{name}", f"{d[:12]}… is too large (at most {MAX_DIGITS} digits)")
    tokens = block_part.split("_")
    type_words: list[str] = []
    params: list[tuple[str, int]] = []
    for tok in tokens:
        m = _PARAM.fullmatch(tok)
        if m and type_words:
            if len(m.group(2)) > MAX_DIGITS:
                raise OpKeyError(key, f"param {tok[:12]!r}", f"too large (at most {MAX_DIGITS} digits)")
            params.append((m.group(1), int(m.group(2))))
            continue
        if params:
            raise OpKeyError(key, f"param {tok!r}", "parameters are <letter><integer> and come after the type")
        if not _WORD.fullmatch(tok) or re.fullmatch(r"[a-z][0-9]+", tok):
            raise OpKeyError(key, f"type word {tok!r}", "type words are lowercase [a-z][a-z0-9]* and not <letter><digits>")
        type_words.append(tok)
    if not type_words:
        raise OpKeyError(key, "type", "missing block type")
    letters = [k for k, _ in params]
    if len(set(letters)) != len(letters):
        raise OpKeyError(key, "params", f"repeated parameter in {letters}")
    if letters != sorted(letters, key=_param_rank):
        order = "".join(sorted(letters, key=_param_rank))
        raise OpKeyError(key, "params", f"order {''.join(letters)!r} is not canonical {order!r}")
    shape = (int(dims[0]), int(dims[1]), int(dims[2]), int(dims[3]))
    return "_".join(type_words), tuple(params), shape, dtype


def is_valid_key(key: str) -> bool:
    """True when ``key`` is a canonical operator key or the overhead key."""
    if key == OVERHEAD_KEY:
        return True
    try:
        _parse_parts(key)
    except OpKeyError:
        return False
    return True
