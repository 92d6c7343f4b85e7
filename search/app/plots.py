"""Plots of a search folder (PNG, matplotlib without a display).

* ``theta_heatmap.png`` — the sampling probability of every candidate of every layer over the
  epochs (one band per layer), the picture of how the distribution converges;
* ``theta_final.png`` — layers × candidates, the final distribution;
* ``cost_accuracy.png`` — expected cost (and the argmax architecture's cost) with the super net's
  accuracies over the epochs;
* ``samples.png`` — accuracy vs predicted cost of the sampled architectures (after ``hwnas sample``);
* ``plot_predicted_vs_measured`` — predicted against measured latency (whole networks), y = x and ±10%;
* ``plot_accuracy_latency`` — accuracy against measured latency of a found network among random ones, in the
  visual language of ``benchmarks/search_quality.png`` (random grey, matched random orange, found red star,
  baseline blue, random Pareto front dashed).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _theta_ranges(epochs: list[dict], n_layers: int) -> list[tuple[float, float]]:
    """Lowest and highest probability of every layer over all epochs and candidates."""
    out = []
    for layer in range(n_layers):
        values = [v for e in epochs for v in e["probabilities"][layer]]
        out.append((min(values), max(values)))
    return out


THETA_SCALES: tuple[str, ...] = ("layer", "global")


def plot_theta_heatmap(theta: dict, path: Path, scale: str = "global", chosen: list[str] | None = None) -> Path:
    """One panel per layer: the probability of each candidate (rows) over the epochs (columns).

    The colours fit the data, so that a θ that moved only a little still shows which way it moved
    (a fixed 0–1 scale paints a near-uniform θ, 1/K everywhere, as one flat colour):

    * ``scale="global"`` (default): one numbered scale from the lowest to the highest probability present in
      any layer, so one colour is one probability in every panel;
    * ``scale="layer"``: every panel runs from that layer's lowest to its highest probability over the
      epochs, and its title gives the range (shows small moves of a near-uniform θ; colours differ by panel).

    ``chosen``: one candidate per layer (e.g. the network the search ships), outlined in the last epoch.
    """
    if scale not in THETA_SCALES:
        raise ValueError(f"scale must be one of {', '.join(THETA_SCALES)}, not {scale!r}")
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    epochs = theta["epochs"]
    cands = theta["candidates"]
    n_layers = len(cands)
    ncols = min(n_layers, 3 if n_layers <= 9 else 4 if n_layers <= 16 else 6)
    nrows = (n_layers + ncols - 1) // ncols
    rows_per_panel = max(len(c) for c in cands)
    panel_h = 0.17 * rows_per_panel + 0.7
    panel_w = max(2.4, 0.22 * len(epochs) + 1.4)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_w * ncols + 1.4, panel_h * nrows + 0.9), squeeze=False)
    ranges = _theta_ranges(epochs, n_layers)
    g_lo, g_hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    warm = [e["epoch"] for e in epochs if e.get("phase") == "warmup"]
    cmap = "viridis"
    for layer in range(nrows * ncols):
        ax = axes[layer // ncols][layer % ncols]
        if layer >= n_layers:
            ax.axis("off")
            continue
        names = cands[layer]
        data = np.array([[e["probabilities"][layer][i] for e in epochs] for i in range(len(names))])
        lo, hi = ranges[layer] if scale == "layer" else (g_lo, g_hi)
        flat = hi - lo < 1e-6
        if flat:  # nothing moved: the middle of the scale, said in the title
            lo, hi = lo - 0.5, hi + 0.5
        ax.imshow(
            data,
            aspect="auto",
            cmap=cmap,
            vmin=lo,
            vmax=hi,
            interpolation="nearest",
            extent=(0.5, len(epochs) + 0.5, len(names) - 0.5, -0.5),
        )
        if warm:
            ax.axvline(max(warm) + 0.5, color="white", linewidth=1.0, linestyle="--")
        if chosen is not None and chosen[layer] in names:
            row = names.index(chosen[layer])
            ax.add_patch(Rectangle((len(epochs) - 0.5, row - 0.5), 1.0, 1.0, fill=False, edgecolor="red", linewidth=1.4))
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names if layer % ncols == 0 or len(set(map(tuple, cands))) > 1 else [], fontsize=6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        ax.tick_params(axis="x", labelsize=7)
        if scale == "layer":
            span = "uniform, never moved" if flat else f"p {ranges[layer][0]:.3f}–{ranges[layer][1]:.3f}"
            ax.set_title(f"layer {layer}: {span}", fontsize=7)
        else:
            ax.set_title(f"layer {layer}", fontsize=8)
        if layer // ncols == nrows - 1 or layer + ncols >= n_layers:
            ax.set_xlabel("epoch", fontsize=7)
    notes = [f"dashed: end of warm-up (epoch {max(warm)})"] if warm else []
    if chosen is not None:
        notes.append("red box: the shipped network's choice")
    fig.suptitle(
        f"softmax(θ) per layer over the epochs — {theta.get('space', '')}, {theta.get('mode', '')} mode, "
        f"{theta.get('cost', '')} cost" + (f"\n{'; '.join(notes)}" if notes else ""),
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 0.88, 0.95 if notes else 0.97))
    cax = fig.add_axes((0.9, 0.15, 0.015, 0.7))
    if scale == "layer":
        bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=cmap), cax=cax, ticks=[0.0, 1.0])
        bar.ax.set_yticklabels(["layer's\nlowest", "layer's\nhighest"], fontsize=7)
        bar.set_label("probability, scaled per layer (range in each title)", fontsize=8)
    else:
        lo, hi = (g_lo, g_hi) if g_hi - g_lo >= 1e-6 else (g_lo - 0.5, g_hi + 0.5)
        fig.colorbar(ScalarMappable(Normalize(lo, hi), cmap=cmap), cax=cax, label="probability (range present)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_theta_final(theta: dict, path: Path) -> Path:
    """Final distribution: layers (rows) × candidates (columns), probabilities written in the cells."""
    cands = theta["candidates"]
    probs = theta["epochs"][-1]["probabilities"]
    names = list(dict.fromkeys(n for layer in cands for n in layer))
    data = np.full((len(cands), len(names)), np.nan)
    for layer, (layer_names, p) in enumerate(zip(cands, probs)):
        for name, v in zip(layer_names, p):
            data[layer, names.index(name)] = v
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(names) + 2), max(3.0, 0.45 * len(cands) + 1.5)))
    # 0 to the highest probability present (not to 1): a θ that stayed near uniform still shows its leaders.
    vmax = max(float(np.nanmax(data)), 1e-6)
    im = ax.imshow(data, cmap="magma", vmin=0.0, vmax=vmax, aspect="auto")
    for (r, c), v in np.ndenumerate(data):
        if not np.isnan(v):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 * vmax else "black")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(cands)))
    ax.set_yticklabels([f"layer {i}" for i in range(len(cands))], fontsize=8)
    ax.set_title(f"final softmax(θ) after {theta['epochs'][-1]['epoch']} epochs")
    fig.colorbar(im, ax=ax, label="probability (0 to the highest present)", fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cost_accuracy(theta: dict, path: Path, target: float | None = None) -> Path:
    """Expected cost under softmax(θ) and the argmax cost (left axis), accuracies (right axis), per epoch;
    ``target``: the search's cost target, drawn as a line."""
    epochs = theta["epochs"]
    x = [e["epoch"] for e in epochs]
    unit = theta.get("unit", "")
    fig, ax = plt.subplots(figsize=(7, 4.6))
    ax.plot(x, [e["expected_cost"] for e in epochs], "o-", color="tab:blue", label="expected cost (softmax θ)")
    ax.plot(x, [e["argmax_cost"] for e in epochs], "s--", color="tab:cyan", label="argmax architecture")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{theta.get('cost', 'cost')} [{unit}]", color="tab:blue")
    if target is not None:
        ax.axhline(target, color="tab:blue", linestyle=":", linewidth=1.2, label=f"target ({target:.4g} {unit})")
    ax2 = ax.twinx()
    ax2.plot(x, [e["train_acc"] for e in epochs], "^-", color="tab:orange", label="train acc (weights split)")
    th = [(e["epoch"], e["theta_acc"]) for e in epochs if e.get("theta_acc") is not None]
    if th:
        ax2.plot(*zip(*th), "v-", color="tab:red", label="θ-split acc")
    ax2.plot(x, [e["val_acc"] for e in epochs], "D-", color="tab:green", label="val acc (super net)")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    # Below the axes: inside, the legend hid the last epochs' points.
    ax.legend(
        lines[0] + lines2[0],
        lines[1] + lines2[1],
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=3,
        frameon=False,
    )
    ax.set_title("expected cost and accuracy over the search")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_samples(
    index: dict, path: Path, references: list[dict] | None = None, trained_label: str = "trained from scratch"
) -> Path:
    """Accuracy vs predicted cost of the sampled architectures (super-net accuracy, and trained accuracy if any).

    ``references``: extra labelled points ``{"label", "cost", "acc"}`` (e.g. a hand-made baseline trained the same way);
    ``trained_label``: the legend of the samples' trained accuracy (say how briefly they were trained).
    """
    samples = index["samples"]
    cost = index["cost"]
    unit = index.get("unit", "")
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, marker, label in (("supernet_acc", "o", "in the super net (shared weights)"), ("trained_acc", "s", trained_label)):
        pts = [(s["predicted"][cost], s[key]) for s in samples if s.get(key) is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, label=label, alpha=0.8)
    for s in samples:
        if s.get("argmax"):
            acc = s.get("trained_acc") if s.get("trained_acc") is not None else s.get("supernet_acc")
            if acc is not None:
                ax.scatter(
                    [s["predicted"][cost]], [acc], marker="*", s=220, color="gold", edgecolor="black", label="argmax", zorder=5
                )
    for i, ref in enumerate(references or []):
        ax.scatter(
            [ref["cost"]], [ref["acc"]], marker="P", s=140, color=f"C{3 + i}", edgecolor="black", label=ref["label"], zorder=5
        )
    ax.set_xlabel(f"predicted {cost} [{unit}]")
    ax.set_ylabel("accuracy")
    ax.set_title("sampled architectures")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_predicted_vs_measured(points: list[dict], path: Path, title: str = "predicted vs measured latency") -> Path:
    """Scatter of predicted against measured latency with the y = x line and a ±10% band.

    ``points``: ``{"predicted": ms, "measured": ms}``, optionally ``"label"`` (annotated next to the point),
    ``"group"`` (one colour and legend entry per group) and ``"role"`` (a ``ROLE_STYLE`` role: the group gets that
    role's colour and marker, the same as in every other plot).
    """
    fig, ax = plt.subplots(figsize=(5.5, 5))
    groups = list(dict.fromkeys(p.get("group", "networks") for p in points))
    others = iter(OTHER_COLOURS)
    for group in groups:
        pts = [p for p in points if p.get("group", "networks") == group]
        role = pts[0].get("role")
        style = (
            {"color": ROLE_STYLE[role]["c"], "marker": ROLE_STYLE[role]["marker"], "s": min(ROLE_STYLE[role].get("s", 30), 120)}
            if role in ROLE_STYLE
            else {"color": next(others)}
        )
        ax.scatter(
            [p["measured"] for p in pts],
            [p["predicted"] for p in pts],
            label=group,
            alpha=0.85,
            edgecolor="black",
            linewidth=0.4,
            zorder=3,
            **style,
        )
        for p in pts:
            if p.get("label"):  # to the left of points in the right third, so the text stays inside the axes
                right = values_hi(points) - p["measured"] < 0.33 * (values_hi(points) - values_lo(points) or 1.0)
                ax.annotate(
                    p["label"],
                    (p["measured"], p["predicted"]),
                    textcoords="offset points",
                    xytext=(-4, 4) if right else (4, 4),
                    ha="right" if right else "left",
                    fontsize=7,
                )
    values = [v for p in points for v in (p["predicted"], p["measured"])]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = 0.08 * (hi - lo or hi or 1.0)
    lo, hi = max(0.0, lo - pad), hi + pad
    line = np.linspace(lo, hi, 2)
    ax.plot(line, line, "k-", linewidth=1, label="y = x")
    ax.fill_between(line, 0.9 * line, 1.1 * line, color="grey", alpha=0.15, label="±10%")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency [ms]")
    ax.set_ylabel("predicted latency (table) [ms]")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def values_lo(points: list[dict]) -> float:
    return min((v for p in points for v in (p["predicted"], p["measured"])), default=0.0)


def values_hi(points: list[dict]) -> float:
    return max((v for p in points for v in (p["predicted"], p["measured"])), default=1.0)


# Colours for groups that are none of the roles; none of them is a role's colour.
OTHER_COLOURS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:green", "0.3", "gold")

ROLE_STYLE: dict[str, dict] = {  # shared with benchmarks/search_quality.png
    "random": dict(c="0.6", marker="o", s=22, label="random (unconstrained)"),
    "matched": dict(
        c="tab:orange", marker="o", s=30, edgecolors="k", linewidths=0.3, label="random, matched predicted latency (±5%)"
    ),
    "found": dict(c="red", marker="*", s=240, edgecolors="k", linewidths=0.6, label="found by the search"),
    "baseline": dict(c="tab:blue", marker="s", s=60, label="baseline"),
}


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(latency, accuracy) points that no other point beats in both, ordered by latency."""
    front, best = [], -float("inf")
    for lat, acc in sorted(points):
        if acc > best:
            front.append((lat, acc))
            best = acc
    return front


def plot_accuracy_latency(
    nets: list[dict],
    path: Path,
    title: str = "accuracy vs measured latency",
    target_ms: float | None = None,
    labels: dict[str, str] | None = None,
    xlabel: str = "measured latency [ms]",
    ylabel: str = "test accuracy [%]",
) -> Path:
    """Accuracy (%) against measured latency (ms), one style per role, as in ``benchmarks/search_quality.png``.

    ``nets``: ``{"role": "random" | "matched" | "found" | "baseline", "measured_ms", "acc"}`` (acc in 0–1);
    ``labels`` overrides a role's legend text; ``target_ms`` draws the search's latency target. The random
    Pareto front (dashed) is drawn once there are two random networks or more.
    """
    fig, ax = plt.subplots(figsize=(7, 5))
    for role in ("random", "matched", "found", "baseline"):
        pts = [n for n in nets if n["role"] == role and n.get("measured_ms") is not None and n.get("acc") is not None]
        if pts:
            style = dict(ROLE_STYLE[role])
            style["label"] = (labels or {}).get(role, style["label"])
            ax.scatter(
                [n["measured_ms"] for n in pts], [100 * n["acc"] for n in pts], zorder=4 if role == "found" else 3, **style
            )
    rand = [
        (n["measured_ms"], 100 * n["acc"])
        for n in nets
        if n["role"] in ("random", "matched") and n.get("measured_ms") is not None and n.get("acc") is not None
    ]
    if len(rand) >= 2:
        front = pareto_front(rand)
        ax.step(
            [p[0] for p in front],
            [p[1] for p in front],
            where="post",
            c="0.3",
            ls="--",
            lw=1,
            label="random Pareto front",
            zorder=2,
        )
    if target_ms is not None:
        ax.axvline(target_ms, c="red", alpha=0.25, lw=1, label=f"latency target ({target_ms:.4f} ms, predicted)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_search(out: str | Path) -> list[Path]:
    """Every plot a search folder has the data for, into ``DIR/plots/``."""
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    written = []
    theta_path = out / "theta.json"
    if theta_path.is_file():
        theta = _load(theta_path)
        if theta.get("epochs"):
            written += [
                plot_theta_heatmap(theta, plots / "theta_heatmap.png"),
                plot_theta_final(theta, plots / "theta_final.png"),
                plot_cost_accuracy(theta, plots / "cost_accuracy.png", target=_search_target(out)),
            ]
    index_path = out / "samples" / "index.json"
    if index_path.is_file():
        written.append(plot_samples(_load(index_path), plots / "samples.png"))
    return written


def _search_target(out: Path) -> float | None:
    """The target of a search folder's target loss (``config.json``), else None."""
    config = out / "config.json"
    if not config.is_file():
        return None
    objective = _load(config).get("objective") or {}
    return objective.get("target") if objective.get("loss") == "target" else None
