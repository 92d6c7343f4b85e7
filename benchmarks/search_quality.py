"""Does the search find better networks than random search at the same latency? (issue 11)

On ``fbnet-fmnist`` with the host-CPU table built by the local agent (``device-agent run --local``,
ONNX Runtime, 1 thread; calibrated on whole networks by ``hwnas validate --calibrate``):

1. **table** — server + agent; a profiling job for every operator of the space, then a validation
   job (20 uniform random networks and 10 near each budget, measured whole) whose linear calibration
   is stored with the table.
2. **search** — budgets at ``--budgets`` (default 25% and 35%) of the all-``ir_k3_e6`` baseline's
   predicted latency × ``--seeds`` search seeds: ``hwnas search --target-ms`` (soft mode, target
   loss, default schedule). The found network is what the search ships (``found.json``: the most
   likely architecture within ±2% of the target). Plus one short soft and one short hard search
   with the same settings, timed, for ``hard_vs_soft_search_time``.
3. **networks** — for every found network, ``--matched`` uniformly random architectures whose
   predicted latency is within ±5% of its own (drawn until enough match), ``--random``
   unconstrained uniformly random ones, and the baseline.
4. **measure** — every network measured whole by the agent (one network job), nothing else running.
5. **train** — every network from scratch with one recipe (``--train-epochs`` on
   ``--train-images`` images, SGD one-cycle), ``--train-seeds`` seeds each, tested on all 10,000
   test images; plus a learning-curve check: the baseline and two found networks at twice the
   epochs (the recipe is long enough when doubling it changes little and keeps the order).
6. **figures** and ``results/search_quality.png``.

Figures: ``gain_vs_matched_random_pts`` (found − matched random, mean over all pairs, accuracy points,
each network's accuracy the mean of its training seeds), ``gain_ci_low_pts`` (95% lower bound,
hierarchical bootstrap: searches, then their matched networks), ``found_beats_random_share`` (share
of matched pairs the found one wins, ties half), ``dominated_share`` (share of found networks that
some random network beats in accuracy and measured latency both), ``target_error_pct`` (mean
|measured / target − 1| of the found networks), ``theta_entropy_norm`` (mean per-layer entropy /
log K at the end), ``hard_vs_soft_search_time``. Two diagnostics say why the gain is what it is:
``theta_rank_corr`` (does θ, beyond what the cost alone says, rank a search's equal-latency networks by
their trained accuracy?) and ``supernet_rank_corr`` (does the super net θ learns from?).

Every step is saved as it finishes under ``--workdir`` (default ``benchmarks/results/search_quality_work``,
whose small JSON files are committed: weights, checkpoints, the server's database and logs are not):
a rerun continues where it stopped, in this session or a later one. ``--workers 2`` runs searches and trainings in two processes.

    python benchmarks/search_quality.py            # hours on 2 cores; resumable
    python benchmarks/search_quality.py --quick    # ≤ 5 min: one budget, one seed, few networks

Writes benchmarks/results/search_quality.json (+ .png) and prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from search.stats import spearman, win_share  # noqa: E402

RESULTS = HERE / "results" / "search_quality.json"
PLOT = HERE / "results" / "search_quality.png"
SPACE, DATA, DEVICE, RUNTIME, THREADS = "fbnet-fmnist", "fashion-mnist", "host-cpu", "onnxruntime", 1
BASELINE = "ir_k3_e6"
# dominated_share and theta_entropy_norm are reported, not targets (issue 22): the same dominated share for a matched
# random network against the other random ones is 0.93, and the decision term forces the entropy down whatever the
# evidence. The judgement against what each budget allows is benchmarks/search_judged.py's.
TARGETS = {
    "gain_ci_low_pts": "> 0",
    "found_beats_random_share": ">= 0.75",
    "target_error_pct": "<= 5",
    "hard_vs_soft_search_time": "<= 0.5",
}


@dataclass(frozen=True)
class Settings:
    """Sizes of one run (full or quick); saved with the results."""

    # Low budgets, where the choices matter most: under the 2026-12-03 table 0.9% of uniform draws cost ≤ 25% of
    # the baseline and 8.9% ≤ 35%. At 50% (the first full run) found networks lost to matched ones by 0.67 points.
    budgets: tuple[float, ...] = (0.25, 0.35)
    seeds: int = 3
    matched: int = 10
    random: int = 20
    match_tol: float = 0.05
    # Soft: a hard-mode super net (one random path per step) is still near chance after 8 epochs on 5,000 images
    # (measured: 15–27% at the end of the hard searches kept under search/b50_s*), so its θ follows the cost alone.
    search_mode: str = "soft"
    search_epochs: int = 8
    search_images: int = 5000
    search_batch: int = 64
    train_epochs: int = 4
    train_images: int = 5000
    train_seeds: int = 2
    test_images: int | None = None  # all 10,000
    curve_networks: int = 3  # the baseline and two found networks at twice the epochs
    timing_epochs: int = 2

    @classmethod
    def quick(cls) -> "Settings":
        return cls(
            budgets=(0.5,),
            seeds=1,
            matched=2,
            random=2,
            search_epochs=2,
            search_images=800,
            search_batch=64,
            train_epochs=1,
            train_images=1000,
            train_seeds=1,
            test_images=1000,
            curve_networks=0,
            timing_epochs=2,
            validation_networks=8,
            calibration_near=3,
        )

    validation_networks: int = 20
    calibration_near: int = 10  # per budget, measured with the validation networks


def _met(value: float | None, target: str) -> bool:
    if value is None:  # a figure the run could not compute misses its target
        return False
    op, num = target.split()
    return {">=": value >= float(num), "<=": value <= float(num), ">": value > float(num), "<": value < float(num)}[op]


def _log(t0: float, text: str) -> None:
    print(f"[{time.perf_counter() - t0:7.0f}s] {text}", flush=True)


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)  # a killed run never leaves half a file behind


# ---- 1 and 4: the server and the agent --------------------------------------------------------
class Lab:
    """The profiler server (SQLite in the work folder) and a local agent, up only while measuring."""

    def __init__(self, work: Path) -> None:
        from search.app.demo_services import Services

        self.services = Services(work / "lab")
        self.services.workdir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> "Lab":
        from search.app.demo_services import device_registered

        s = self.services
        self.url = s.start_server()
        self.client_token = s.create_token("sq-client", "client")
        s.start_agent(s.create_token("sq-agent", "agent"), DEVICE, RUNTIME, THREADS, ["--poll-s", "1"])
        s.wait_for(lambda: device_registered(self.url, self.client_token, DEVICE), "agent", 120.0, f"device {DEVICE!r}")
        # The agent measures while other work may share the 2 cores: ahead of everything else (root only), its
        # bursts are not stretched by whoever else runs.
        try:
            os.setpriority(os.PRIO_PGRP, s.get("agent").pid, -10)
        except (PermissionError, OSError):
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        self.services.stop()

    def client(self) -> Any:
        from hwnas.client import ProfilerClient

        return ProfilerClient(self.url, token=self.client_token)


def build_table(work: Path, t0: float, s: Settings) -> Path:
    """The calibrated host-CPU table of the space, as a file (``--lut``) the searches read.

    The calibration is fitted on ``validation_networks`` uniform networks plus ``calibration_near`` networks
    near each budget: uniform draws sit around 58% of the baseline's latency, and a straight line fitted there
    was 25% off for the networks the search aims at (25% budget, ~40 µs).
    """
    path = work / "table.json"
    if path.is_file():
        return path
    from search.cost import LatencyCost
    from search.lut import fetch_table, request_measurements, wait_for_job
    from search.random_search import matched_random
    from search.searcher import cost_table
    from search.space import get_space
    from search.validate import ValidateConfig, run_validation

    space = get_space(SPACE)
    with Lab(work) as lab:
        keys = space.op_keys()
        _log(t0, f"table: {len(keys)} operators of {SPACE} on {DEVICE}")
        with lab.client() as c:
            job = wait_for_job(c, request_measurements(c, DEVICE, RUNTIME, THREADS, keys).id, timeout_s=1800)
            if job.failed:
                raise RuntimeError(f"profiling job {job.id}: {job.failed} operators failed")
        raw = cost_table(
            LatencyCost(
                fetch_table(lab.url, DEVICE, runtime=RUNTIME, threads=THREADS, token=lab.client_token, cache_dir=work / "cache")
            ),
            space,
        )
        base = raw.arch_cost(space, [BASELINE] * space.num_layers)
        near = [
            choices
            for i, b in enumerate(s.budgets)
            for choices in matched_random(raw, space, b * base, s.calibration_near, s.match_tol, seed=1000 + i)
        ]
        report = run_validation(
            ValidateConfig(
                server=lab.url,
                device=DEVICE,
                space=SPACE,
                n=s.validation_networks,
                calibrate=True,
                extra=near,
                token=lab.client_token,
                out=work / "validation",
            ),
            log=lambda text: _log(t0, text),
        )
        cal = report.calibration or {}
        _log(
            t0,
            f"calibration on {len(report.rows)} networks ({len(near)} near the budgets): scale "
            f"{cal.get('scale', 1):.3f}, offset {cal.get('offset_ms', 0):+.4f} ms; MAPE "
            f"{report.uncalibrated.mape:.1f}% before, {cal['test_after'].mape:.1f}% after (test half)",
        )
        table = fetch_table(lab.url, DEVICE, runtime=RUNTIME, threads=THREADS, token=lab.client_token, cache_dir=work / "cache")
    table.save(path)
    return path


# ---- 2: searches (worker processes) ------------------------------------------------------------
def _search_name(budget: float, seed: int, mode: str) -> str:
    """``b50_s0`` for the hard-mode searches of the first runs, ``b50_soft_s0`` for soft ones."""
    return f"b{round(100 * budget)}_s{seed}" if mode == "hard" else f"b{round(100 * budget)}_{mode}_s{seed}"


def _group_mode(group: str) -> str:
    return group.split("_")[1] if group.count("_") == 2 else "hard"


def _search_task(
    out: str, lut: str, target_ms: float, seed: int, s: dict[str, Any], mode: str | None = None, epochs: int | None = None
) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from search.search_config import SearchConfig
    from search.searcher import run_search

    done = Path(out) / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    resume = (Path(out) / "checkpoint.pt").is_file()
    config = SearchConfig.from_flat(
        out=out,
        space=SPACE,
        data=DATA,
        cost="latency",
        lut=lut,
        loss="target",
        target=target_ms,
        mode=mode or s["search_mode"],
        epochs=epochs or s["search_epochs"],
        subset=s["search_images"],
        batch_size=s["search_batch"],
        val_subset=1000,
        seed=seed,
        num_threads=1,
        progress=False,
        plots=False,
        resume=resume,
    )
    result = run_search(config)
    return result.summary()


# ---- 5: training (worker processes) ------------------------------------------------------------
def _train_task(
    report: str, choices: list[str], seed: int, epochs: int, images: int, test: int | None, every_epoch: bool = False
) -> float:
    import torch

    torch.set_num_threads(1)
    from search.arch import Architecture
    from search.space import get_space
    from search.train import TrainConfig, train_arch

    path = Path(report)
    if path.is_file():
        return float(json.loads(path.read_text())["accuracy"])
    space = get_space(SPACE)
    arch = Architecture(space=SPACE, choices=choices, input_size=space.input_shape[-1], classes=space.classes)
    cfg = TrainConfig(
        data=DATA,
        epochs=epochs,
        subset=images,
        val_subset=test,
        seed=seed,
        num_threads=1,
        progress=False,
        eval_every_epoch=every_epoch,
    )
    stem = path.name.removesuffix(".train.json")
    return train_arch(arch, cfg, out_dir=path.parent, stem=stem).accuracy


def _run_all(pool: ProcessPoolExecutor | None, tasks: list[tuple[Any, tuple]], t0: float, what: str) -> list[Any]:
    """Run ``tasks`` (fn, args) in the pool (or here), logging each as it finishes."""
    if pool is None:
        out = []
        for i, (fn, args) in enumerate(tasks):
            out.append(fn(*args))
            _log(t0, f"{what} {i + 1}/{len(tasks)}")
        return out
    futures = [pool.submit(fn, *args) for fn, args in tasks]
    for i, f in enumerate(futures):
        f.result()
        _log(t0, f"{what} {i + 1}/{len(tasks)} done")
    return [f.result() for f in futures]


# ---- 3: the networks ---------------------------------------------------------------------------
def _arch_id(choices: list[str]) -> str:
    from search.arch import Architecture
    from search.space import get_space

    space = get_space(SPACE)
    return Architecture(space=SPACE, choices=choices, input_size=space.input_shape[-1], classes=space.classes).id


def plan_networks(work: Path, searches: dict[str, dict[str, Any]], s: Settings, costs: Any) -> list[dict[str, Any]]:
    """Found, matched random, unconstrained random and baseline networks (saved; a rerun reuses them)."""
    path = work / "networks.json"
    from search.random_search import matched_random, uniform_random
    from search.space import get_space

    space = get_space(SPACE)
    nets: list[dict[str, Any]] = _read(path) or []  # a rerun with more budgets or seeds adds to them
    planned = {n["group"] for n in nets if n["role"] == "found"}
    if nets and all(name in planned for name in searches):
        return nets

    def add(choices: list[str], role: str, group: str | None, target: float | None = None) -> None:
        nets.append(
            {
                "id": _arch_id(choices),
                "choices": choices,
                "role": role,
                "group": group,
                "target_ms": target,
                "predicted_ms": costs.arch_cost(space, choices),
            }
        )

    if not nets:
        add([BASELINE] * space.num_layers, "baseline", None)
        for choices in uniform_random(space, s.random, seed=12345):
            add(choices, "random", None)
    for name, res in sorted(searches.items()):
        if name in planned:
            continue
        add(res["found"], "found", name, res["target_ms"])
        for choices in matched_random(
            costs, space, res["found_cost"], s.matched, s.match_tol, seed=sum(map(ord, name)), exclude={tuple(res["found"])}
        ):
            add(choices, "matched", name)
    _write(path, nets)
    return nets


def _reference(work: Path) -> list[dict[str, Any]]:
    """The calibration's networks as the table's validation measured them: measured again with the others, they
    show how far this machine's speed moved between the table and the measurements (``speed_drift``)."""
    doc = _read(work / "validation" / "validation.json") or {}
    return [{"id": r["arch_id"], "choices": r["choices"], "ms": r["measured_ms"]} for r in doc.get("networks", [])]


def measure_networks(work: Path, nets: list[dict[str, Any]], t0: float) -> dict[str, float]:
    """Every network measured whole by the agent (burst minimum, the table's own estimator), all in one sitting,
    together with the table's calibration networks (``_reference``).

    When networks are added (more budgets, seeds, another search mode) every network is measured again with
    them: this machine's speed drifts between sessions by tens of per cent, and networks measured at different
    times must not be compared.
    """
    path = work / "measured.json"
    done = _read(path) or {}
    unique = list({n["id"]: n for n in [*nets, *_reference(work)]}.values())
    if all(n["id"] in done for n in unique):
        return done
    todo, done = unique, {}
    from hwnas.schemas import JobCreate
    from search.arch import Architecture
    from search.app.demo import measured_ms
    from search.lut import wait_for_job
    from search.space import get_space
    from search.validate import network_spec

    space = get_space(SPACE)
    with Lab(work) as lab, lab.client() as c:
        specs = [
            network_spec(Architecture(space=SPACE, choices=n["choices"], input_size=space.input_shape[-1], classes=space.classes))
            for n in todo
        ]
        _log(t0, f"measure: {len(specs)} whole networks on {DEVICE}")
        job = wait_for_job(
            c,
            c.create_job(JobCreate(device=DEVICE, runtime=RUNTIME, threads=THREADS, networks=specs, force=True)).id,
            timeout_s=3600,
        )
        table = c.get_networks(DEVICE, RUNTIME, THREADS)
    for n in todo:
        if n["id"] in table.entries:
            done[n["id"]] = measured_ms(table.entries[n["id"]])
    _write(path, done)
    missing = [n["id"] for n in todo if n["id"] not in done]
    if missing:
        raise RuntimeError(f"network job {job.id}: {len(missing)} networks not measured")
    return done


def speed_drift(work: Path, measured: dict[str, float]) -> float | None:
    """Median of (now / when the table was built) over the calibration networks: > 1, the machine got slower."""
    ratios = [measured[r["id"]] / r["ms"] for r in _reference(work) if r["id"] in measured and r["ms"] > 0]
    return _median(ratios)


# ---- 6: figures --------------------------------------------------------------------------------
def measured_trend_gain(found: list[dict[str, Any]], randoms: list[dict[str, Any]]) -> dict[str, Any]:
    """Found networks against random search on the *measured* clock: accuracy over the random networks' trend.

    The matched pairs are matched on predicted latency; when the table misjudges the candidates the search
    prefers, a found network can take more measured time than its matches. Here a line ``acc = a + b·log ms``
    fitted to every random network (matched and unconstrained, measured whole) gives what random search reaches
    at each found network's measured latency; the figure is the mean excess, with a bootstrap 95% interval
    over found networks and random networks both.
    """
    import numpy as np

    if len(randoms) < 3 or not found:
        return {}
    x = np.log([r["measured_ms"] for r in randoms])
    y = 100 * np.asarray([r["acc"] for r in randoms])
    fx = np.log([f["measured_ms"] for f in found])
    fy = 100 * np.asarray([f["acc"] for f in found])

    def gain(ri: Any, fi: Any) -> float:
        b, a = np.polyfit(x[ri], y[ri], 1)
        return float(np.mean(fy[fi] - (a + b * fx[fi])))

    rng = np.random.default_rng(1)
    boots = [gain(rng.integers(0, len(x), len(x)), rng.integers(0, len(fx), len(fx))) for _ in range(4000)]
    slope = float(np.polyfit(x, y, 1)[0])
    return {
        "gain_vs_random_trend_measured_pts": gain(np.arange(len(x)), np.arange(len(fx))),
        "gain_vs_random_trend_ci_low_pts": float(np.percentile(boots, 2.5)),
        "gain_vs_random_trend_ci_high_pts": float(np.percentile(boots, 97.5)),
        "random_trend_pts_per_doubling": slope * float(np.log(2)),
    }


def hierarchical_bootstrap(groups: list[list[float]], n: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean pair difference, resampling groups (searches), then pairs within each."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = [np.asarray(g, dtype=float) for g in groups if g]
    means = np.empty(n)
    for i in range(n):
        picked = rng.integers(0, len(arrays), len(arrays))
        parts = [arrays[j][rng.integers(0, len(arrays[j]), len(arrays[j]))] for j in picked]
        means[i] = np.concatenate(parts).mean()
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def pair_gains(nets: list[dict[str, Any]], found: dict[str, Any]) -> list[float]:
    """Accuracy points the found network ``found`` has over each random network matched to its latency."""
    return [100 * (found["acc"] - m["acc"]) for m in nets if m["role"] == "matched" and m["group"] == found["group"]]


def figures(nets: list[dict[str, Any]], searches: dict[str, dict[str, Any]], timing: dict[str, float] | None) -> dict[str, Any]:
    found = [n for n in nets if n["role"] == "found"]
    if not found:
        raise SystemExit("no found network is trained and measured yet: nothing to report")
    groups: list[list[float]] = []
    budget_groups: dict[str, list[list[float]]] = {}
    for f in found:
        diffs = pair_gains(nets, f)
        groups.append(diffs)
        budget_groups.setdefault(f["group"].split("_")[0], []).append(diffs)
    pairs = [d for g in groups for d in g]
    per_budget = {b: [d for g in gs for d in g] for b, gs in budget_groups.items()}
    low, high = hierarchical_bootstrap(groups)
    randoms = [n for n in nets if n["role"] in ("matched", "random")]
    dominated = [
        any(
            r["acc"] >= f["acc"]
            and r["measured_ms"] <= f["measured_ms"]
            and (r["acc"] > f["acc"] or r["measured_ms"] < f["measured_ms"])
            for r in randoms
        )
        for f in found
    ]
    return {
        "gain_vs_matched_random_pts": sum(pairs) / len(pairs),
        "gain_ci_low_pts": low,
        "gain_ci_high_pts": high,
        "found_beats_random_share": win_share(pairs),
        "dominated_share": sum(dominated) / len(dominated),
        "target_error_pct": 100 * sum(abs(f["measured_ms"] / f["target_ms"] - 1) for f in found) / len(found),
        "predicted_target_error_pct": 100 * sum(abs(f["predicted_ms"] / f["target_ms"] - 1) for f in found) / len(found),
        # How far the table's predictions sit from the whole-network measurements: the random networks (what the
        # table is fitted to be right about on average) and the found ones (which the search chose through it).
        "measured_over_predicted_random": _median([r["measured_ms"] / r["predicted_ms"] for r in randoms]),
        "measured_over_predicted_found": _median([f["measured_ms"] / f["predicted_ms"] for f in found]),
        "theta_entropy_norm": sum(r["theta_entropy"] for r in searches.values()) / len(searches),
        "hard_vs_soft_search_time": timing["ratio"] if timing else None,
        "pairs": len(pairs),
        **measured_trend_gain(found, randoms),
        "gain_by_budget_pts": {b: sum(v) / len(v) for b, v in per_budget.items()},
        # Each budget on its own (3 searches each by default: a wide interval, resampled over few searches).
        "gain_by_budget_ci_pts": {b: hierarchical_bootstrap(g) for b, g in budget_groups.items()},
        "beats_by_budget": {b: win_share(v) for b, v in per_budget.items()},
    }


def theta_rank_corr(work: Path, nets: list[dict[str, Any]], groups: set[str], targets: dict[str, float]) -> dict[str, float]:
    """Per search: does θ know which networks of its budget are accurate? Rank correlation, over the found network
    and its matched random ones, of trained accuracy with log P(network | final θ) − log P(network | budget prior).

    The prior (``search.budget.budget_logits`` at the search's target) is what the cost alone says: it makes
    networks of equal cost equally likely and cheaper ones likelier, and inside the ±5% window a cheaper network
    is also a less accurate one, so log P under θ alone would mix cost into the answer. Near 0 or below: θ's
    choices carry no accuracy signal beyond the cost.
    """
    import numpy as np

    from search.budget import budget_logits
    from search.sample import log_probability

    out = {}
    for g in sorted(groups):
        doc, costs = _read(work / "search" / g / "theta.json"), _read(work / "search" / g / "costs.json")
        members = [n for n in nets if n["role"] in ("found", "matched") and n["group"] == g]
        if not doc or not costs or len(members) < 3 or g not in targets:
            continue
        names, theta = doc["candidates"], doc["epochs"][-1]["probabilities"]
        prior = []
        for row in budget_logits(costs["layer_costs"], costs["fixed"], targets[g]):
            e = np.exp(np.asarray(row) - max(row))
            prior.append((e / e.sum()).tolist())
        learned = [log_probability(n["choices"], theta, names) - log_probability(n["choices"], prior, names) for n in members]
        out[g] = spearman(learned, [n["acc"] for n in members])
    return out


def supernet_rank_corr(work: Path, nets: list[dict[str, Any]], groups: set[str]) -> dict[str, float]:
    """Per search: rank correlation of each network's accuracy inside the trained super net (shared weights, BN
    recomputed for its path) with its trained accuracy, over the found network and its matched random ones.

    θ reads its accuracy signal from this super net; if the super net cannot tell which equal-latency networks
    train well, no schedule of θ can. Computed once while the search's checkpoint is there and kept in
    ``supernet_acc.json`` (committed; the checkpoint is not).
    """
    from search.sample import supernet_accuracies

    out = {}
    for g in sorted(groups):
        members = [n for n in nets if n["role"] in ("found", "matched") and n["group"] == g]
        path = work / "search" / g / "supernet_acc.json"
        saved = _read(path) or {}
        todo = [n for n in members if n["id"] not in saved]
        if todo and (work / "search" / g / "checkpoint.pt").is_file():
            accs = supernet_accuracies(work / "search" / g, [n["choices"] for n in todo], val_subset=2000)
            saved.update({n["id"]: a for n, a in zip(todo, accs) if a is not None})
            _write(path, saved)
        pairs = [(saved[n["id"]], n["acc"]) for n in members if n["id"] in saved]
        if len(pairs) >= 3:
            out[g] = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    return out


def _median(values: list[float]) -> float | None:
    import statistics

    return statistics.median(values) if values else None


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(latency, accuracy) points no other point beats in both, by latency."""
    front, best = [], -1.0
    for lat, acc in sorted(points):
        if acc > best:
            front.append((lat, acc))
            best = acc
    return front


def plot(nets: list[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    style = {
        "random": dict(c="0.6", marker="o", s=22, label="random (unconstrained)"),
        "matched": dict(c="tab:orange", marker="o", s=26, label="random, matched latency (±5%)"),
        "found": dict(c="red", marker="*", s=220, edgecolors="k", linewidths=0.6, label="found by the search"),
        "baseline": dict(c="tab:blue", marker="s", s=60, label=f"baseline (all {BASELINE})"),
    }
    for role in ("random", "matched", "found", "baseline"):
        pts = [n for n in nets if n["role"] == role]
        if pts:
            ax.scatter(
                [n["measured_ms"] for n in pts], [100 * n["acc"] for n in pts], zorder=3 if role == "found" else 2, **style[role]
            )
    front = pareto_front([(n["measured_ms"], 100 * n["acc"]) for n in nets if n["role"] in ("random", "matched")])
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", c="0.3", ls="--", lw=1, label="random Pareto front")
    for n in nets:
        if n["role"] == "found" and n.get("target_ms"):
            ax.axvline(n["target_ms"], c="red", alpha=0.15, lw=1)
    ax.set_xlabel(f"measured latency, ms ({DEVICE}, {RUNTIME}, {THREADS} thread)")
    ax.set_ylabel("test accuracy, % (mean of training seeds)")
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(title, 110)), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- the run -----------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one budget, one seed, few networks: ≤ 5 min")
    p.add_argument("--workdir", type=Path, default=None, help="where every step is saved (default benchmarks/.work/...)")
    p.add_argument("--workers", type=int, default=2, help="processes for searches and trainings (1 torch thread each)")
    p.add_argument("--seeds", type=int, default=None, help="search seeds per budget (full 3)")
    p.add_argument("--budgets", default=None, help="comma-separated shares of the baseline's latency (full 0.25,0.5)")
    p.add_argument(
        "--search-mode",
        choices=("soft", "hard"),
        default=None,
        help="super net mode of the searches (full: soft); another mode's searches in the folder are kept",
    )
    p.add_argument("--report-only", action="store_true", help="figures of what the work folder holds now; runs nothing")
    args = p.parse_args()
    s = Settings.quick() if args.quick else Settings()
    if args.seeds:
        s = Settings(**{**asdict(s), "seeds": args.seeds})
    if args.budgets:
        s = Settings(**{**asdict(s), "budgets": tuple(float(b) for b in args.budgets.split(","))})
    if args.search_mode:
        s = Settings(**{**asdict(s), "search_mode": args.search_mode})
    # The full run's steps are kept under results/ (small JSON; weights and checkpoints are ignored) so that
    # it can continue in a later session; the quick run's are scratch.
    work = args.workdir or (HERE / ".work" / "search_quality_quick" if args.quick else HERE / "results" / "search_quality_work")
    work.mkdir(parents=True, exist_ok=True)
    saved = _read(work / "settings.json")
    mine = json.loads(json.dumps(asdict(s)))
    # More budgets, seeds or another search mode extend a run (a later session adds the 25% budget, say; the first
    # runs' searches were hard mode); anything else is another run.
    fixed = lambda d: {k: v for k, v in d.items() if k not in ("budgets", "seeds", "search_mode")}  # noqa: E731
    if saved is not None and fixed(saved) != fixed(mine):
        sys.exit(f"{work} holds a run with other settings ({saved}); use another --workdir")
    if not args.report_only:
        _write(work / "settings.json", mine)
    t0 = time.perf_counter()
    out = report_only(work, s, t0, args.quick) if args.report_only else run(work, s, args.workers, t0, args.quick)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    f, met = out["figures"], out["met"]
    ok = lambda k: "ok" if met[k] else "MISS"  # noqa: E731
    print(
        f"search_quality{' (quick)' if args.quick else ''}: gain vs matched random {f['gain_vs_matched_random_pts']:+.2f} pts "
        f"(95% CI {f['gain_ci_low_pts']:+.2f}..{f['gain_ci_high_pts']:+.2f}) [{ok('gain_ci_low_pts')}], beats "
        f"{f['found_beats_random_share']:.0%} [{ok('found_beats_random_share')}], dominated {f['dominated_share']:.0%}, "
        f"target error {f['target_error_pct']:.1f}% [{ok('target_error_pct')}], θ entropy "
        f"{f['theta_entropy_norm']:.2f}, hard/soft time "
        f"{'-' if f['hard_vs_soft_search_time'] is None else format(f['hard_vs_soft_search_time'], '.2f')} "
        f"[{ok('hard_vs_soft_search_time')}]; {out['networks_done']}{'' if out['complete'] else ' (PARTIAL)'}; "
        f"{out['seconds']:.0f} s"
    )


def run(work: Path, s: Settings, workers: int, t0: float, quick: bool) -> dict[str, Any]:
    from search.cost import LatencyCost
    from search.lut import load_table
    from search.searcher import cost_table
    from search.space import get_space

    lut = build_table(work, t0, s)
    space = get_space(SPACE)
    costs = cost_table(LatencyCost(load_table(lut)), space)
    baseline_ms = costs.arch_cost(space, [BASELINE] * space.num_layers)
    _log(t0, f"baseline {BASELINE} predicted {baseline_ms:.4f} ms; cheapest {costs.min_cost():.4f} ms")
    sd = asdict(s)
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        # 2. searches, and the timing pair (soft and hard, same settings, short)
        names, tasks = [], []
        for b in sorted(s.budgets, reverse=True):  # the larger budget first: its networks train faster
            for seed in range(s.seeds):
                name = _search_name(b, seed, s.search_mode)
                names.append(name)
                tasks.append((_search_task, (str(work / "search" / name), str(lut), b * baseline_ms, seed, sd)))
        timing_target = s.budgets[-1] * baseline_ms
        for mode in ("soft", "hard"):
            tasks.append((_search_task, (str(work / "timing" / mode), str(lut), timing_target, 0, sd, mode, s.timing_epochs)))
        results = _run_all(pool, tasks, t0, "search")
        searches = {n: {**r, "target_ms": tasks[i][1][2]} for i, (n, r) in enumerate(zip(names, results))}
        timing = _timing(work, s)
        # 3, 4
        nets = plan_networks(work, searches, s, costs)
        pool.shutdown() if pool else None  # nothing may run while the agent measures
        pool = None
        measured = measure_networks(work, nets, t0)
        pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
        # 5. training: the found and matched networks first (seed by seed, so a cut run still pairs them), then
        # the baseline and the unconstrained random ones, then the learning-curve check at twice the epochs
        order = {"found": 0, "matched": 0, "baseline": 1, "random": 1}
        unique = list({n["id"]: n for n in nets}.values())
        jobs = [
            (n["id"], seed, s.train_epochs)
            for rank in (0, 1)
            for seed in range(s.train_seeds)
            for n in unique
            if order[n["role"]] == rank
        ]
        jobs += [(i, 0, 2 * s.train_epochs) for i in curve_ids(nets, s)]
        choices = {n["id"]: n["choices"] for n in unique}
        train_tasks = [
            (
                _train_task,
                (str(_report(work, i, seed, e)), choices[i], seed, e, s.train_images, s.test_images, e != s.train_epochs),
            )
            for i, seed, e in jobs
        ]
        _run_all(pool, train_tasks, t0, "train")
    finally:
        if pool:
            pool.shutdown()
    return report(work, s, searches, timing, nets, measured, baseline_ms, t0, quick)


def _report(work: Path, i: str, seed: int, epochs: int) -> Path:
    return work / "train" / f"{i}_s{seed}_e{epochs}.train.json"


def curve_ids(nets: list[dict[str, Any]], s: Settings) -> list[str]:
    """The learning-curve networks: the baseline and the first found ones."""
    return [n["id"] for n in nets if n["role"] == "baseline"] + [n["id"] for n in nets if n["role"] == "found"][
        : max(0, s.curve_networks - 1)
    ]


def report(
    work: Path,
    s: Settings,
    searches: dict[str, dict[str, Any]],
    timing: dict[str, float] | None,
    nets: list[dict[str, Any]],
    measured: dict[str, float],
    baseline_ms: float,
    t0: float,
    quick: bool,
) -> dict[str, Any]:
    """Figures from whatever is saved: a network counts once all its training seeds are done."""
    kept = []
    for n in nets:
        reports = [_read(_report(work, n["id"], seed, s.train_epochs)) for seed in range(s.train_seeds)]
        if any(r is None for r in reports) or n["id"] not in measured:
            continue
        n = {**n, "accs": [r["accuracy"] for r in reports], "measured_ms": measured[n["id"]]}
        n["acc"] = sum(n["accs"]) / len(n["accs"])
        kept.append(n)
    complete = len(kept) == len(nets) and timing is not None
    # A found network counts with the matched networks trained so far (a cut run: fewer pairs). The headline
    # figures are this run's search mode; searches of another mode kept in the folder give gain_by_mode_pts.
    every = {n["group"] for n in kept if n["role"] == "found"}
    kept_all = [n for n in kept if n["role"] not in ("found", "matched") or n["group"] in every]
    groups = {g for g in every if g in searches}
    kept = [n for n in kept_all if n["role"] not in ("found", "matched") or n["group"] in groups]
    curve = []
    for i in curve_ids(nets, s):
        short, long = _read(_report(work, i, 0, s.train_epochs)), _read(_report(work, i, 0, 2 * s.train_epochs))
        if short and long:
            curve.append(
                {
                    "id": i,
                    "role": next(n["role"] for n in nets if n["id"] == i),
                    "acc_at_recipe": short["accuracy"],
                    "acc_at_double": long["accuracy"],
                    "double_run_curve": [h["val_acc"] for h in long["history"]],
                }
            )
    figs = figures(kept, {g: searches[g] for g in groups if g in searches}, timing)
    drift = speed_drift(work, measured)
    figs["speed_drift"] = drift
    if drift:  # what the target error would be had the machine kept the speed it had when the table was built
        found = [n for n in kept if n["role"] == "found"]
        figs["target_error_drift_corrected_pct"] = (
            100 * sum(abs(f["measured_ms"] / (drift * f["target_ms"]) - 1) for f in found) / len(found)
        )
    by_mode: dict[str, list[float]] = {}
    for f in (n for n in kept_all if n["role"] == "found"):
        by_mode.setdefault(_group_mode(f["group"]), []).extend(pair_gains(kept_all, f))
    figs["gain_by_mode_pts"] = {m: sum(v) / len(v) for m, v in by_mode.items() if v}
    corr = theta_rank_corr(work, kept, groups, {g: searches[g]["target_ms"] for g in groups if g in searches})
    figs["theta_rank_corr"] = sum(corr.values()) / len(corr) if corr else None
    figs["theta_rank_corr_by_search"] = corr
    ranks = supernet_rank_corr(work, kept, groups)
    figs["supernet_rank_corr"] = sum(ranks.values()) / len(ranks) if ranks else None
    figs["supernet_rank_corr_by_search"] = ranks
    met = {k: figs[k] is not None and _met(figs[k], t) for k, t in TARGETS.items()}
    title = (
        f"{SPACE}: {len(groups)} searches vs matched random; trained {s.train_epochs} ep on "
        f"{s.train_images} images × {s.train_seeds} seeds; gain {figs['gain_vs_matched_random_pts']:+.2f} pts "
        f"(CI low {figs['gain_ci_low_pts']:+.2f}){'' if complete else ' — PARTIAL'}"
    )
    plot(kept, PLOT if not quick else PLOT.with_name("search_quality_quick.png"), title)
    return {
        "figures": figs,
        "targets": TARGETS,
        "met": met,
        "mode": "quick" if quick else "full",
        "complete": complete,
        "networks_done": f"{len(kept)} of {len(nets)} networks trained with every seed and measured",
        "settings": asdict(s),
        "baseline_predicted_ms": baseline_ms,
        "searches": {
            n: {
                k: r.get(k)
                for k in (
                    "found",
                    "found_cost",
                    "argmax",
                    "argmax_cost",
                    "theta_entropy",
                    "target_ms",
                    "seconds",
                    "val_acc",
                    "warnings",
                )
            }
            for n, r in searches.items()
        },
        "timing": timing,
        "learning_curve": curve,
        "networks": [
            {k: n.get(k) for k in ("id", "role", "group", "choices", "predicted_ms", "measured_ms", "accs", "acc", "target_ms")}
            for n in kept
        ],
        "recipe": (
            f"search: {s.search_mode} mode, target loss, {s.search_epochs} epochs on {s.search_images} images, batch "
            f"{s.search_batch}, default schedule; training: {s.train_epochs} epochs on {s.train_images} images, "
            f"SGD one-cycle lr 0.1, batch 128, {s.train_seeds} seeds, tested on "
            f"{s.test_images or 10000} test images; latency measured whole by the local agent"
        ),
        "seconds": time.perf_counter() - t0,
    }


def report_only(work: Path, s: Settings, t0: float, quick: bool) -> dict[str, Any]:
    """``--report-only``: the figures of what a (running or cut) run has saved so far; starts nothing."""
    from search.cost import LatencyCost
    from search.lut import load_table
    from search.searcher import cost_table
    from search.space import get_space

    space = get_space(SPACE)
    costs = cost_table(LatencyCost(load_table(work / "table.json")), space)
    baseline_ms = costs.arch_cost(space, [BASELINE] * space.num_layers)
    searches = {}
    for b in s.budgets:
        for seed in range(s.seeds):
            name = _search_name(b, seed, s.search_mode)
            res = _read(work / "search" / name / "result.json")
            if res is not None:
                searches[name] = {**res, "target_ms": b * baseline_ms}
    try:
        timing: dict[str, float] | None = _timing(work, s)
    except (OSError, ValueError, ZeroDivisionError, KeyError):
        timing = None
    return report(
        work,
        s,
        searches,
        timing,
        _read(work / "networks.json") or [],
        _read(work / "measured.json") or {},
        baseline_ms,
        t0,
        quick,
    )


def _timing(work: Path, s: Settings) -> dict[str, float]:
    """Hard over soft search time, extrapolated from the timed runs' epochs to the benchmark's schedule."""
    docs = {m: json.loads((work / "timing" / m / "theta.json").read_text())["epochs"] for m in ("soft", "hard")}
    per: dict[str, dict[str, float]] = {}
    for m, epochs in docs.items():
        warm = [e["seconds"] for e in epochs if e["phase"] == "warmup"]
        search = [e["seconds"] for e in epochs if e["phase"] == "search"]
        per[m] = {"warmup_epoch_s": sum(warm) / len(warm), "search_epoch_s": sum(search) / len(search)}
    from search.search_config import Schedule

    warmup = Schedule(epochs=s.search_epochs).num_warmup_epochs
    total = {m: warmup * v["warmup_epoch_s"] + (s.search_epochs - warmup) * v["search_epoch_s"] for m, v in per.items()}
    return {
        "ratio": total["hard"] / total["soft"],
        "soft_s": total["soft"],
        "hard_s": total["hard"],
        **{f"{m}_{k}": v for m, d in per.items() for k, v in d.items()},
    }


if __name__ == "__main__":
    main()
