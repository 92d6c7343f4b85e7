"""`hwnas demo`'s ``report.md`` and its plots (θ over epochs, accuracy vs latency at equal latency, predicted vs measured)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.app.demo_model import RUNTIMES

if TYPE_CHECKING:
    from search.app.demo_model import DemoResult, NetworkResult

# The real comparison with random search: several searches, 10 matched random networks each, two training seeds.
SEARCH_QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "search_quality.py"


def _ms(v: float | None) -> str:
    return f"{v:.4f} ms" if v is not None else "–"


def _pct(v: float | None) -> str:
    return f"{v:+.1f}%" if v is not None else "–"


def _acc(v: float | None) -> str:
    return f"{100 * v:.2f}%" if v is not None else "–"


def _span(values: list[float], fmt) -> str:  # fmt: a formatter of one value
    """``mean (min–max)`` of ``values`` with ``fmt``; ``–`` for none."""
    if not values:
        return "–"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(sum(values) / len(values))} ({fmt(min(values))}–{fmt(max(values))})"


def baseline_ratio(result: "DemoResult") -> float | None:
    """The baseline's measured latency over the found network's (how much slower the baseline is)."""
    f, b = result.found, result.baseline
    return b.measured_ms / f.measured_ms if f.measured_ms and b.measured_ms else None


def baseline_label(result: "DemoResult") -> str:
    """The baseline's name in the report and the plot, with its latency ratio to the found network."""
    ratio = baseline_ratio(result)
    return (
        f"baseline (every layer `ir_k3_e6`), {ratio:.1f}× the found network's latency"
        if ratio
        else "baseline (every layer `ir_k3_e6`)"
    )


def search_quality_link(out: Path) -> str:
    """``benchmarks/search_quality.py`` as a markdown link relative to the report (plain text when not installed)."""
    if SEARCH_QUALITY.is_file():
        return f"[`benchmarks/search_quality.py`]({os.path.relpath(SEARCH_QUALITY, out.resolve())})"
    return "`benchmarks/search_quality.py` (in the hwnas repository)"


def write_plots(result: "DemoResult", out: Path) -> dict[str, Path]:
    """``plots/theta_heatmap.png``, ``plots/equal_latency.png``, ``plots/predicted_vs_measured.png`` under ``out``."""
    import json

    from search.app.plots import plot_accuracy_latency, plot_predicted_vs_measured, plot_theta_heatmap

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    theta = json.loads((out / "search" / "theta.json").read_text())
    cfg = result.config
    nets = [
        {"role": n.role, "measured_ms": n.measured_ms, "acc": n.accuracy}
        for n in (*result.matched, result.found, result.baseline)
    ]
    eq = result.equal_latency()
    gain = (
        f"found {eq['gain_pts']:+.1f} points over the mean of {eq['n']} random networks at its latency"
        if eq
        else "no random network at the found network's latency"
    )
    ratio = baseline_ratio(result)
    labels = {
        "matched": f"random, predicted latency within ±{cfg.match_tol:.0%} of the found one's",
        "baseline": "baseline (all ir_k3_e6)" + (f", {ratio:.1f}× the found latency" if ratio else ""),
    }
    points = [
        {"predicted": n.predicted_ms, "measured": n.measured_ms, "group": group, "label": label, "role": role}
        for group, role, nets_, label in (
            ("random, matched latency", "matched", result.matched, ""),
            ("found", "found", [result.found], "found"),
            ("baseline (all ir_k3_e6)", "baseline", [result.baseline], "baseline"),
        )
        for n in nets_
        if n.measured_ms is not None
    ]
    return {
        "theta": plot_theta_heatmap(theta, plots / "theta_heatmap.png", scale="global", chosen=result.found.arch.choices),
        "equal_latency": plot_accuracy_latency(
            # No target line: the target is a predicted latency and this axis is the measured one.
            nets,
            plots / "equal_latency.png",
            labels=labels,
            title=f"host-cpu, fbnet-fmnist: {gain}\n(every network trained the same way: {cfg.train_epochs} epochs, "
            f"{cfg.train_subset or 60000} images, seed {cfg.seed}; one seed: an illustration)",
            xlabel=f"measured latency, whole network [ms] (host-cpu, {cfg.runtime}, 1 thread)",
            ylabel=f"test accuracy [%] ({cfg.val_subset or 10000} test images)",
        ),
        "fidelity": plot_predicted_vs_measured(
            points, plots / "predicted_vs_measured.png", title="host-cpu: predicted vs measured (whole networks)"
        ),
    }


def fidelity(nets: list["NetworkResult"]) -> dict[str, float]:
    """MAPE and share within ±10% of the predictions over the measured networks."""
    errs = [abs(n.error_pct) for n in nets if n.error_pct is not None]
    if not errs:
        return {}
    return {
        "n": len(errs),
        "mape_pct": sum(errs) / len(errs),
        "within10": sum(e <= 10 for e in errs) / len(errs),
        "max_abs_pct": max(errs),
    }


def summary_table(result: "DemoResult") -> list[str]:
    """The found network, the matched random ones (mean and range) and the baseline, as a markdown table."""
    cfg, f, b, m = result.config, result.found, result.baseline, result.matched
    ratio = baseline_ratio(result)

    def rel(n: "NetworkResult") -> float | None:
        return n.measured_ms / f.measured_ms if n.measured_ms and f.measured_ms else None

    rows = [
        (
            "how it was chosen",
            f"target-latency search, {result.search_s:.0f} s ({result.search_epochs} epochs, "
            f"{cfg.search_subset} images, {cfg.mode} mode)",
            f"uniformly random, predicted latency within ±{cfg.match_tol:.0%} of the found network's",
            "hand-made",
        ),
        (
            f"test accuracy (trained from scratch, {cfg.train_epochs} epochs)",
            _acc(f.accuracy),
            _span([n.accuracy for n in m if n.accuracy is not None], _acc),
            _acc(b.accuracy),
        ),
        ("predicted latency (table)", _ms(f.predicted_ms), _span([n.predicted_ms for n in m], _ms), _ms(b.predicted_ms)),
        (
            "measured latency (whole network)",
            _ms(f.measured_ms),
            _span([n.measured_ms for n in m if n.measured_ms is not None], _ms),
            _ms(b.measured_ms),
        ),
        (
            "prediction error",
            _pct(f.error_pct),
            _span([n.error_pct for n in m if n.error_pct is not None], _pct),
            _pct(b.error_pct),
        ),
        (
            "measured latency relative to the found network",
            "1.00×",
            _span([r for r in map(rel, m) if r is not None], lambda v: f"{v:.2f}×"),
            f"{ratio:.2f}×" if ratio else "–",
        ),
        ("MACs", f"{f.mmacs:.2f} M", _span([n.mmacs for n in m], lambda v: f"{v:.2f} M"), f"{b.mmacs:.2f} M"),
        (
            "parameters",
            f"{f.mparams * 1e3:.1f} k",
            _span([n.mparams * 1e3 for n in m], lambda v: f"{v:.1f} k"),
            f"{b.mparams * 1e3:.1f} k",
        ),
        (
            "training time",
            f"{f.train_s:.0f} s" if f.train_s else "–",
            _span([n.train_s for n in m if n.train_s], lambda v: f"{v:.0f} s"),
            f"{b.train_s:.0f} s" if b.train_s else "–",
        ),
    ]
    lines = [
        f"| | found by the search | random at equal latency ({len(m)}: mean (min–max)) | baseline (every layer `ir_k3_e6`) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {a} | {x} | {y} | {z} |" for a, x, y, z in rows]
    return lines


def dominated_by(found: "NetworkResult", others: list["NetworkResult"]) -> list["NetworkResult"]:
    """The networks among ``others`` measured strictly faster and strictly more accurate than ``found``."""
    if found.measured_ms is None or found.accuracy is None:
        return []
    return [
        n
        for n in others
        if n.measured_ms is not None
        and n.accuracy is not None
        and n.measured_ms < found.measured_ms
        and n.accuracy > found.accuracy
    ]


def equal_latency_section(result: "DemoResult", out: Path) -> list[str]:
    """The found network among random networks of the same predicted latency, and the gain, honestly worded."""
    cfg, f = result.config, result.found
    eq = result.equal_latency()
    lines = ["## At equal latency: found vs random", ""]
    recipe = (
        f"{cfg.train_epochs} epochs on {cfg.train_subset or 60000} training images, seed {cfg.seed}, tested on "
        f"{cfg.val_subset or 10000} test images"
    )
    if eq is None:
        lines += [
            f"No uniformly random architecture fell within ±{cfg.match_tol:.0%} of the found network's predicted "
            f"latency ({_ms(f.predicted_ms)}), so there is nothing to compare it with at equal latency.",
            "",
        ]
    else:
        beats = {0: "none of them", eq["n"]: "all of them"}.get(eq["beats"], f"{eq['beats']} of them")
        lines += [
            f"The search was asked for **{_ms(result.target_ms)}** ({cfg.target_share:.0%} of the baseline's predicted "
            f"latency) and shipped a network predicted at {_ms(f.predicted_ms)}, measured at {_ms(f.measured_ms)}. "
            f"Next to it, {eq['n']} architectures drawn uniformly at random among those whose predicted latency is "
            f"within ±{cfg.match_tol:.0%} of the found one's — what random search gives at the same latency — were "
            f"trained with exactly the same recipe ({recipe}) and measured whole by the same agent in the same "
            f"network job.",
            "",
            f"**Gain at equal latency: {eq['gain_pts']:+.2f} accuracy points** — the found network "
            f"{_acc(eq['found_acc'])}, the random networks {_acc(eq['random_mean_acc'])} on average "
            f"(min–max {_acc(eq['random_min_acc'])}–{_acc(eq['random_max_acc'])}); the found network beats {beats}.",
            "",
        ]
        dominating = dominated_by(f, result.matched)
        if dominating:
            lines += [
                f"**The found network is dominated:** {len(dominating)} of the {len(result.matched)} random "
                f"networks ({', '.join(m.name for m in dominating)}) measured faster *and* scored more accurate "
                f"than it. In this run the search shipped a network that random search beat on both counts.",
                "",
            ]
        from search.search_result import UNMOVED_ENTROPY

        if result.theta_entropy > UNMOVED_ENTROPY:
            lines += [
                f"The search warned that θ barely moved (mean normalised entropy {result.theta_entropy:.2f}; 1.0 "
                f"is uniform): its found network is then not far from a random draw itself, so a gain near zero "
                f"is what to expect from this run"
                f"{' (`--quick` searches too briefly to learn; the full demo searches longer)' if cfg.quick else ''}.",
                "",
            ]
        ratio = eq["random_mean_measured_ms"] / f.measured_ms if eq["random_mean_measured_ms"] and f.measured_ms else None
        if ratio is not None and abs(ratio - 1) > 0.10:
            lines += [
                f"Measured, though, the random networks take {ratio:.2f}× the found network's time on average: "
                f"the table's predictions were off in this run (see *Predicted vs measured latency* below — "
                f"typically a table measured while other work loaded the machine), so the latencies are equal "
                f"as predicted, not as measured.",
                "",
            ]

    lines += [
        "| network | architecture | predicted | measured | accuracy | MMACs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for n, label in ((f, "**found**"), *((m, m.name) for m in result.matched), (result.baseline, baseline_label(result))):
        lines.append(
            f"| {label} | `{' '.join(n.arch.choices)}` | {_ms(n.predicted_ms)} | {_ms(n.measured_ms)} | "
            f"{_acc(n.accuracy)} | {n.mmacs:.2f} |"
        )
    lines += [
        "",
        "![accuracy vs measured latency](plots/equal_latency.png)",
        "",
        "Random networks at the found network's latency in orange, the found network as the red star, the baseline in "
        "blue (it is not at equal latency: it shows what the latency was traded against); the dashed line is the "
        "random networks' Pareto front.",
        "",
        f"**Read this as an illustration, not as evidence.** It is {len(result.matched)} random networks, one search "
        f"and one training seed on a short recipe. At this scale another training seed, or another run of the demo "
        f"(each run measures its table afresh, which changes the search's path), can move a network's accuracy by a "
        f"few points, as much as the gap above or more. Whether the search beats random search at equal latency is "
        f"measured by "
        f"{search_quality_link(out)}: several budgets and search seeds, 10 matched random networks per found one, "
        f"two training seeds each, a bootstrap confidence interval, and the same picture "
        f"(`benchmarks/results/search_quality.png`).",
        "",
    ]
    return lines


def ground_truth_section(result: "DemoResult", out: Path) -> list[str]:
    """The found network's percentile among the ground truth's networks of its latency window, with a histogram."""
    from search.app.demo_ground_truth import plot, verdict

    p = result.placement
    lines = ["## Among what this latency allows", ""]
    if p is None:
        return []
    if not p.placed:
        return lines + [f"Not placed on the ground truth of search quality: {p.reason}.", ""]
    plot(p, out / "plots" / "ground_truth.png")
    return lines + [
        verdict(p),
        "",
        "![the found network on its window's distribution](plots/ground_truth.png)",
        "",
        "The ground truth (`search/ground_truth_data/`, built by `benchmarks/ground_truth.py`) was trained "
        "once on the reference host-CPU table's windows; `benchmarks/search_judged.py` places many searches "
        "on it with intervals.",
        "",
    ]


def _layers_table(result: "DemoResult") -> list[str]:
    space = result.found.arch.resolve_space()
    argmax: Sequence[str | None] = result.argmax or [None] * space.num_layers
    lines = ["| layer | input | out channels | stride | found | argmax of θ | baseline |", "|---:|---|---:|---:|---|---|---|"]
    for layer, f, a, b in zip(space.layers(), result.found.arch.choices, argmax, result.baseline.arch.choices):
        _, c, h, w = layer.in_shape
        lines.append(
            f"| {layer.index} | {c}×{h}×{w} | {layer.out_channels} | {layer.stride} | `{f}` | {f'`{a}`' if a else '–'} | `{b}` |"
        )
    return lines


def _timings_table(timings: dict[str, Any]) -> list[str]:
    lines = ["| phase | wall | CPU (demo process) |", "|---|---:|---:|"]
    for name, t in timings.get("phases", {}).items():
        lines.append(f"| {name} | {t['wall_s']:.1f} s | {t['cpu_s']:.1f} s |")
    lines.append(f"| **total** | **{timings.get('total_s', 0):.1f} s** | |")
    return lines


def write_report(result: "DemoResult", out: Path, timings: dict[str, Any]) -> Path:
    """Write the plots and ``out/report.md``; returns the report's path."""
    write_plots(result, out)
    cfg = result.config
    fid = fidelity([result.found, *result.matched, result.baseline])
    fid_line = (
        f"Over all {fid['n']} measured networks the table predicts the whole network with a mean absolute "
        f"error of {fid['mape_pct']:.1f}% ({100 * fid['within10']:.0f}% within ±10%, worst "
        f"{fid['max_abs_pct']:.1f}%)."
        if fid
        else "No network was measured."
    )
    c = result.table_calibration
    if c is not None:
        # Predictions are calibrated; say on what, so the fidelity above is not read as the raw table's.
        fid_line += (
            f" Predictions use the table's calibration, fitted on {c['networks']} other random networks measured "
            f"whole right after the operators: measured ≈ {c['scale']:.3f} × table sum "
            f"{'+' if c['offset_ms'] >= 0 else '−'} {_ms(abs(c['offset_ms']))} (on those networks the error fell from {c['mape_before']:.1f}% to "
            f"{c['mape_after']:.1f}%)."
        )
    argmax_line = ""
    if result.argmax and result.argmax != result.found.arch.choices and result.argmax_ms is not None:
        argmax_line = (
            f" The argmax of θ (every layer's favourite) would have been predicted at "
            f"{_ms(result.argmax_ms)}, {result.argmax_ms / result.target_ms:.2f}× the target: the search "
            f"ships the most likely architecture within ±2% of the target instead (`search/found.json`)."
        )
    warnings = [f"* warning from the search: {w}" for w in result.search_warnings]
    lines = [
        "# hwnas demo" + (" (quick)" if cfg.quick else ""),
        "",
        f"One machine, no phone: a `profiler-server` on SQLite ({result.server}), a local `device-agent` for device "
        f"`host-cpu` ({RUNTIMES[cfg.runtime]}, 1 thread) that measured the {result.table_entries} operators of the "
        f"`fbnet-fmnist` space (per-model overhead {_ms(result.table_overhead_ms)}), a target-latency FBNet search "
        f"with that latency table pulled over HTTP, random networks of the same predicted latency, training from "
        f"scratch, ONNX export, and whole-network measurements by the same agent.",
        "",
        "## Summary",
        "",
        *summary_table(result),
        "",
        f"Every network was trained the same way: {cfg.train_epochs} epochs on {cfg.train_subset or 60000} "
        f"Fashion-MNIST training images, seed {cfg.seed}, tested on {cfg.val_subset or 10000} test images. Predicted "
        "latency is the table's `overhead + Σ (entry − overhead)`; measured latency is the same agent running the "
        "exported whole network with the same protocol (median over shuffled rounds of each burst's minimum).",
        "",
        fid_line,
        "",
        *equal_latency_section(result, out),
        *ground_truth_section(result, out),
        "## The found architecture",
        "",
        f"Target {_ms(result.target_ms)}; found network predicted at {_ms(result.found.predicted_ms)}.{argmax_line}",
        "",
        *_layers_table(result),
        "",
        "## How the search converged",
        "",
        f"Probability of every candidate of every layer over the epochs (softmax θ; the first epochs train the "
        f"weights only). Each panel's colours run from that layer's lowest to its highest probability (the range is "
        f"in its title), so small moves show; the red box marks the found network's choice. Mean normalised entropy "
        f"of θ at the end: {result.theta_entropy:.2f} (1.0 is uniform).",
        "",
        *warnings,
        *([""] if warnings else []),
        "![θ over epochs](plots/theta_heatmap.png)",
        "",
        "## Predicted vs measured latency",
        "",
        "![predicted vs measured](plots/predicted_vs_measured.png)",
        "",
        "## Timings",
        "",
        *_timings_table(timings),
        "",
        "## Files",
        "",
        "* `summary.json` — the numbers of this report (`equal_latency`: the comparison above); `timings.json` — phase timings",
        "* `found.onnx`, `baseline.onnx` — the trained networks; `train/` — the architecture documents, weights and "
        "training logs of every trained network (found, `random-*`, baseline)",
        "* `search/` — the search folder (`config.json`, `theta.json`, `found.json`, `argmax.json`, `plots/`); "
        "`hwnas sample search` and `hwnas train` work on it",
        "* `hwnas.db` — the server's SQLite database; `logs/` — server and agent logs",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
