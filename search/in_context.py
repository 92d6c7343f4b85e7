"""An operator inside a network against the same operator measured alone: the error an additive table carries.

A latency table adds operators measured one by one; inside a network each runs after another, with
other data in the caches and without the program's edges (input layout, the delegate call). ExecuTorch's
ETDump of a whole network (``NetworkResult.operator_breakdown``) times every XNNPACK operator inside it;
the same profile of each operator key's own program times it alone. Both are the same instrument (the
event tracer, 1 µs), so their difference is the context, not the clock.

**Which events are whose.** XNNPACK's events carry no module names (its profile has names like
``Convolution (NHWC, F32) IGEMM #3`` only), but it runs the graph in the network's order, and each key
is one block of that order (``Architecture.op_keys``). So a network's events are cut into consecutive
runs of each key's events, checking at every step that the operator kinds (the name without its ``#n``)
are the ones the key's own program runs. Layout conversions (transposes, reshapes) are left out on both
sides: a lone block converts NCHW to NHWC and back at its edges, a network only at its ends.
A network whose events do not line up this way is counted, not guessed at.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hwnas.schemas import OperatorBreakdown, OperatorTiming

LAYOUT_KINDS = ("Transpose", "Static Reshape", "Copy")  # XNNPACK operator names that only move data
MIN_ISOLATED_MS = 0.01  # pairs compared in the MAPE: 10x the tracer's 1 µs resolution (the total counts them all)


def op_kind(name: str) -> str:
    """An XNNPACK event's operator kind: its name without the ``#n`` counter."""
    return re.sub(r"\s*#\d+$", "", name)


def compute_ops(breakdown: OperatorBreakdown) -> list[OperatorTiming]:
    """The operators that compute (layout conversions left out), in execution order."""
    return [o for o in breakdown.operators if not op_kind(o.name).startswith(LAYOUT_KINDS)]


@dataclass(frozen=True)
class KeyInContext:
    """One operator key inside one network: its events' time there and in its own program (ms, medians)."""

    key: str
    in_network_ms: float
    isolated_ms: float


def attribute(
    network: OperatorBreakdown, keys: Sequence[str], isolated: Mapping[str, OperatorBreakdown]
) -> list[KeyInContext] | None:
    """Cut the network's events into each key's (in ``keys`` order); None when they do not line up."""
    events = compute_ops(network)
    out: list[KeyInContext] = []
    at = 0
    for key in keys:
        own = compute_ops(isolated[key])
        mine = events[at : at + len(own)]
        if [op_kind(o.name) for o in mine] != [op_kind(o.name) for o in own]:
            return None
        out.append(KeyInContext(key, sum(o.median_ms for o in mine), sum(o.median_ms for o in own)))
        at += len(own)
    return out if at == len(events) else None


@dataclass
class ContextError:
    """How the in-network times of operator keys compare with the same keys alone (ETDump on both sides)."""

    mape_pct: float | None  # mean |in network − alone| / alone over the pairs whose alone time >= MIN_ISOLATED_MS
    bias_pct: float | None  # mean signed error of the same pairs (+: slower inside the network)
    total_pct: float | None  # Σ|in network − alone| / Σ alone over every pair: the error weighted by time
    median_abs_pct: float | None
    pairs: int  # (network, key) pairs in the MAPE
    networks: int  # networks whose events lined up with their keys
    unaligned: int  # networks whose events did not

    def figures(self, prefix: str = "in_network_vs_isolated") -> dict[str, float | int | None]:
        return {
            f"{prefix}_mape_pct": self.mape_pct,
            f"{prefix}_bias_pct": self.bias_pct,
            f"{prefix}_total_pct": self.total_pct,
            f"{prefix}_median_abs_pct": self.median_abs_pct,
            f"{prefix}_pairs": self.pairs,
            f"{prefix}_networks": self.networks,
            f"{prefix}_unaligned": self.unaligned,
        }


def context_error(
    networks: Sequence[tuple[Sequence[str], OperatorBreakdown]],
    isolated: Mapping[str, OperatorBreakdown],
    min_isolated_ms: float = MIN_ISOLATED_MS,
    reference: Mapping[str, float] | None = None,
) -> ContextError:
    """Every network's keys (``(op keys, its breakdown)``) against the keys alone.

    ``reference``: compare with these per-key times instead of the keys' own ETDumps (still used to find the keys'
    events), e.g. the latency table's ``entry − overhead``: what an additive prediction adds for the key. Those
    are timed untraced around the whole program (its layout conversions and delegate call included).
    """
    rows: list[KeyInContext] = []
    aligned = unaligned = 0
    for keys, breakdown in networks:
        found = attribute(breakdown, keys, isolated)
        if found is None:
            unaligned += 1
            continue
        aligned += 1
        if reference is not None:
            found = [KeyInContext(r.key, r.in_network_ms, reference[r.key]) for r in found]
        rows += found
    rel = [(r.in_network_ms - r.isolated_ms) / r.isolated_ms for r in rows if r.isolated_ms >= min_isolated_ms]
    alone = sum(r.isolated_ms for r in rows)
    return ContextError(
        mape_pct=100.0 * statistics.fmean(abs(x) for x in rel) if rel else None,
        bias_pct=100.0 * statistics.fmean(rel) if rel else None,
        total_pct=100.0 * sum(abs(r.in_network_ms - r.isolated_ms) for r in rows) / alone if alone > 0 else None,
        median_abs_pct=100.0 * statistics.median(abs(x) for x in rel) if rel else None,
        pairs=len(rel),
        networks=aligned,
        unaligned=unaligned,
    )


__all__ = ["ContextError", "KeyInContext", "attribute", "compute_ops", "context_error", "op_kind"]
