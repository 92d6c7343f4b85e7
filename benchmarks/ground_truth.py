"""Build the ground truth of search quality (issue 22): trained networks filling each budget window.

For each window (25% and 35% of the all-``ir_k3_e6`` baseline's predicted latency on the host-CPU table of
``search_quality``, ±5%): ``--per-window`` networks drawn uniformly among the table's networks inside it
(``search.ground_truth.sample_window``), plus the window's zero-training baselines (most MACs, most params:
``search.count_baseline``). Every one is trained with the recipe (``search.ground_truth.Recipe``: 4 epochs on
5,000 images, SGD one-cycle, seeds 0 and 1) and scored on the 10,000-image validation split and the test split;
then all are measured whole by the local agent in one sitting, beside the table's calibration networks.

Resumable: the data file (``search/ground_truth_data/fbnet-fmnist_host-cpu.json``, shipped with the package) is
rewritten after every training, so a build may be stopped (Ctrl-C, a session's end) and resumed any number of
times; each network trains both seeds before the next starts, alternating windows, so a partial file is balanced.

    python benchmarks/ground_truth.py                 # hours on 2 cores; resumable
    python benchmarks/ground_truth.py --quick         # ~2 min: 3 networks, 1 epoch, scratch file
    python benchmarks/ground_truth.py --measure       # measure whole networks now (trains nothing)

Prints a one-line summary last; the figures on the data are in ``benchmarks/search_judged.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from search.ground_truth import SHIPPED, GroundTruth, Network, Recipe, Window, table_fingerprint  # noqa: E402

SOURCE_TABLE = HERE / "results" / "search_quality_work" / "table.json"
TABLE = SHIPPED / "fbnet-fmnist_host-cpu.table.json"
DATA = SHIPPED / "fbnet-fmnist_host-cpu.json"
QUICK_DATA = HERE / ".work" / "ground_truth_quick" / "ground_truth.json"
SHARES, TOL, BASELINE = (0.25, 0.35), 0.05, "ir_k3_e6"


def _log(t0: float, text: str) -> None:
    print(f"[{time.perf_counter() - t0:7.0f}s] {text}", flush=True)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def costs_of(table_path: Path) -> tuple[Any, Any, Any, Any]:
    """(space, latency, MACs and params cost tables) of fbnet-fmnist under the table."""
    from search.cost import FlopsCost, LatencyCost, ParamsCost
    from search.lut import load_table
    from search.searcher import cost_table
    from search.space import get_space

    space = get_space("fbnet-fmnist")
    return (
        space,
        cost_table(LatencyCost(load_table(table_path)), space),
        cost_table(FlopsCost(), space),
        cost_table(ParamsCost(), space),
    )


def plan(path: Path, recipe: Recipe, shares: tuple[float, ...], per_window: int) -> GroundTruth:
    """The networks to train (kept in the file; a rerun with more per window or windows adds to it)."""
    from search.arch import Architecture
    from search.count_baseline import most_under
    from search.ground_truth import sample_window

    if not TABLE.is_file():
        TABLE.parent.mkdir(parents=True, exist_ok=True)
        TABLE.write_text(SOURCE_TABLE.read_text())
    space, lat, macs, params = costs_of(TABLE)
    candidates = [layer.candidates for layer in space.layers()]
    sha = table_fingerprint(lat)
    gt = (
        GroundTruth.load(path, recipe=recipe, table_sha256=sha)
        if path.is_file()
        else GroundTruth(
            recipe,
            sha,
            {},
            [],
            {
                "table": str(TABLE.relative_to(ROOT)),
                "commits": [_commit()],
                "device": "host-cpu",
                "runtime": "onnxruntime",
                "threads": 1,
            },
        )
    )
    base = lat.arch_cost(space, [BASELINE] * space.num_layers)
    known = {(n.window, n.id) for n in gt.networks}

    def add(choices: list[str], window: Window, role: str) -> None:
        arch_id = Architecture(space=space.name, choices=choices, input_size=space.input_shape[-1], classes=space.classes).id
        if (window.name, arch_id) not in known:
            known.add((window.name, arch_id))
            gt.networks.append(
                Network(
                    arch_id,
                    choices,
                    window.name,
                    role,
                    macs.arch_cost(space, choices),
                    params.arch_cost(space, choices),
                    lat.arch_cost(space, choices),
                )
            )

    for share in shares:
        w = Window(share, TOL, share * base)
        gt.windows.setdefault(w.name, w)
        for by, table in (("macs", macs), ("params", params)):
            add(most_under(lat, table, candidates, w.lo_ms, w.hi_ms, by).choices, w, f"max_{by}")
        have = sum(1 for n in gt.networks if n.window == w.name and n.role == "window")
        if have < per_window:
            # The same seed every time: a larger --per-window extends the same uniform draw.
            for choices in sample_window(lat, candidates, w.lo_ms, w.hi_ms, per_window, seed=round(1000 * share)):
                add(choices, w, "window")
    gt.save(path)
    return gt


def _train(choices: list[str], seed: int, recipe: dict[str, Any]) -> dict[str, float]:
    from search.ground_truth import train_on_recipe

    return train_on_recipe(choices, seed, Recipe.from_dict(recipe), num_threads=1)


def train_all(gt: GroundTruth, path: Path, workers: int, t0: float, limit_s: float | None) -> int:
    """Train every (network, seed) not yet in the file, saving after each; returns how many were trained."""
    order = {"max_macs": 0, "max_params": 0, "window": 1}
    by_window: dict[str, list[Network]] = {}
    for n in sorted(gt.networks, key=lambda n: order.get(n.role, 2)):
        by_window.setdefault(n.window, []).append(n)
    interleaved = [n for group in _zip_longest(*by_window.values()) for n in group]
    todo = [(n, s) for n in interleaved for s in gt.recipe.seeds if str(s) not in n.seeds]
    _log(t0, f"train: {len(todo)} (network, seed) trainings to go, {workers} processes")
    done = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        running: dict[Any, tuple[Network, int]] = {}
        queue = list(todo)
        while queue or running:
            while queue and len(running) < workers and (limit_s is None or time.perf_counter() - t0 < limit_s):
                n, s = queue.pop(0)
                running[pool.submit(_train, n.choices, s, gt.recipe.to_dict())] = (n, s)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                n, s = running.pop(f)
                n.seeds[str(s)] = f.result()
                done += 1
                gt.save(path)
                _log(
                    t0,
                    f"train {done}/{len(todo)}: {n.window} {n.role} {n.id} seed {s}: val "
                    f"{n.seeds[str(s)]['val']:.4f} test {n.seeds[str(s)]['test']:.4f} "
                    f"({n.seeds[str(s)]['seconds']:.0f} s)",
                )
    return done


def _zip_longest(*lists: list[Network]) -> list[list[Network]]:
    return [[lst[i] for lst in lists if i < len(lst)] for i in range(max(map(len, lists), default=0))]


def measure(gt: GroundTruth, path: Path, t0: float) -> None:
    """Every network measured whole in one sitting, with the table's calibration networks beside them."""
    from search_quality import Lab, _reference  # the benchmark's own lab and calibration networks

    from hwnas.schemas import JobCreate
    from search.arch import Architecture
    from search.app.demo import measured_ms
    from search.lut import wait_for_job
    from search.space import get_space
    from search.validate import network_spec

    space = get_space(gt.recipe.space)
    work = HERE / ".work" / "ground_truth_lab"
    refs = _reference(HERE / "results" / "search_quality_work")
    nets = list({n.id: n.choices for n in gt.networks}.items()) + [(r["id"], r["choices"]) for r in refs]
    nets = list(dict(nets).items())
    with Lab(work) as lab, lab.client() as c:
        specs = [
            network_spec(Architecture(space=space.name, choices=ch, input_size=space.input_shape[-1], classes=space.classes))
            for _, ch in nets
        ]
        _log(t0, f"measure: {len(specs)} whole networks ({len(refs)} of them the table's calibration networks)")
        job = wait_for_job(
            c,
            c.create_job(JobCreate(device="host-cpu", runtime="onnxruntime", threads=1, networks=specs, force=True)).id,
            timeout_s=7200,
        )
        table = c.get_networks("host-cpu", "onnxruntime", 1)
    got = {i: measured_ms(table.entries[i]) for i, _ in nets if i in table.entries}
    for n in gt.networks:
        n.measured_ms = got.get(n.id)
    ratios = sorted(got[r["id"]] / r["ms"] for r in refs if r["id"] in got and r["ms"] > 0)
    gt.meta["speed_drift"] = ratios[len(ratios) // 2] if ratios else None  # > 1: slower than when the table was built
    gt.meta["measured_at_commit"] = _commit()
    gt.meta["measure_job"] = job.id
    gt.save(path)
    _log(t0, f"measured {len(got)} of {len(nets)}; speed drift {gt.meta['speed_drift']}")


def write_figures(gt: GroundTruth, counts: dict[str, int], reliability: float | None, complete: bool) -> None:
    """results/ground_truth.json: how big and how repeatable the ground truth is (targets from issue 22)."""
    import statistics

    from search.ground_truth import pearson

    every = [(n.seeds["0"]["test"], n.seeds["1"]["test"]) for w in gt.windows for n in gt.trained(w)]
    targets = {"networks_per_window": ">= 100", "seed_reliability": ">= 0.6"}
    figs: dict[str, Any] = {
        "networks_per_window": min(counts.values()) if counts else 0,
        "seed_reliability": reliability,  # mean over windows of the within-window Pearson
        "seed_reliability_pooled": pearson([p[0] for p in every], [p[1] for p in every]) if len(every) >= 3 else None,
        "measured": sum(n.measured_ms is not None for n in gt.networks),
        "speed_drift": gt.meta.get("speed_drift"),
    }
    for w in sorted(gt.windows):
        accs = [100 * a for a in gt.accuracies(w)]
        if len(accs) > 1:
            figs[f"{w}_mean_pct"] = statistics.fmean(accs)
            figs[f"{w}_sd_pts"] = statistics.stdev(accs)
        figs[f"{w}_seed_reliability"] = gt.seed_reliability(window=w)
        seeds = [abs(n.seeds["0"]["test"] - n.seeds["1"]["test"]) * 100 for n in gt.trained(w)]
        if seeds:  # |seed 0 − seed 1|: the per-seed noise, in points (its SD is this mean × √π/2)
            figs[f"{w}_seed_gap_mean_pts"] = statistics.fmean(seeds)
    met = {k: figs[k] is not None and figs[k] >= float(t.split()[1]) for k, t in targets.items()}
    (HERE / "results" / "ground_truth.json").write_text(
        json.dumps(
            {
                "figures": figs,
                "targets": targets,
                "met": met,
                "complete": complete,
                "recipe": gt.recipe.to_dict(),
                "table_sha256": gt.table_sha256,
                "meta": gt.meta,
            },
            indent=1,
        )
        + "\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 networks, 1 epoch on 1,000 images: a scratch file")
    p.add_argument("--per-window", type=int, default=100, help="uniform networks per window (default 100)")
    p.add_argument("--windows", default=None, help="comma-separated shares of the baseline (default 0.25,0.35)")
    p.add_argument("--workers", type=int, default=2, help="training processes, one torch thread each")
    p.add_argument("--limit-min", type=float, default=None, help="start no training after this many minutes")
    p.add_argument("--measure", action="store_true", help="measure every network whole now, train nothing")
    p.add_argument("--no-measure", action="store_true", help="do not measure once training is done")
    args = p.parse_args()
    t0 = time.perf_counter()
    recipe = Recipe(epochs=1, train_images=1000, seeds=(0, 1)) if args.quick else Recipe()
    path = QUICK_DATA if args.quick else DATA
    shares = tuple(float(s) for s in args.windows.split(",")) if args.windows else ((0.35,) if args.quick else SHARES)
    gt = plan(path, recipe, shares, 3 if args.quick else args.per_window)
    trained = 0
    if not args.measure:
        trained = train_all(gt, path, args.workers, t0, None if args.limit_min is None else 60 * args.limit_min)
    commit = _commit()
    if trained and commit not in gt.meta.setdefault("commits", []):
        gt.meta["commits"].append(commit)  # every build session that added to the file
        gt.save(path)
    complete = all(str(s) in n.seeds for n in gt.networks for s in gt.recipe.seeds)
    if args.measure or (complete and not args.no_measure and not args.quick and any(n.measured_ms is None for n in gt.networks)):
        measure(gt, path, t0)
    counts = {w: len(gt.trained(w)) for w in gt.windows}
    rel = gt.seed_reliability()
    if not args.quick:
        write_figures(gt, counts, rel, complete)
    print(
        f"ground_truth{' (quick)' if args.quick else ''}: trained with every seed {counts} "
        f"({trained} trainings this run); seed reliability {'-' if rel is None else format(rel, '.2f')}; "
        f"measured {sum(n.measured_ms is not None for n in gt.networks)}/{len(gt.networks)}; "
        f"{'complete' if complete else 'PARTIAL'}; {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
