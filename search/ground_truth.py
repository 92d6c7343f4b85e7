"""What a latency budget allows: trained networks filling each budget window, as data every search is judged on.

A found network means little next to a handful of random ones. The ground truth is the distribution itself:
for each window (a share of the all-``ir_k3_e6`` baseline's predicted latency, ±5%), networks drawn uniformly
among the table's networks inside it, each trained with one recipe on several seeds and scored on a fixed
**validation split** of training images no training ever sees (for picking) and on the test split (for
reporting). A search's found network is then a percentile of its window, not a win over four random draws.

The file (``search/ground_truth_data/*.json``, built by ``benchmarks/ground_truth.py``) records the recipe,
the table's fingerprint, the commit and the seeds; ``GroundTruth.load`` refuses it for another recipe or table.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hwnas.errors import HwnasError

SHIPPED = Path(__file__).resolve().parent / "ground_truth_data"
BASELINE_OP = "ir_k3_e6"


class GroundTruthError(HwnasError, ValueError):
    """A ground-truth file that does not fit what it is asked for (another recipe, table or window)."""


@dataclass(frozen=True)
class Recipe:
    """How every ground-truth network is trained: one recipe for all, so accuracies compare."""

    space: str = "fbnet-fmnist"
    data: str = "fashion-mnist"
    epochs: int = 4
    train_images: int = 5000
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    wd: float = 1e-4
    # 10,000 training images set aside once (drawn by validation_seed) for every network and seed: a 1,000-image
    # hold-out has a standard error of ~1.2 points, more than the spread between equal-latency networks.
    validation_images: int = 10000
    validation_seed: int = 12345
    seeds: tuple[int, ...] = (0, 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        return cls(**{**d, "seeds": tuple(d["seeds"])})

    def train_config(self, seed: int, **overrides: Any) -> Any:
        """The ``search.train.TrainConfig`` that trains one network of this recipe (tested on the whole test split)."""
        from search.train import TrainConfig

        return TrainConfig(
            **{
                **dict(
                    data=self.data,
                    epochs=self.epochs,
                    batch_size=self.batch_size,
                    lr=self.lr,
                    momentum=self.momentum,
                    wd=self.wd,
                    subset=self.train_images,
                    val_subset=None,
                    seed=seed,
                    validation_images=self.validation_images,
                    validation_seed=self.validation_seed,
                    eval_every_epoch=False,
                ),
                **overrides,
            }
        )


@dataclass(frozen=True)
class Window:
    """Networks whose predicted latency is within ``share`` × baseline ± ``tol``."""

    share: float
    tol: float
    centre_ms: float

    @property
    def name(self) -> str:
        return f"b{round(100 * self.share)}"

    @property
    def lo_ms(self) -> float:
        return self.centre_ms * (1 - self.tol)

    @property
    def hi_ms(self) -> float:
        return self.centre_ms * (1 + self.tol)

    def holds(self, ms: float) -> bool:
        return self.lo_ms <= ms <= self.hi_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "share": self.share,
            "tol": self.tol,
            "centre_ms": self.centre_ms,
            "lo_ms": self.lo_ms,
            "hi_ms": self.hi_ms,
        }


def table_fingerprint(costs: Any) -> str:
    """sha256 of a cost table's numbers (per-layer candidate costs and the fixed part): what ranks the networks."""
    doc = {"layer_costs": costs.layer_costs, "fixed": costs.fixed, "unit": costs.unit}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def sample_window(
    costs: Any,
    candidates: Sequence[Sequence[str]],
    lo: float,
    hi: float,
    n: int,
    seed: int = 0,
    batch: int = 200_000,
    max_draws: int = 50_000_000,
    exclude: set[tuple[str, ...]] | None = None,
) -> list[list[str]]:
    """Up to ``n`` distinct networks drawn uniformly among those whose predicted cost lies in [lo, hi].

    Rejection sampling: every layer's candidate uniformly, kept when the sum falls in the window, so each network
    of the window is equally likely; repeats are dropped in draw order (the kept set is a uniform random subset).
    Vectorised, since a 25% window holds < 1% of the space: 100 networks take ~15,000 draws.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = [np.asarray(r, dtype=float) for r in costs.layer_costs]
    skip = set(exclude or ())
    out: dict[tuple[str, ...], None] = {}
    drawn = 0
    while len(out) < n and drawn < max_draws:
        idx = np.stack([rng.integers(0, len(r), batch) for r in rows], axis=1)
        total = costs.fixed + sum(r[idx[:, i]] for i, r in enumerate(rows))
        for row in idx[(total >= lo) & (total <= hi)]:
            choices = tuple(candidates[layer][int(j)] for layer, j in enumerate(row))
            if choices not in skip and choices not in out:
                out[choices] = None
                if len(out) == n:
                    break
        drawn += batch
    return [list(c) for c in out]


# ---- training with the recipe --------------------------------------------------------------------
def split_for(recipe: Recipe, seed: int) -> tuple[Any, Any, Any]:
    """(training images of ``seed``, the validation split, the test split) under ``recipe``.

    The validation split is drawn once from the training split by ``recipe.validation_seed``; each training seed
    draws its ``train_images`` from the rest, so no training ever sees a validation image.
    """
    from search.data import load_dataset, random_subset, split_holdout

    rest, validation = split_holdout(load_dataset(recipe.data, "train"), recipe.validation_images, recipe.validation_seed)
    return random_subset(rest, recipe.train_images, seed), validation, load_dataset(recipe.data, "test")


def train_on_recipe(choices: list[str], seed: int, recipe: Recipe, num_threads: int | None = 1) -> dict[str, float]:
    """Train one network from scratch with ``recipe`` and ``seed``: validation and test accuracy, seconds."""
    import time

    import torch

    from search.arch import build_network
    from search.evaluate import evaluate_model
    from search.space import get_space
    from search.train import train_model

    if num_threads:
        torch.set_num_threads(num_threads)
    train, validation, test = split_for(recipe, seed)
    torch.manual_seed(seed)
    model = build_network(get_space(recipe.space), choices)
    cfg = recipe.train_config(seed, torch_device="cpu", progress=False)
    t0 = time.perf_counter()
    history = train_model(model, train, validation, cfg)
    test_acc = evaluate_model(model, test, torch.arange(len(test)), recipe.batch_size, torch.device("cpu"))
    return {"val": float(history[-1]["val_acc"]), "test": float(test_acc), "seconds": time.perf_counter() - t0}


# ---- the data file -------------------------------------------------------------------------------
@dataclass
class Network:
    """One ground-truth network: where it sits (window, role), what it costs and how it trained per seed."""

    id: str
    choices: list[str]
    window: str
    role: str  # "window" (the uniform draw that is the distribution) or what else was scored: max_macs, found, ...
    macs: float  # millions
    params: float  # millions
    predicted_ms: float
    measured_ms: float | None = None
    seeds: dict[str, dict[str, float]] = field(default_factory=dict)  # "0" -> {"val", "test", "seconds"}

    def mean(self, split: str, seeds: Sequence[int]) -> float | None:
        """Mean accuracy on ``split`` ("val" or "test") over ``seeds``; None until every one is trained."""
        got = [self.seeds.get(str(s)) for s in seeds]
        done = [g for g in got if g is not None]
        if len(done) < len(got):
            return None
        return sum(g[split] for g in done) / len(done)


@dataclass
class GroundTruth:
    """The ground-truth file: recipe, table, windows and networks."""

    recipe: Recipe
    table_sha256: str
    windows: dict[str, Window]
    networks: list[Network]
    meta: dict[str, Any] = field(default_factory=dict)  # commit, table file, measuring device, speed drift, ...

    # -- reading
    @classmethod
    def load(cls, path: str | Path | None = None, recipe: Recipe | None = None, table_sha256: str | None = None) -> "GroundTruth":
        """Read a ground-truth file (default: the one shipped for fbnet-fmnist on host-cpu).

        Refused with ``GroundTruthError`` when ``recipe`` or ``table_sha256`` is given and differs: accuracies
        trained another way, or windows cut on another table, are a different distribution.
        """
        path = Path(path) if path else SHIPPED / "fbnet-fmnist_host-cpu.json"
        if not path.is_file():
            raise GroundTruthError(f"no ground-truth file at {path}")
        doc = json.loads(path.read_text())
        gt = cls(
            recipe=Recipe.from_dict(doc["recipe"]),
            table_sha256=doc["table_sha256"],
            windows={w["name"]: Window(w["share"], w["tol"], w["centre_ms"]) for w in doc["windows"]},
            networks=[Network(**n) for n in doc["networks"]],
            meta=doc.get("meta", {}),
        )
        if recipe is not None and recipe != gt.recipe:
            diff = {k: (v, getattr(recipe, k)) for k, v in asdict(gt.recipe).items() if getattr(recipe, k) != v}
            raise GroundTruthError(f"{path} was trained with another recipe (file vs asked: {diff})")
        if table_sha256 is not None and table_sha256 != gt.table_sha256:
            raise GroundTruthError(
                f"{path} cut its windows on another latency table (sha256 {gt.table_sha256[:12]}…, asked {table_sha256[:12]}…)"
            )
        return gt

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "hwnas-ground-truth",
            "version": 1,
            "recipe": self.recipe.to_dict(),
            "table_sha256": self.table_sha256,
            "windows": [w.to_dict() for w in self.windows.values()],
            "meta": self.meta,
            "networks": [asdict(n) for n in self.networks],
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=0) + "\n")
        tmp.replace(path)  # a stopped build never leaves half a file
        return path

    # -- questions
    def window_of(self, predicted_ms: float) -> Window | None:
        return next((w for w in self.windows.values() if w.holds(predicted_ms)), None)

    def find(self, arch_id: str) -> Network | None:
        return next((n for n in self.networks if n.id == arch_id), None)

    def trained(self, window: str, role: str = "window", split: str = "test") -> list[Network]:
        """The networks of ``window`` with every seed trained."""
        return [
            n for n in self.networks if n.window == window and n.role == role and n.mean(split, self.recipe.seeds) is not None
        ]

    def accuracies(self, window: str, split: str = "test") -> list[float]:
        """The window's distribution: mean accuracy over the seeds of each uniformly drawn network."""
        return [n.mean(split, self.recipe.seeds) for n in self.trained(window, split=split)]  # type: ignore[misc]

    def percentile(self, window: str, accuracy: float, split: str = "test") -> float:
        """Share of the window's networks below ``accuracy`` (ties count half), in per cent; 50 for a typical one."""
        return percentile_of(accuracy, self.accuracies(window, split))

    def seed_reliability(self, split: str = "test", window: str | None = None) -> float | None:
        """Pearson correlation of the first two seeds' accuracies among a window's networks; without ``window``, the
        mean over windows (pooling them would count the windows' different means as agreement between seeds)."""
        if window is None:
            values = [r for w in self.windows if (r := self.seed_reliability(split, w)) is not None]
            return sum(values) / len(values) if values else None
        a, b = (str(s) for s in self.recipe.seeds[:2])
        pairs = [
            (n.seeds[a][split], n.seeds[b][split])
            for n in self.networks
            if n.window == window and n.role == "window" and a in n.seeds and b in n.seeds
        ]
        return pearson([p[0] for p in pairs], [p[1] for p in pairs]) if len(pairs) >= 3 else None


def percentile_of(value: float, distribution: Sequence[float]) -> float:
    """Per cent of ``distribution`` below ``value``, ties half (the null: 50 for a draw from it)."""
    if not distribution:
        raise GroundTruthError("the window holds no trained network yet")
    below = sum(1.0 if d < value else 0.5 if d == value else 0.0 for d in distribution)
    return 100.0 * below / len(distribution)


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sx = math.sqrt(sum((a - mx) ** 2 for a in x))
    sy = math.sqrt(sum((b - my) ** 2 for b in y))
    if sx <= 1e-12 * max(1.0, abs(mx)) or sy <= 1e-12 * max(1.0, abs(my)):
        return None  # a constant cannot correlate
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / (sx * sy)
