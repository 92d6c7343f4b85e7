"""A latency table fitted from whole-network timings alone (``hwnas lut fit``).

For a device where operators cannot be timed one by one — a phone you only reach through an app,
an accelerator behind a compiler — time whole networks of a space and fit
``latency ≈ c + Σ_keys n_key · w_key`` with every ``w ≥ 0`` and ``c ≥ 0`` (non-negative least
squares; rows weighted by 1 / latency so that the fit minimises relative error, the error MAPE
reports). ``n_key`` counts how often an operator key occurs in the network, so layers that share
a key share a weight, exactly as a measured table would. Keys that occur in every training
network (stem, head, and layers whose candidates all coincide) cannot be told from the constant:
they get no cost of their own and the constant goes into the table's ``overhead_ms``, which every
consumer counts once per network (entries are stored as weight + overhead, as a measured table's are). A hold-out split says how well it predicts networks it has not seen.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.schemas import TableFit


class FitError(HwnasError, ValueError):
    """Timings that cannot give a table (too few networks, non-positive times, unknown candidates)."""


@dataclass(frozen=True)
class FitQuality:
    """How the fitted table predicts the held-out networks (and what it was fitted on)."""

    train_networks: int
    test_networks: int
    mape_pct: float | None  # on the held-out networks; None without a hold-out
    kendall_tau: float | None
    max_abs_error_ms: float | None
    train_mape_pct: float
    constant_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AdditiveModel:
    """``constant + Σ counts · weights`` over named features (operator keys, or (layer, candidate) pairs)."""

    features: list[str]
    weights: np.ndarray
    constant: float

    def predict(self, counts: Sequence[dict[str, int]]) -> np.ndarray:
        index = {f: i for i, f in enumerate(self.features)}
        out = np.full(len(counts), self.constant, dtype=float)
        for n, row in enumerate(counts):
            for f, c in row.items():
                if f in index:
                    out[n] += c * self.weights[index[f]]
        return out


def fit_additive(counts: Sequence[dict[str, int]], latency_ms: Sequence[float]) -> AdditiveModel:
    """Non-negative least squares of ``latency ≈ c + Σ n_f · w_f``, relative-error weighted."""
    from scipy.optimize import nnls

    y = np.asarray(latency_ms, dtype=float)
    if len(counts) != len(y) or len(y) < 2:
        raise FitError(f"need at least 2 timed networks with their features, got {len(y)}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise FitError("every network's latency must be a positive number of ms")
    features = sorted({f for row in counts for f in row})
    index = {f: i for i, f in enumerate(features)}
    X = np.zeros((len(y), len(features) + 1))
    X[:, -1] = 1.0  # the constant
    for n, row in enumerate(counts):
        for f, c in row.items():
            X[n, index[f]] += c
    # A feature present the same number of times in every network is the constant under another name.
    constant_like = np.all(X[:, :-1] == X[0, :-1], axis=0)
    X[:, :-1][:, constant_like] = 0.0
    w = 1.0 / y
    solution, _ = nnls(X * w[:, None], y * w, maxiter=50 * X.shape[1])
    weights = solution[:-1].copy()
    weights[constant_like] = 0.0
    return AdditiveModel(features=features, weights=weights, constant=float(solution[-1]))


def split(n: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded shuffle into train and test indices (``holdout``: the share held out; 0: none)."""
    if not 0.0 <= holdout < 1.0:
        raise FitError(f"--holdout is a share in [0, 1), got {holdout}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = int(round(holdout * n))
    return order[n_test:], order[:n_test]


def quality(
    model: AdditiveModel, counts: Sequence[dict[str, int]], y: Sequence[float], train: list[int], test: list[int]
) -> FitQuality:
    from search.stats import kendall_tau

    ys = np.asarray(y, dtype=float)
    pred = model.predict(counts)
    rel = np.abs(pred - ys) / ys
    return FitQuality(
        train_networks=len(train),
        test_networks=len(test),
        mape_pct=float(100 * rel[test].mean()) if test else None,
        kendall_tau=float(kendall_tau(list(pred[test]), list(ys[test]))) if len(test) >= 2 else None,
        max_abs_error_ms=float(np.abs(pred - ys)[test].max()) if test else None,
        train_mape_pct=float(100 * rel[train].mean()),
        constant_ms=model.constant,
    )


def fit_space_table(
    space: Any,
    networks: Sequence[Sequence[str]],
    latency_ms: Sequence[float],
    *,
    device: str,
    runtime: str = "fitted",
    threads: int = 1,
    holdout: float = 0.2,
    seed: int = 0,
):
    """A ``LatencyTable`` of ``space``'s operator keys fitted from timed networks (candidate names per layer).

    Returns the table and its ``FitQuality`` on the held-out networks; the table is refitted on all
    networks after the hold-out check, so nothing measured is thrown away.
    """
    from search.lut import LatencyTable
    from search.arch import make_architecture
    from search.space import SpaceError

    counts: list[dict[str, int]] = []
    for i, choices in enumerate(networks):
        try:
            counts.append(dict(Counter(make_architecture(space.name, space, list(choices)).op_keys())))
        except (SpaceError, ValueError) as exc:
            raise FitError(f"network {i + 1}: {exc}") from None
    train, test = split(len(counts), holdout, seed)
    if len(train) < 2:
        raise FitError(f"{len(counts)} networks leave {len(train)} to fit on")
    model = fit_additive([counts[i] for i in train], [latency_ms[i] for i in train])
    report = quality(model, counts, latency_ms, train, test)
    final = fit_additive(counts, latency_ms) if test else model
    # A table's entries are as measured, each with the per-call overhead in it; consumers subtract the overhead from
    # every entry and count it once per network (search.cost.LatencyCost). So the constant is the overhead, and an
    # entry is its weight plus it. Keys no timed network used stay out: unknown is not free.
    entries = {k: float(v) + final.constant for k, v in zip(final.features, final.weights)}
    table = LatencyTable(
        device=device,
        runtime=runtime,
        threads=threads,
        entries=entries,
        overhead_ms=final.constant,
        source=f"fitted from {len(counts)} whole networks",
    )
    return table, report


def fitted_text(
    table: Any, report: FitQuality, *, space: str, networks_file: str, networks_sha256: str, holdout: float, seed: int
) -> str:
    """The fitted table as JSON: a ``GET /lut`` document plus ``fit`` (schemas.TableFit), as ``-o`` writes it and the
    server stores it (format hwnas-fit); the same fit gives the same text, so storing it again changes nothing."""
    # τ is NaN when every held-out prediction ties: "undefined" travels as null, JSON has no NaN.
    measured = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in report.to_dict().items()}
    fit = TableFit(
        space=space, networks_file=networks_file, networks_sha256=networks_sha256, holdout=holdout, seed=seed, **measured
    )
    return json.dumps({**table.to_dict(), "fit": fit.model_dump(mode="json")}, indent=1) + "\n"
