"""`hwnas demo`'s ``report.md`` and its plots (θ over epochs, accuracy vs predicted latency, predicted vs measured)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.demo import DemoResult, NetworkResult


def _ms(v: float | None) -> str:
    return f"{v:.4f} ms" if v is not None else "–"


def _pct(v: float | None) -> str:
    return f"{v:+.1f}%" if v is not None else "–"


def _acc(v: float | None) -> str:
    return f"{100 * v:.2f}%" if v is not None else "–"


def write_plots(result: "DemoResult", out: Path) -> dict[str, Path]:
    """``plots/theta_heatmap.png``, ``plots/samples.png``, ``plots/predicted_vs_measured.png`` under ``out``."""
    import json

    from search.plots import plot_predicted_vs_measured, plot_samples, plot_theta_heatmap

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    search = out / "search"
    theta = json.loads((search / "theta.json").read_text())
    index = json.loads((search / "samples" / "index.json").read_text())
    refs = [{"label": f"{n.name}, trained from scratch", "cost": n.predicted_ms, "acc": n.accuracy}
            for n in (result.found, result.baseline) if n.accuracy is not None]
    points = [{"predicted": n.predicted_ms, "measured": n.measured_ms, "group": group, "label": label}
              for group, nets in (("samples of softmax(θ)", result.samples), ("found", [result.found]),
                                  ("baseline (all ir_k3_e6)", [result.baseline]))
              for n in nets for label in [n.name if group != "samples of softmax(θ)" else ""]
              if n.measured_ms is not None]
    return {
        "theta": plot_theta_heatmap(theta, plots / "theta_heatmap.png"),
        "samples": plot_samples(index, plots / "samples.png", references=refs,
                                trained_label=f"samples, 1 epoch on {result.config.sample_train_subset} images"),
        "fidelity": plot_predicted_vs_measured(points, plots / "predicted_vs_measured.png",
                                               title="host-cpu: predicted vs measured (whole networks)"),
    }


def fidelity(nets: list["NetworkResult"]) -> dict[str, float]:
    """MAPE and share within ±10% of the predictions over the measured networks."""
    errs = [abs(n.error_pct) for n in nets if n.error_pct is not None]
    if not errs:
        return {}
    return {"n": len(errs), "mape_pct": sum(errs) / len(errs), "within10": sum(e <= 10 for e in errs) / len(errs),
            "max_abs_pct": max(errs)}


def summary_table(result: "DemoResult") -> list[str]:
    """The found architecture against the hand-made baseline, as a markdown table."""
    cfg, f, b = result.config, result.found, result.baseline
    speedup = (f"{b.measured_ms / f.measured_ms:.2f}×" if f.measured_ms and b.measured_ms else "–")
    rows = [
        ("search time", f"{result.search_s:.0f} s ({result.search_epochs} epochs, {cfg.search_subset} images, "
                        f"{cfg.mode} mode)",
         "– (hand-made)"),
        (f"test accuracy (trained from scratch, {cfg.train_epochs} epochs)", _acc(f.accuracy), _acc(b.accuracy)),
        ("predicted latency (table)", _ms(f.predicted_ms), _ms(b.predicted_ms)),
        ("measured latency (whole network)", _ms(f.measured_ms), _ms(b.measured_ms)),
        ("prediction error", _pct(f.error_pct), _pct(b.error_pct)),
        ("measured speed-up over the baseline", speedup, "1.00×"),
        ("MACs", f"{f.mmacs:.2f} M", f"{b.mmacs:.2f} M"),
        ("parameters", f"{f.mparams * 1e3:.1f} k", f"{b.mparams * 1e3:.1f} k"),
        ("training time", f"{f.train_s:.0f} s" if f.train_s else "–", f"{b.train_s:.0f} s" if b.train_s else "–"),
    ]
    lines = ["| | found by the search | baseline (every layer `ir_k3_e6`) |", "|---|---:|---:|"]
    lines += [f"| {a} | {x} | {y} |" for a, x, y in rows]
    return lines


def _layers_table(result: "DemoResult") -> list[str]:
    space = result.found.arch.resolve_space()
    lines = ["| layer | input | out channels | stride | found | baseline |", "|---:|---|---:|---:|---|---|"]
    for layer, f, b in zip(space.layers(), result.found.arch.choices, result.baseline.arch.choices):
        _, c, h, w = layer.in_shape
        lines.append(f"| {layer.index} | {c}×{h}×{w} | {layer.out_channels} | {layer.stride} | `{f}` | `{b}` |")
    return lines


def _samples_table(result: "DemoResult") -> list[str]:
    lines = ["| rank | architecture | predicted | measured | error | accuracy (1 short epoch) | MMACs |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for i, n in enumerate(result.samples):
        acc = n.brief_acc if n.brief_acc is not None else n.supernet_acc
        lines.append(f"| {i} | `{' '.join(n.arch.choices)}`{' (argmax)' if 'argmax' in n.name else ''} | "
                     f"{_ms(n.predicted_ms)} | {_ms(n.measured_ms)} | {_pct(n.error_pct)} | {_acc(acc)} | "
                     f"{n.mmacs:.2f} |")
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
    fid = fidelity([result.found, result.baseline, *result.samples])
    fid_line = (f"Over all {fid['n']} measured networks the table predicts the whole network with a mean absolute "
                f"error of {fid['mape_pct']:.1f}% ({100 * fid['within10']:.0f}% within ±10%, worst "
                f"{fid['max_abs_pct']:.1f}%)." if fid else "No network was measured.")
    lines = [
        "# hwnas demo" + (" (quick)" if cfg.quick else ""),
        "",
        f"One machine, no phone: a `profiler-server` on SQLite ({result.server}), a local `device-agent` for device "
        f"`host-cpu` (ONNX Runtime, 1 thread) that measured the {result.table_entries} operators of the "
        f"`fbnet-fmnist` space (per-model overhead {_ms(result.table_overhead_ms)}), the FBNet search with that "
        f"latency table pulled over HTTP, sampling, training from scratch, ONNX export, and whole-network "
        f"measurements by the same agent.",
        "",
        "## Summary",
        "",
        *summary_table(result),
        "",
        f"Both networks were trained the same way: {cfg.train_epochs} epochs on {cfg.train_subset or 60000} "
        f"Fashion-MNIST training images, tested on {cfg.val_subset or 10000} test images. Predicted latency is the "
        "table's `overhead + Σ (entry − overhead)`; measured latency is the same agent running the exported whole "
        "network with the same protocol (median over shuffled rounds of each burst's minimum).",
        "",
        fid_line,
        "",
        "## The found architecture",
        "",
        *_layers_table(result),
        "",
        "## How the search converged",
        "",
        "Probability of every candidate of every layer over the epochs (softmax θ; the first epochs train the "
        "weights only):",
        "",
        "![θ over epochs](plots/theta_heatmap.png)",
        "",
        "## Sampled architectures",
        "",
        f"Accuracy against predicted latency: every sample trained one epoch from scratch on "
        f"{cfg.sample_train_subset} images (a quick proxy), the found network and the baseline after their full "
        f"training. (One path of a soft super net alone stays near chance accuracy, so the super net itself "
        f"cannot rank them.)",
        "",
        "![accuracy vs predicted latency](plots/samples.png)",
        "",
        *_samples_table(result),
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
        "* `summary.json` — the numbers of this report; `timings.json` — phase timings",
        "* `found.onnx`, `baseline.onnx` — the trained networks; `train/` — their architecture documents, weights "
        "and training logs",
        "* `search/` — the search folder (`config.json`, `theta.json`, `argmax.json`, `samples/`, `plots/`); "
        "`hwnas sample search` and `hwnas train` work on it",
        "* `hwnas.db` — the server's SQLite database; `logs/` — server and agent logs",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
