"""Where the demo's found network stands among what its latency budget allows: its percentile on the ground truth.

Four matched random networks say little (one seed, a few points of noise). The shipped ground truth
(``search.ground_truth``) holds 100 networks drawn uniformly inside each budget window of the reference host-CPU
table, trained with the full demo's own recipe; a found network whose latency on that table falls in a window is
one more draw of the window, and its rank among the window's networks (same training seed) says how good it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Placement:
    """The found network on its window's distribution, or why it could not be placed."""

    placed: bool
    reason: str = ""
    window: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    distribution: list[float] = field(default_factory=list)  # the window's test accuracies at the demo's seed
    found_acc: float | None = None
    found_reference_ms: float | None = None  # the found network's predicted latency on the reference table
    percentile: float | None = None
    max_macs_acc: float | None = None
    max_macs_percentile: float | None = None
    max_macs_choices: list[str] = field(default_factory=list)
    matched_accs: list[float] = field(default_factory=list)  # the demo's matched random networks in the same window

    @property
    def window_mean(self) -> float | None:
        return sum(self.distribution) / len(self.distribution) if self.distribution else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "placed": self.placed,
            "reason": self.reason,
            "window": self.window,
            "seed": self.seed,
            "networks": len(self.distribution),
            "window_mean_acc": self.window_mean,
            "found_acc": self.found_acc,
            "found_reference_ms": self.found_reference_ms,
            "percentile": self.percentile,
            "max_macs_acc": self.max_macs_acc,
            "max_macs_percentile": self.max_macs_percentile,
            "max_macs_choices": self.max_macs_choices,
            "matched_accs": self.matched_accs,
        }


def recipe_mismatch(config: Any, recipe: Any) -> list[str]:
    """What in the demo's training differs from the ground truth's recipe (empty: comparable)."""
    ours = {
        "epochs": config.train_epochs,
        "training images": config.train_subset,
        "batch size": config.train_batch_size,
        "validation split": config.validation_images,
        "test images": config.val_subset or 10000,
    }
    theirs = {
        "epochs": recipe.epochs,
        "training images": recipe.train_images,
        "batch size": recipe.batch_size,
        "validation split": recipe.validation_images,
        "test images": 10000,
    }
    diff = [f"{k} {ours[k]} (ground truth {theirs[k]})" for k in ours if ours[k] != theirs[k]]
    if config.seed not in recipe.seeds:
        diff.append(f"seed {config.seed} (ground truth {', '.join(map(str, recipe.seeds))})")
    return diff


def place(found: Any, matched: list[Any], config: Any, path: Path | None = None) -> Placement:
    """Place the trained ``found`` network (a ``search.app.demo_model.NetworkResult``) on the shipped ground truth."""
    from search.cost import LatencyCost
    from search.ground_truth import SHIPPED, GroundTruth, GroundTruthError, percentile_of
    from search.lut import load_table
    from search.searcher import cost_table
    from search.space import get_space

    try:
        gt = GroundTruth.load(path)
    except GroundTruthError as exc:
        return Placement(False, str(exc))
    diff = recipe_mismatch(config, gt.recipe)
    if diff:
        return Placement(
            False,
            "this run trained with another recipe than the ground truth's: "
            + "; ".join(diff)
            + (" (the full demo, without --quick, uses the ground truth's recipe)" if config.quick else ""),
        )
    if found.accuracy is None:
        return Placement(False, "the found network was not trained")
    space = get_space(gt.recipe.space)
    table = load_table(SHIPPED / Path(gt.meta.get("table", "fbnet-fmnist_host-cpu.table.json")).name)
    reference = cost_table(LatencyCost(table), space)
    ms = reference.arch_cost(space, found.arch.choices)
    window = gt.window_of(ms)
    if window is None:
        spans = ", ".join(f"{w.name} {w.lo_ms:.4f}–{w.hi_ms:.4f} ms" for w in gt.windows.values())
        return Placement(
            False,
            f"on the ground truth's reference table the found network is predicted at {ms:.4f} ms, outside its windows ({spans})",
            found_reference_ms=ms,
        )
    seed = str(config.seed)
    dist = [n.seeds[seed]["test"] for n in gt.networks if n.window == window.name and n.role == "window" and seed in n.seeds]
    if len(dist) < 10:
        return Placement(
            False, f"the ground truth's window {window.name} has only {len(dist)} trained networks yet", found_reference_ms=ms
        )
    best = next((n for n in gt.networks if n.window == window.name and n.role == "max_macs" and seed in n.seeds), None)
    same = [m.accuracy for m in matched if m.accuracy is not None and window.holds(reference.arch_cost(space, m.arch.choices))]
    return Placement(
        True,
        window=window.to_dict(),
        seed=config.seed,
        distribution=dist,
        found_acc=found.accuracy,
        found_reference_ms=ms,
        percentile=percentile_of(found.accuracy, dist),
        max_macs_acc=best.seeds[seed]["test"] if best else None,
        max_macs_percentile=percentile_of(best.seeds[seed]["test"], dist) if best else None,
        max_macs_choices=best.choices if best else [],
        matched_accs=same,
    )


def _placed(p: Placement) -> tuple[float, float, float]:
    """The found network's accuracy, its percentile and the window's mean: what place() sets on a placed network."""
    assert p.placed and p.found_acc is not None and p.percentile is not None and p.window_mean is not None
    return p.found_acc, p.percentile, p.window_mean


def verdict(p: Placement) -> str:
    """The placement in words, saying so when the search does not win."""
    found_acc, percentile, window_mean = _placed(p)
    n = len(p.distribution)
    w = p.window
    text = (
        f"Its test accuracy, {100 * found_acc:.2f}%, is better than **{percentile:.0f}%** of the {n} networks "
        f"drawn uniformly among those the reference table puts in the same latency window ({w['name']}: "
        f"{w['lo_ms']:.4f}–{w['hi_ms']:.4f} ms predicted), trained with the same recipe and seed (window mean "
        f"{100 * window_mean:.2f}%; a random network of the window scores 50% on this figure). "
    )
    if percentile >= 80:
        text += "The search found a network in the top fifth of what this budget allows. "
    elif percentile >= 50:
        text += "The search found a better-than-typical network for this budget, but not a top one. "
    else:
        text += "**The search did worse than a typical network of this budget.** "
    if p.max_macs_acc is not None:
        beaten = found_acc > p.max_macs_acc
        text += (
            f"The network with the most MACs in the window — chosen with no training and no search "
            f"(`hwnas baseline`) — scores {100 * p.max_macs_acc:.2f}% (percentile {p.max_macs_percentile:.0f}): "
            + ("the search beats it." if beaten else "**the search does not beat it.**")
        )
    return text


def plot(p: Placement, path: Path) -> Path:
    """Histogram of the window's accuracies with the found, matched random and max-MACs networks marked."""
    found_acc, percentile, _ = _placed(p)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.hist(
        [100 * a for a in p.distribution],
        bins=20,
        color="0.8",
        edgecolor="0.45",
        label=f"{len(p.distribution)} networks of the window (ground truth)",
    )
    for i, a in enumerate(p.matched_accs):
        ax.axvline(100 * a, c="tab:orange", lw=1.2, ls=":", label="random, matched latency (this run)" if i == 0 else None)
    if p.max_macs_acc is not None:
        ax.axvline(100 * p.max_macs_acc, c="tab:blue", lw=2, label="most MACs in the window (no training)")
    ax.axvline(100 * found_acc, c="red", lw=2.5, label=f"found by the search (percentile {percentile:.0f})")
    ax.set_xlabel(f"test accuracy, % (seed {p.seed})")
    ax.set_ylabel("networks")
    ax.set_title(
        f"Window {p.window['name']}: {p.window['lo_ms']:.4f}–{p.window['hi_ms']:.4f} ms on the reference table", fontsize=9
    )
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
