"""What a search produced: ``theta.json``'s document, the result, and the network it ships.

The network shipped is not always θ's argmax (with the target loss it is the most likely one within the
budget), and a search that did not converge says so in its warnings rather than ending quietly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.arch import make_architecture
from search.search_setup import SearchSetup


# Absolute drop of the super net's validation accuracy below its best epoch that earns a warning: the demo's
# soft search went 0.703 → 0.487 → 0.419 without a word (issue 27).
ACC_FALL = 0.1
# Mean normalised entropy above which θ is reported as not having moved (1.0 = uniform).
UNMOVED_ENTROPY = 0.9
# Super-net training accuracy below this multiple of chance: the weights learned next to nothing, so θ's
# accuracy gradient is noise and θ followed the cost alone. Measured: a hard-mode super net of fbnet-fmnist
# (one random path of 11 candidates × 9 layers per step) stays at 10–14% after 6 epochs on 5,000 images,
# where soft mode is at 54% after one (docs/search.md, "Hard or soft").
UNTRAINED_ACC_FACTOR = 2.0


def theta_document(setup: SearchSetup, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of ``DIR/theta.json``: candidates per layer and one entry per epoch."""
    return {
        "space": setup.space.name,
        "mode": setup.config.schedule.mode,
        "cost": setup.costs.name,
        "unit": setup.costs.unit,
        "candidates": [list(layer.candidates) for layer in setup.space.layers()],
        "epochs": history,
    }


@dataclass
class SearchResult:
    """What a search produced (also written to ``DIR/result.json``)."""

    out: Path
    epochs: int
    history: list[dict[str, Any]]
    argmax: list[str]
    argmax_cost: float
    unit: str
    val_acc: float
    seconds: float
    architecture: Any = None
    found: list[str] = field(default_factory=list)  # what the search ships: at the target (target loss), else the argmax
    found_cost: float = 0.0
    theta_entropy: float = 1.0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "argmax": self.argmax,
            "argmax_cost": self.argmax_cost,
            "unit": self.unit,
            "found": self.found,
            "found_cost": self.found_cost,
            "theta_entropy": self.theta_entropy,
            "val_acc": self.val_acc,
            "seconds": self.seconds,
            "warnings": self.warnings,
        }


def argmax_architecture(setup: SearchSetup, choices: list[str], cost: float) -> Any:
    """The argmax choices as an architecture document with its predicted cost."""
    return make_architecture(
        setup.config.space,
        setup.space,
        choices,
        name="argmax",
        meta={"predicted": {setup.costs.name: cost, "unit": setup.costs.unit}, "source": "hwnas search (argmax of θ)"},
    )


def accuracy_fall(history: list[dict[str, Any]], drop: float = ACC_FALL) -> str | None:
    """A warning when the super net's validation accuracy ended ``drop`` or more below its best epoch, else None."""
    scored = [(i, e["val_acc"]) for i, e in enumerate(history) if e.get("val_acc") is not None]
    if len(scored) < 2:
        return None
    best_epoch, best = max(scored, key=lambda t: t[1])
    last = scored[-1][1]
    if best - last < drop:
        return None
    return (
        f"the super net's validation accuracy fell from {best:.3f} (epoch {best_epoch + 1}) to {last:.3f}: θ was "
        "steered by a super net that got worse. In soft mode its batch-norm statistics mix every candidate; "
        "a lower --theta-lr, a longer warm-up (--warmup-epochs) or more images usually keep it learning"
    )


def found_network(setup: SearchSetup, history: list[dict[str, Any]]) -> tuple[list[str], float, list[str]]:
    """The network the search ships, its predicted cost, and warnings about how it was chosen or how θ converged.

    With the target loss: the most likely architecture (under softmax θ) whose cost is within
    ``target·(1 ± target_tolerance)`` (``search/budget.py``), since the argmax can sit far from the
    budget the expected cost was held at. Otherwise the argmax.
    """
    from search.budget import nearest_most_likely

    sched, objective, last = setup.config.schedule, setup.config.objective, history[-1]
    warnings: list[str] = []
    searched = [e for e in history if e["phase"] == "search"]
    if not searched:
        warnings.append("θ was never trained: every epoch was warm-up (lower --warmup-epochs or raise --epochs)")
    elif last["theta_entropy"] > UNMOVED_ENTROPY:
        warnings.append(
            f"θ barely moved: mean normalised entropy {last['theta_entropy']:.2f} (1.0 is uniform), so the "
            "result is close to a random draw; give the search more epochs or images, or a larger --theta-lr"
        )
    chance = 1.0 / max(setup.info.num_classes, 1)
    if last["train_acc"] < UNTRAINED_ACC_FACTOR * chance:
        hint = (
            "hard mode trains one random path per step and needs far longer searches; use --mode soft"
            if sched.mode == "hard"
            else "give the search more epochs or images"
        )
        warnings.append(
            f"the super net barely learned (training accuracy {last['train_acc']:.0%}, chance "
            f"{chance:.0%}): θ read no accuracy signal and followed the cost alone; {hint}"
        )
    fell = accuracy_fall(history)
    if fell:
        warnings.append(fell)
    if not objective.has_target:
        return list(last["argmax"]), float(last["argmax_cost"]), warnings
    assert objective.target is not None  # has_target
    probs = [p.tolist() for p in setup.model.probabilities()]
    choice, inside = nearest_most_likely(
        probs, setup.costs.layer_costs, setup.costs.fixed, objective.target, objective.target_tolerance
    )
    if not inside:
        warnings.append(
            f"no architecture of this space costs within ±{objective.target_tolerance:.0%} of the target "
            f"{objective.target:g} {setup.costs.unit}: shipping the nearest, at {choice.cost:.4g}"
        )
    names = [layer.candidates[j] for layer, j in zip(setup.space.layers(), choice.index)]
    return names, choice.cost, warnings
