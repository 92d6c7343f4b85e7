"""Bit-width pairs (weights, activations) and their text form ``w4a8`` (the operator-key dtype)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from search.quant.fakequant import FULL_PRECISION, BitsError, check_bits

DEFAULT_WEIGHT_BITS: tuple[int, ...] = (2, 4, 8, 32)
DEFAULT_ACT_BITS: tuple[int, ...] = (4, 8, 32)

_TAG = re.compile(r"w([0-9]+)a([0-9]+)")


@dataclass(frozen=True, order=True)
class Bits:
    """Weight and activation bit widths of one layer; 32/32 is full precision."""

    w: int
    a: int

    def __post_init__(self) -> None:
        check_bits(self.w, "weight bits")
        check_bits(self.a, "activation bits", low=2)

    @property
    def tag(self) -> str:
        """``w4a8``; full precision is ``w32a32``."""
        return f"w{self.w}a{self.a}"

    @property
    def dtype(self) -> str | None:
        """The operator-key dtype: ``w4a8``, or None for fp32 (implied, never written)."""
        return None if self.is_fp32 else self.tag

    @property
    def is_fp32(self) -> bool:
        return self.w >= FULL_PRECISION and self.a >= FULL_PRECISION

    @property
    def is_int8_runnable(self) -> bool:
        """True when an int8 kernel computes this layer exactly (both widths ≤ 8)."""
        return self.w <= 8 and self.a <= 8

    @classmethod
    def parse(cls, text: str) -> "Bits":
        """Parse ``w4a8``, ``fp32``, ``int8`` (= w8a8) or None dtype."""
        t = text.strip().lower()
        if t in ("fp32", "", "none"):
            return cls(FULL_PRECISION, FULL_PRECISION)
        if t == "int8":
            return cls(8, 8)
        m = _TAG.fullmatch(t)
        if not m:
            raise BitsError(f"{text!r} is not a bit-width pair like 'w4a8' or 'fp32'")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def from_dtype(cls, dtype: str | None) -> "Bits":
        return cls.parse(dtype or "fp32")

    def __str__(self) -> str:
        return self.tag


def bits_grid(weight_bits: tuple[int, ...] | list[int], act_bits: tuple[int, ...] | list[int]) -> list[Bits]:
    """Every (w, a) pair, ordered by weight bits then activation bits."""
    if not weight_bits or not act_bits:
        raise BitsError("weight and activation bit sets must not be empty")
    return sorted({Bits(int(w), int(a)) for w in weight_bits for a in act_bits})


def parse_bits_list(text: str, what: str) -> list[int]:
    """``"2,4,8,32"`` -> [2, 4, 8, 32] (for CLI options)."""
    try:
        out = sorted({int(p) for p in text.replace(" ", "").split(",") if p})
    except ValueError:
        raise BitsError(f"{what}: {text!r} is not a comma-separated list of integers") from None
    if not out:
        raise BitsError(f"{what}: empty list")
    for b in out:
        check_bits(b, what, low=2 if what.startswith("activation") else 1)
    return out
