"""How good is what the search finds, among what its latency budget allows? (issue 22)

Every search is judged on the ground truth (``search/ground_truth_data``, built by ``benchmarks/ground_truth.py``):
≥ 100 networks drawn uniformly inside each budget window, trained with one recipe on two seeds. The searches are
``search_quality``'s (``hwnas search --target-ms``, soft mode, target loss, 8 epochs on 5,000 images; budgets 25%
and 35% of the all-``ir_k3_e6`` baseline), on the same table; each found network is trained here with the ground
truth's recipe and seeds, so it is one more draw to place on its window's distribution.

Figures and targets are declared here, before any run, and nothing is split after the results are in:

* ``ground_truth_networks_per_window`` (fewest in any window, every seed trained) ≥ 100;
  ``ground_truth_seed_reliability`` (Pearson of the two seeds' test accuracies) ≥ 0.6.
* ``found_percentile_median``: the found network's percentile of test accuracy (2-seed mean) in its window;
  null 50 (a random network of the window). Target ≥ 80 (the super-net issue's).
* ``gain_vs_matched_random_pts``: found − window mean, accuracy points, mean over searches, with a t-interval over
  searches (``gain_t_ci_low_pts``/``gain_t_ci_high_pts``; ``searches`` ≥ 12 wanted). Null 0. Target: low > 0.
* ``gain_vs_max_macs_pts``: found − the window's most-MACs network (``hwnas baseline``), mean over searches. Null:
  the same for a random network of the window (``null_gain_vs_max_macs_pts``). Target > 0.
* ``rank_spearman_macs`` / ``_params`` / ``_theta`` / ``_supernet``: within-window Spearman with test accuracy of
  MACs, params, θ's log-probability beyond the budget prior (final θ of each search), and the super net's accuracy
  (BN recomputed per path; only for searches whose checkpoint is still on disk). Null 0. Target (supernet) ≥ 0.6.
* ``pick_gain_vs_random_pick_pts``: ``hwnas sample --at-target``'s procedure (found + K draws from θ inside the ±2%
  target window, picked on the validation split) against K+1 uniform draws of the same window picked the same way
  (its exact expectation over the ground truth), both at test. Null 0.
* ``target_error_pct``: mean |measured / target − 1| of the found networks (whole-network measurements of
  ``search_quality``, drift-corrected by the table's calibration networks measured beside them). Target ≤ 5.
* ``dominated_share`` and ``theta_entropy_norm`` are reported with their nulls, not as targets.

    python benchmarks/search_judged.py              # trains the found networks and picks (resumable), reports
    python benchmarks/search_judged.py --report-only

Writes benchmarks/results/search_judged.json and search_judged.png; prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from search.ground_truth import SHIPPED, GroundTruth, Recipe, table_fingerprint  # noqa: E402
from search.stats import expected_best_pick, spearman, t_interval  # noqa: E402
from search_quality import _met, _read, _write  # noqa: E402 - the benchmarks' own helpers

SEARCHES = HERE / "results" / "search_quality_work"
WORK = HERE / "results" / "search_judged_work"
RESULTS = HERE / "results" / "search_judged.json"
PLOT = HERE / "results" / "search_judged.png"
TABLE = SHIPPED / "fbnet-fmnist_host-cpu.table.json"
PICK_K = 4
TARGETS = {
    "ground_truth_networks_per_window": ">= 100",
    "ground_truth_seed_reliability": ">= 0.6",
    "searches": ">= 12",
    "found_percentile_median": ">= 80",
    "gain_t_ci_low_pts": "> 0",
    "gain_vs_max_macs_pts": "> 0",
    "rank_spearman_supernet": ">= 0.6",
    "target_error_pct": "<= 5",
}


def load() -> tuple[GroundTruth, Any, Any, dict[str, dict[str, Any]]]:
    """The ground truth (checked against the recipe and the table), the space, its latency costs, the searches."""
    from search.cost import LatencyCost
    from search.lut import load_table
    from search.searcher import cost_table
    from search.space import get_space

    space = get_space("fbnet-fmnist")
    lat = cost_table(LatencyCost(load_table(TABLE)), space)
    gt = GroundTruth.load(recipe=Recipe(), table_sha256=table_fingerprint(lat))
    searches = {}
    for folder in sorted((SEARCHES / "search").glob("b*_soft_s*")):
        res = _read(folder / "result.json")
        if res is None:
            continue
        cfg = _read(folder / "config.json") or {}
        target = _target_of(cfg)
        window = gt.window_of(target) if target else None
        if window is not None:
            searches[folder.name] = {**res, "target_ms": target, "window": window.name, "dir": str(folder)}
    return gt, space, lat, searches


def _target_of(cfg: dict[str, Any]) -> float | None:
    from search.search_config import flat_options

    return flat_options(cfg).get("target")


# ---- more searches, and their super nets scored while their checkpoints exist -----------------------
def _search_and_score(out: str, target_ms: float, seed: int, window_nets: list[list[str]]) -> str:
    """One search_quality search (same table, schedule and sizes), then every ground-truth network of its window
    scored inside its super net (BN recalibrated per child, on training images it never saw)."""
    from search_quality import Settings, _search_task

    from dataclasses import asdict

    _search_task(out, str(SEARCHES / "table.json"), target_ms, seed, asdict(Settings()))
    path = Path(out) / "supernet_ground_truth.json"
    saved = _read(path) or {}
    if (Path(out) / "checkpoint.pt").is_file() and len(saved) < len(window_nets):
        from search.arch import Architecture
        from search.specialise import ChildScorer

        scorer = ChildScorer(Path(out), calib_images=500, val_images=2000)
        for choices in window_nets:
            i = Architecture(space="fbnet-fmnist", choices=choices, input_size=28, classes=10).id
            saved.setdefault(i, scorer.score(choices))
        _write(path, saved)
    return out


def run_searches(gt: GroundTruth, seeds: int, workers: int, t0: float) -> None:
    """search_quality's searches for seeds 0..seeds−1 of every window that has none yet (resumable)."""
    tasks = []
    for name, w in sorted(gt.windows.items()):
        nets = [n.choices for n in gt.trained(w.name)]
        for seed in range(seeds):
            out = SEARCHES / "search" / f"{name}_soft_s{seed}"
            if (
                not (out / "result.json").is_file()
                or not (out / "supernet_ground_truth.json").is_file()
                and (out / "checkpoint.pt").is_file()
            ):
                tasks.append((str(out), w.centre_ms, seed, nets))
    print(f"[{time.perf_counter() - t0:6.0f}s] searches: {len(tasks)} to run", flush=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(_search_and_score, *t) for t in tasks]:
            done = f.result()
            print(f"[{time.perf_counter() - t0:6.0f}s] search done: {done}", flush=True)


# ---- training found networks and picks with the ground truth's recipe ----------------------------
def _train(choices: list[str], seed: int) -> dict[str, float]:
    from search.ground_truth import train_on_recipe

    return train_on_recipe(choices, seed, Recipe(), num_threads=1)


def pick_candidates(searches: dict[str, dict[str, Any]], space: Any, lat: Any) -> dict[str, list[list[str]]]:
    """Per search: the found network and PICK_K distinct draws from its final θ inside the ±2% target window."""
    from search.sample import _load_run, _target_draws

    path = WORK / "picks.json"
    saved = _read(path) or {}
    for name, s in searches.items():
        if name not in saved:
            run = _load_run(Path(s["dir"]))
            probs = run["theta"]["epochs"][-1]["probabilities"]
            cands = [layer.candidates for layer in space.layers()]
            saved[name] = [list(c) for c in _target_draws(run, probs, cands, lat, space, PICK_K, seed=0)]
    _write(path, saved)
    return saved


def train_needed(gt: GroundTruth, nets: list[list[str]], workers: int, t0: float) -> dict[str, dict[str, Any]]:
    """Train (resumably) every network not yet in the ground truth or in WORK/trained.json."""
    from search.arch import Architecture

    path = WORK / "trained.json"
    trained: dict[str, dict[str, Any]] = _read(path) or {}
    seeds = [str(s) for s in gt.recipe.seeds]
    todo = []
    for choices in nets:
        arch_id = Architecture(space="fbnet-fmnist", choices=choices, input_size=28, classes=10).id
        known = gt.find(arch_id)
        entry = trained.setdefault(arch_id, {"choices": choices, "seeds": {}})
        if known is not None:
            entry["seeds"].update(known.seeds)
        todo += [(arch_id, s) for s in seeds if s not in entry["seeds"] and (arch_id, s) not in todo]
    print(f"[{time.perf_counter() - t0:6.0f}s] train: {len(todo)} trainings with the ground truth's recipe", flush=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_train, trained[i]["choices"], int(s)): (i, s) for i, s in todo}
        for n, f in enumerate(futures):
            i, s = futures[f]
            trained[i]["seeds"][s] = f.result()
            _write(path, trained)
            print(
                f"[{time.perf_counter() - t0:6.0f}s] train {n + 1}/{len(todo)}: {i} seed {s}: test "
                f"{trained[i]['seeds'][s]['test']:.4f}",
                flush=True,
            )
    _write(path, trained)
    return trained


# ---- figures -------------------------------------------------------------------------------------
def _mean(entry: dict[str, Any] | None, seeds: list[str], split: str = "test") -> float | None:
    if entry is None or any(s not in entry["seeds"] for s in seeds):
        return None
    return sum(entry["seeds"][s][split] for s in seeds) / len(seeds)


def theta_beyond_prior(search_dir: Path, members: list[Any], target: float) -> list[float]:
    """log P(network | final θ) − log P(network | the budget prior at the search's target)."""
    import numpy as np

    from search.budget import budget_logits
    from search.sample import log_probability

    doc, costs = _read(search_dir / "theta.json"), _read(search_dir / "costs.json")
    names, theta = doc["candidates"], doc["epochs"][-1]["probabilities"]
    prior = []
    for row in budget_logits(costs["layer_costs"], costs["fixed"], target):
        e = np.exp(np.asarray(row) - max(row))
        prior.append((e / e.sum()).tolist())
    return [log_probability(n.choices, theta, names) - log_probability(n.choices, prior, names) for n in members]


def figures(
    gt: GroundTruth,
    searches: dict[str, dict[str, Any]],
    trained: dict[str, dict[str, Any]],
    picks: dict[str, list[list[str]]],
    space: Any,
    lat: Any,
) -> dict[str, Any]:
    from search.arch import Architecture

    seeds = [str(s) for s in gt.recipe.seeds]
    aid = lambda c: Architecture(space="fbnet-fmnist", choices=c, input_size=28, classes=10).id  # noqa: E731
    per_window = {w: gt.trained(w) for w in gt.windows}
    dist = {w: [n.mean("test", gt.recipe.seeds) for n in nets] for w, nets in per_window.items()}
    macs_best = {w: next((n for n in gt.networks if n.window == w and n.role == "max_macs"), None) for w in gt.windows}
    macs_acc = {w: (n.mean("test", gt.recipe.seeds) if n else None) for w, n in macs_best.items()}
    rows = []
    for name, s in sorted(searches.items()):
        w = s["window"]
        acc = _mean(trained.get(aid(s["found"])), seeds)
        row: dict[str, Any] = {
            "search": name,
            "window": w,
            "found": aid(s["found"]),
            "test_acc": acc,
            "theta_entropy": s.get("theta_entropy"),
            "target_ms": s["target_ms"],
        }
        if acc is not None and len(dist[w]) >= 10:
            row["percentile"] = gt.percentile(w, acc)
            row["gain_vs_window_mean_pts"] = 100 * (acc - sum(dist[w]) / len(dist[w]))
            if macs_acc[w] is not None:
                row["gain_vs_max_macs_pts"] = 100 * (acc - macs_acc[w])
        members = per_window[w]
        if len(members) >= 10:
            learned = theta_beyond_prior(Path(s["dir"]), members, s["target_ms"])
            row["rank_spearman_theta"] = spearman(learned, [n.mean("test", gt.recipe.seeds) for n in members])
            sn = _read(Path(s["dir"]) / "supernet_ground_truth.json") or {}
            pairs = [(sn[n.id], n.mean("test", gt.recipe.seeds)) for n in members if n.id in sn]
            row["rank_spearman_supernet"] = spearman(*zip(*pairs)) if len(pairs) >= 10 else None
        # Picking by training, at equal cost: the θ picks against uniform picks from the same ±2% window.
        cands = [trained.get(aid(c)) for c in picks.get(name, [])]
        if cands and all(_mean(c, seeds) is not None for c in cands):
            best = max(cands, key=lambda c: _mean(c, seeds, "val"))
            near = [n for n in members if abs(n.predicted_ms / s["target_ms"] - 1) <= 0.02]
            uniform = expected_best_pick(
                [n.mean("val", gt.recipe.seeds) for n in near], [n.mean("test", gt.recipe.seeds) for n in near], len(cands)
            )
            if uniform is not None:
                row["pick_test_acc"] = _mean(best, seeds)
                row["pick_gain_vs_random_pick_pts"] = 100 * (_mean(best, seeds) - uniform)
                row["random_pick_pool"] = len(near)
        rows.append(row)

    def col(key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]

    gains = col("gain_vs_window_mean_pts")
    ci = t_interval(gains) if gains else None
    window_rank = {}
    for w, nets in per_window.items():
        accs = [n.mean("test", gt.recipe.seeds) for n in nets]
        if len(nets) >= 10:
            window_rank[w] = {"macs": spearman([n.macs for n in nets], accs), "params": spearman([n.params for n in nets], accs)}
    null_macs = [100 * (sum(dist[w]) / len(dist[w]) - macs_acc[w]) for w in gt.windows if macs_acc[w] is not None and dist[w]]
    counts = [len(v) for v in per_window.values()]
    figs: dict[str, Any] = {
        "ground_truth_networks_per_window": min(counts) if counts else 0,
        "ground_truth_seed_reliability": gt.seed_reliability(),
        "ground_truth_window_mean_pct": {w: 100 * sum(d) / len(d) for w, d in dist.items() if d},
        "ground_truth_window_sd_pts": {w: 100 * _sd(d) for w, d in dist.items() if len(d) > 1},
        "max_macs_pct": {w: None if a is None else 100 * a for w, a in macs_acc.items()},
        "max_macs_percentile": {w: gt.percentile(w, a) for w, a in macs_acc.items() if a is not None and dist[w]},
        "searches": len(gains),
        "found_percentile_median": _median(col("percentile")),
        "found_percentile_null": 50.0,
        "gain_vs_matched_random_pts": ci.mean if ci else None,
        "gain_t_ci_low_pts": ci.low if ci else None,
        "gain_t_ci_high_pts": ci.high if ci else None,
        "gain_vs_max_macs_pts": _avg(col("gain_vs_max_macs_pts")),
        "null_gain_vs_max_macs_pts": _avg(null_macs),
        "rank_spearman_macs": _avg([r["macs"] for r in window_rank.values()]),
        "rank_spearman_params": _avg([r["params"] for r in window_rank.values()]),
        "rank_spearman_by_window": window_rank,
        "rank_spearman_theta": _avg(col("rank_spearman_theta")),
        "rank_spearman_supernet": _avg(col("rank_spearman_supernet")),
        "rank_null": 0.0,
        "pick_gain_vs_random_pick_pts": _avg(col("pick_gain_vs_random_pick_pts")),
        "theta_entropy_norm": _avg(col("theta_entropy")),
        **target_error(searches),
        **dominated(gt, searches, trained, aid, seeds),
    }
    return {"figures": figs, "per_search": rows}


def _sd(v: list[float]) -> float:
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def _avg(v: list[float]) -> float | None:
    return sum(v) / len(v) if v else None


def _median(v: list[float]) -> float | None:
    import statistics

    return statistics.median(v) if v else None


def target_error(searches: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Measured target error of the found networks, from search_quality's one-sitting measurements."""
    from search.arch import Architecture

    measured = _read(SEARCHES / "measured.json") or {}
    refs = (_read(SEARCHES / "validation" / "validation.json") or {}).get("networks", [])
    ratios = sorted(measured[r["arch_id"]] / r["measured_ms"] for r in refs if r["arch_id"] in measured)
    drift = ratios[len(ratios) // 2] if ratios else 1.0
    errs = []
    for s in searches.values():
        i = Architecture(space="fbnet-fmnist", choices=s["found"], input_size=28, classes=10).id
        if i in measured:
            errs.append(100 * abs(measured[i] / (drift * s["target_ms"]) - 1))
    return {"target_error_pct": _avg(errs), "target_error_networks": len(errs), "speed_drift": drift}


def dominated(
    gt: GroundTruth, searches: dict[str, dict[str, Any]], trained: dict[str, dict[str, Any]], aid: Any, seeds: list[str]
) -> dict[str, Any]:
    """Share of found networks some window network beats in test accuracy at no more predicted latency; the null is
    the same share for each window network against the others."""
    out_found, out_null = [], []
    for s in searches.values():
        acc = _mean(trained.get(aid(s["found"])), seeds)
        nets = gt.trained(s["window"])
        if acc is None or not nets:
            continue
        ms = next((n.predicted_ms for n in gt.networks if n.id == aid(s["found"])), None) or s.get("found_cost")
        out_found.append(any(n.mean("test", gt.recipe.seeds) > acc and n.predicted_ms <= ms for n in nets))
    for w in gt.windows:
        nets = gt.trained(w)
        for a in nets:
            out_null.append(
                any(
                    b is not a
                    and b.mean("test", gt.recipe.seeds) > a.mean("test", gt.recipe.seeds)
                    and b.predicted_ms <= a.predicted_ms
                    for b in nets
                )
            )
    return {"dominated_share": _avg([float(x) for x in out_found]), "dominated_share_null": _avg([float(x) for x in out_null])}


def plot(gt: GroundTruth, rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = sorted(gt.windows)
    fig, axes = plt.subplots(1, len(windows), figsize=(6 * len(windows), 4.2), squeeze=False)
    for ax, w in zip(axes[0], windows):
        accs = [100 * a for a in gt.accuracies(w)]
        if accs:
            ax.hist(accs, bins=20, color="0.75", edgecolor="0.4", label=f"{len(accs)} uniform networks of the window")
        mm = next((n for n in gt.networks if n.window == w and n.role == "max_macs"), None)
        if mm and mm.mean("test", gt.recipe.seeds) is not None:
            ax.axvline(100 * mm.mean("test", gt.recipe.seeds), c="tab:blue", lw=2, label="most MACs (no training)")
        for i, r in enumerate(x for x in rows if x["window"] == w and x.get("test_acc") is not None):
            ax.axvline(100 * r["test_acc"], c="red", ls="--", lw=1.2, label="found by the search" if i == 0 else None)
        ax.set_title(f"{w}: {gt.windows[w].lo_ms:.4f}–{gt.windows[w].hi_ms:.4f} ms (predicted)", fontsize=9)
        ax.set_xlabel("test accuracy, % (mean of 2 seeds)")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report-only", action="store_true", help="figures of what is trained now; trains nothing")
    p.add_argument("--workers", type=int, default=2, help="training processes (one torch thread each)")
    p.add_argument(
        "--seeds",
        type=int,
        default=6,
        help="search seeds per window (default 6: 12 searches); the "
        "missing ones are run first (~15 min each on one core), resumably",
    )
    args = p.parse_args()
    t0 = time.perf_counter()
    if not args.report_only:
        run_searches(load()[0], args.seeds, args.workers, t0)
    gt, space, lat, searches = load()
    picks = pick_candidates(searches, space, lat)
    nets = [s["found"] for s in searches.values()] + [c for name in sorted(picks) for c in picks[name]]
    trained = (_read(WORK / "trained.json") or {}) if args.report_only else train_needed(gt, nets, args.workers, t0)
    out = figures(gt, searches, trained, picks, space, lat)
    f = out["figures"]
    out.update(
        targets=TARGETS,
        met={k: _met(f.get(k), t) for k, t in TARGETS.items()},
        recipe=gt.recipe.to_dict(),
        seconds=time.perf_counter() - t0,
        complete=f["ground_truth_networks_per_window"] >= 100 and f["searches"] >= 12,
    )
    _write(RESULTS, out)
    plot(gt, out["per_search"], PLOT)

    def fmt(k: str, spec: str = "+.2f") -> str:
        return "-" if f.get(k) is None else format(f[k], spec)

    print(
        f"search_judged: {f['searches']} searches; found percentile median {fmt('found_percentile_median', '.0f')} "
        f"(null 50); gain vs window mean {fmt('gain_vs_matched_random_pts')} pts (t-CI {fmt('gain_t_ci_low_pts')}.."
        f"{fmt('gain_t_ci_high_pts')}); vs max-MACs {fmt('gain_vs_max_macs_pts')} (null "
        f"{fmt('null_gain_vs_max_macs_pts')}); spearman macs {fmt('rank_spearman_macs')} theta "
        f"{fmt('rank_spearman_theta')} supernet {fmt('rank_spearman_supernet')} (null 0); pick gain "
        f"{fmt('pick_gain_vs_random_pick_pts')}; target error {fmt('target_error_pct', '.1f')}%; ground truth "
        f"{f['ground_truth_networks_per_window']}/window, seed r {fmt('ground_truth_seed_reliability', '.2f')}"
        f"{'' if out['complete'] else ' (PARTIAL)'}"
    )


if __name__ == "__main__":
    main()
