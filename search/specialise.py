"""Train once, search every device: the most accurate child of a trained super net under each latency table.

A super net whose children share weights (``--weights shared``) holds an accuracy estimate for every network
of the space. For each (table, target) an evolutionary search inside the target's window ranks children by
that estimate — BatchNorm recalibrated for each child, accuracy on training images the super net never trained
on — in seconds to minutes, without retraining, for as many devices as the lab has tables for.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hwnas.errors import HwnasError


class SpecialiseError(HwnasError, ValueError):
    """A run folder or a target that cannot be specialised."""


@dataclass
class Specialised:
    """One child picked for one (device, target)."""

    device: str
    target_ms: float
    choices: list[str]
    supernet_acc: float
    predicted_ms: dict[str, float]  # on every requested device's table
    evaluated: int
    seconds: float
    window: tuple[float, float] = (0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "target_ms": self.target_ms,
            "choices": self.choices,
            "supernet_acc": self.supernet_acc,
            "predicted_ms": self.predicted_ms,
            "evaluated": self.evaluated,
            "seconds": self.seconds,
            "window_ms": list(self.window),
        }


@dataclass
class ChildScorer:
    """Super-net score of a child: BN statistics recomputed on ``calib`` images, then on ``val`` images its accuracy
    (``metric="accuracy"``) or its negative mean cross-entropy (``metric="loss"``: finer-grained than counting
    right answers, so fewer ties and less noise between children a point apart).

    Both come from training images outside the super net's own training subset (or its θ split when it trained
    on all of them): ranking children on images the weights were fitted to would favour memorisation.
    """

    run: Path
    calib_images: int = 500
    val_images: int = 1000
    batch_size: int = 250
    metric: str = "accuracy"
    cache: dict[tuple[str, ...], tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from search.data import dataset_len, load_dataset
        from search.sample import _load_run
        from search.space import get_space
        from search.supernet import SuperNet

        if self.metric not in ("accuracy", "loss"):
            raise SpecialiseError(f"metric must be accuracy or loss, not {self.metric!r}")
        run = _load_run(Path(self.run))
        cfg = run["config"]
        if not run["rundir"].checkpoint.is_file():
            raise SpecialiseError(f"{self.run}: no checkpoint.pt (the super net's weights) to specialise")
        self.space_ref = run["space"]  # what Architecture(space=...) takes: a name, a file or the document
        self.space = get_space(run["space"])
        self.model = SuperNet(self.space, mode=cfg["mode"], weights=cfg.get("weights", "separate"))
        self.model.load_state_dict(run["rundir"].load_checkpoint()["model"])
        self.model.eval()
        full = load_dataset(cfg["data"], "train", image_size=cfg.get("image_size"))
        seed, subset = cfg.get("seed", 0), cfg.get("subset")
        perm = torch.randperm(dataset_len(full), generator=torch.Generator().manual_seed(seed))
        if subset and subset < dataset_len(full):
            unseen = perm[subset:]  # load_dataset's seeded subset is perm[:subset]
        else:  # trained on every image: the θ split, which the weights never saw (search.search_setup.build_setup)
            unseen = perm[int(round(cfg.get("w_split", 0.8) * dataset_len(full))) :]
        need = self.val_images + self.calib_images
        if len(unseen) < need:
            raise SpecialiseError(
                f"only {len(unseen)} training images are unseen by the super net; --val-images + --calib-images need {need}"
            )
        self.data = full
        self.val_index = unseen[: self.val_images]
        self.calib_index = unseen[self.val_images : need]
        self.candidates = [layer.candidates for layer in self.space.layers()]

    def scores(self, choices: Sequence[str]) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of the child on the validation images, BN recalibrated."""
        from search.evaluate import evaluate_scores, recalibrated_bn

        key = tuple(choices)
        if key not in self.cache:
            cpu = torch.device("cpu")
            with (
                torch.no_grad(),
                self.model.fixed_choices(list(choices)),
                recalibrated_bn(self.model, self.data, self.calib_index, self.batch_size, cpu),
            ):
                self.cache[key] = evaluate_scores(self.model, self.data, self.val_index, self.batch_size, cpu)
        return self.cache[key]

    def score(self, choices: Sequence[str]) -> float:
        """The child's score, higher is better: accuracy or negative cross-entropy (``metric``)."""
        acc, ce = self.scores(choices)
        return acc if self.metric == "accuracy" else -ce


def evolve(
    score: Callable[[Sequence[str]], float],
    costs: Any,
    candidates: list[list[str]],
    lo: float,
    hi: float,
    population: int = 12,
    generations: int = 6,
    mutate_p: float = 0.25,
    seed: int = 0,
) -> tuple[list[str], float, int]:
    """The best-scoring network with ``lo ≤ cost ≤ hi`` an evolutionary search finds: (choices, score, evaluated).

    Starts from networks drawn uniformly inside the window; each generation breeds children of the better half
    (uniform crossover, then each layer resampled with ``mutate_p``), keeps only children inside the window, and
    keeps the best ``population`` of parents and children.
    """
    from search.ground_truth import sample_window

    rng = random.Random(seed)
    pool = sample_window(costs, candidates, lo, hi, population, seed=seed)
    if not pool:
        raise SpecialiseError(f"no network of the space costs between {lo:.4f} and {hi:.4f} ms on this table")
    cost = lambda c: costs.fixed + sum(costs.layer_costs[i][candidates[i].index(x)] for i, x in enumerate(c))  # noqa: E731
    scored = {tuple(c): score(c) for c in pool}
    for _ in range(generations):
        ranked = sorted(scored, key=lambda c: -scored[c])
        parents = ranked[: max(2, len(ranked) // 2)]
        children: list[tuple[str, ...]] = []
        for _ in range(population * 20):
            if len(children) == population:
                break
            a, b = rng.choice(parents), rng.choice(parents)
            child = tuple(
                rng.choice(candidates[i]) if rng.random() < mutate_p else rng.choice((a[i], b[i])) for i in range(len(candidates))
            )
            if child not in scored and child not in children and lo <= cost(child) <= hi:
                children.append(child)
        for c in children:
            scored[c] = score(c)
        if not children:
            break  # the window is exhausted around the parents
    best = max(scored, key=lambda c: scored[c])
    return list(best), scored[best], len(scored)


def specialise(
    scorer: ChildScorer,
    tables: dict[str, Any],
    targets: list[tuple[str, float]],
    tol: float = 0.05,
    population: int = 12,
    generations: int = 6,
    seed: int = 0,
    log: Callable[[str], None] = lambda _: None,
) -> list[Specialised]:
    """One child per (device, target_ms) in ``targets``; ``tables`` maps every device to its ``LatencyTable``."""
    from search.cost import LatencyCost
    from search.search_setup import cost_table

    costs = {d: cost_table(LatencyCost(t), scorer.space) for d, t in tables.items()}
    out = []
    for device, target in targets:
        t0 = time.perf_counter()
        lo, hi = target * (1 - tol), target * (1 + tol)
        choices, acc, n = evolve(scorer.score, costs[device], scorer.candidates, lo, hi, population, generations, seed)
        out.append(
            Specialised(
                device,
                target,
                choices,
                acc,
                {d: c.arch_cost(scorer.space, choices) for d, c in costs.items()},
                n,
                time.perf_counter() - t0,
                (lo, hi),
            )
        )
        log(f"{device} @ {target:g} ms: super-net accuracy {acc:.4f} after {n} children ({out[-1].seconds:.0f} s)")
    return out
