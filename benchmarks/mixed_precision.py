"""Mixed-precision DNAS on Fashion-MNIST: how much smaller, at what accuracy, against uniform widths.

One process, one training budget for everyone (stated in the output), repeated for ``--seeds``
seeds (``--seed``, ``--seed`` + 1, …); each seed runs the whole pipeline with its own seed:

1. fp32 ResNet (``--space``, default ResNet-20 with an 8-channel first stage) trained from
   scratch for ``--pretrain-epochs`` on ``--train-images`` Fashion-MNIST images;
2. the search: the bits super net starts from the fp32 weights and runs ``--search-epochs`` of
   the DNAS loop (80 % weights / 20 % θ) with the target loss on model size, budget
   fp32 size / ``--budget-x``; its argmax, moved to at most the budget, is the searched mix.
   Weights are searched from {2, 4, 8, 32} bits, activations are 8-bit (what an int8 runtime
   executes);
3. every row starts from the same weights — the super net's shared float weights — and is
   fine-tuned for ``--finetune-epochs`` with the same schedule: fp32 itself (so the float
   baseline gets the same training as everyone), uniform 8-, 4- and 2-bit weights (8-bit
   activations), and the searched mix.

Every row is evaluated on the full test set (10,000 images; ``--quick``: 1,000), exported to
ONNX (QDQ for the 8-bit parts), evaluated again in ONNX Runtime, and timed there (batch 1,
one thread; int8 kernels where a layer has ≤ 8-bit weights and activations).

Figures (each the mean over the seeds; per-seed values are in ``per_seed`` of the JSON):

* ``bits_gain_vs_uniform_equal_size_pts`` — the headline: searched top-1 − the top-1 a uniform
  width would have *at exactly the searched size*, in points. That uniform top-1 is interpolated
  linearly in log(size) between the two uniform rows (w2a8 / w4a8 / w8a8) whose sizes bracket
  the searched size; outside their range the nearest two are extrapolated and the JSON says so
  (``equal_size_uniform.extrapolated``). ``bits_gain_ci_low_pts`` / ``bits_gain_ci_high_pts``:
  95 % interval of the mean over seeds, mean ± t(0.975, n−1)·sd/√n (Student t; a bootstrap over
  3 seeds has only 10 distinct resamples and cannot reach beyond the observed range); null with
  one seed.
* ``compression_x`` = fp32 size / searched size; ``acc_drop_vs_fp32`` = fp32 top-1 − searched
  top-1 (points); ``acc_gain_vs_uniform_same_size`` = searched top-1 − top-1 of the uniform
  width whose size is nearest the searched size (log scale; points; kept for continuity — the
  sizes differ, so it is not an equal-size comparison).

With ``--workdir DIR`` each finished seed is saved to ``DIR/seed_<s>.json`` (its runs under
``DIR/seed_<s>/``) and a rerun with the same settings reuses it instead of running it again.

    python benchmarks/mixed_precision.py            # 3 seeds, ≈ 7 min of one core each (longer when shared)
    python benchmarks/mixed_precision.py --quick    # 1 seed, < 1 min of one core, tiny network and subsets
    python benchmarks/mixed_precision.py --workdir /tmp/mp-work   # resumable

Writes benchmarks/results/mixed_precision.json and prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
RESULTS = HERE / "results" / "mixed_precision.json"
TARGETS = {
    "compression_x": ">= 10",
    "acc_drop_vs_fp32": "<= 0.5",
    "acc_gain_vs_uniform_same_size": "> 0",
    "bits_gain_vs_uniform_equal_size_pts": "> 0",
}
UNIFORM = ("w8a8", "w4a8", "w2a8")
CI_METHOD = "mean ± t(0.975, n-1)·sd/√n over seeds (Student t)"
# Two-sided 95 % Student t quantiles t(0.975, df) for df = 1 … 30.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def _met(value: float | None, target: str) -> bool:
    if value is None:
        return False
    op, num = target.split()
    return {">=": value >= float(num), "<=": value <= float(num), ">": value > float(num)}[op]


def t975(df: int) -> float:
    """Two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish–Fisher expansion around the normal quantile; < 1e-3 off for df > 30
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values: list[float]) -> tuple[float, float | None, float | None, float | None]:
    """(mean, sd, low, high): the 95 % t interval of the mean; sd/low/high are None for one value."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, None, None, None
    sd = statistics.stdev(values)
    half = t975(len(values) - 1) * sd / math.sqrt(len(values))
    return m, sd, m - half, m + half


def uniform_at_size(uniform: list[tuple[str, float, float]], size_kb: float) -> dict[str, Any]:
    """Top-1 a uniform width would have at ``size_kb``: linear in log(size) between the two bracketing rows.

    ``uniform`` holds (name, size_kb, accuracy) with at least two distinct sizes. Outside their
    range the nearest two rows are extrapolated (``extrapolated`` True).
    """
    rows = sorted(uniform, key=lambda r: r[1])
    if len({r[1] for r in rows}) < 2:
        raise ValueError("need uniform rows of at least two sizes")
    lo, hi = rows[0], rows[1]
    for a, b in zip(rows, rows[1:]):
        lo, hi = a, b
        if size_kb <= b[1]:
            break
    pos = (math.log(size_kb) - math.log(lo[1])) / (math.log(hi[1]) - math.log(lo[1]))
    return {
        "size_kb": size_kb,
        "accuracy": lo[2] + pos * (hi[2] - lo[2]),
        "between": [lo[0], hi[0]],
        "position": pos,
        "extrapolated": not (rows[0][1] <= size_kb <= rows[-1][1]),
    }


def _request(
    args: Any, space_name: str, n_train: int, n_test: int | None, pre_epochs: int, ft_epochs: int, search_epochs: int, seed: int
) -> dict[str, Any]:
    """Everything a seed's result depends on (threads aside): a saved seed is reused only when this matches."""
    return {
        "quick": bool(args.quick),
        "space": space_name,
        "train_images": n_train,
        "test_images": n_test,
        "pretrain_epochs": pre_epochs,
        "finetune_epochs": ft_epochs,
        "search_epochs": search_epochs,
        "budget_x": args.budget_x,
        "theta_optimizer": args.theta_optimizer,
        "theta_lr": args.theta_lr,
        "lr": args.lr,
        "finetune_lr": args.finetune_lr,
        "batch_size": args.batch_size,
        "seed": seed,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny network and subsets, one seed, under a minute")
    p.add_argument("--space", default=None, help="bits space (default resnet20-w8; quick: resnet8-w8)")
    p.add_argument("--train-images", type=int, default=None, help="training subset (default 8000; quick 2000)")
    p.add_argument("--test-images", type=int, default=None, help="test subset (default: all 10000; quick 1000)")
    p.add_argument("--pretrain-epochs", type=int, default=None, help="fp32 from scratch (default 3; quick 2)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="every row, from the same weights (default 3; quick 1)")
    p.add_argument("--search-epochs", type=int, default=None, help="DNAS epochs (default 2; quick 1)")
    p.add_argument("--budget-x", type=float, default=12.0, help="size budget of the search: fp32 size / this")
    p.add_argument("--theta-optimizer", default="sgd", help="sgd (keeps each layer's share of the size gradient) or adam")
    p.add_argument("--theta-lr", type=float, default=2.0, help="lr of θ (few θ steps in a short search)")
    p.add_argument("--lr", type=float, default=0.1, help="peak lr of the fp32 training")
    p.add_argument("--finetune-lr", type=float, default=0.02, help="peak lr of the fine-tunes and the search's weights")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (the machine is shared)")
    p.add_argument("--seed", type=int, default=0, help="first seed; the seeds are seed, seed+1, …")
    p.add_argument("--seeds", type=int, default=None, help="how many seeds, each a whole run (default 3; quick 1)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the runs here and save each finished seed as seed_<s>.json; a rerun skips those "
        "(default: a temporary folder, nothing reused)",
    )
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    q = args.quick
    space_name = args.space or ("resnet8-w8" if q else "resnet20-w8")
    n_train = args.train_images or (2000 if q else 8000)
    ft_epochs = args.finetune_epochs or (1 if q else 3)
    n_test = args.test_images or (1000 if q else None)
    pre_epochs = args.pretrain_epochs or (2 if q else 3)
    search_epochs = args.search_epochs or (1 if q else 2)
    n_seeds = args.seeds or (1 if q else 3)
    if n_seeds < 1:
        p.error("--seeds must be >= 1")
    seeds = [args.seed + i for i in range(n_seeds)]

    t_start = time.perf_counter()
    per_seed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hwnas-mp-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            request = _request(args, space_name, n_train, n_test, pre_epochs, ft_epochs, search_epochs, seed)
            done = work / f"seed_{seed}.json"
            if done.exists():
                saved = json.loads(done.read_text())
                if saved.get("request") == request:
                    print(f"seed {seed}: finished earlier, read from {done}", flush=True)
                    per_seed.append(saved)
                    continue
                print(f"seed {seed}: {done} was made with other settings; running it again", flush=True)
            seed_dir = work / f"seed_{seed}"
            if seed_dir.exists():  # an unfinished earlier attempt: start the seed over
                shutil.rmtree(seed_dir)
            res = run(seed_dir, space_name, n_train, n_test, pre_epochs, ft_epochs, search_epochs, args, seed)
            res["request"] = request
            partial = done.with_suffix(".json.part")
            partial.write_text(json.dumps(res, indent=2) + "\n")
            os.replace(partial, done)
            per_seed.append(res)
            print(res["table"], flush=True)
    out = aggregate(per_seed, args, time.perf_counter() - t_start)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(out["budget_text"])
    for s in per_seed:
        f, eq = s["figures"], s["equal_size_uniform"]
        print(
            f"  seed {s['settings']['seed']}: searched {s['searched_size_kb']:.1f} KB at {100 * s['searched_acc']:.2f} %, "
            f"uniform at that size {100 * eq['accuracy']:.2f} % (log-size interpolation between "
            f"{' and '.join(eq['between'])}{', EXTRAPOLATED' if eq['extrapolated'] else ''}) -> "
            f"{f['bits_gain_vs_uniform_equal_size_pts']:+.2f} pts; vs nearest {s['nearest_uniform']} "
            f"{f['acc_gain_vs_uniform_same_size']:+.2f} pts; compression {f['compression_x']:.1f}x, "
            f"drop vs fp32 {f['acc_drop_vs_fp32']:+.2f} pts"
        )
    f, met = out["figures"], out["met"]
    lo, hi = f["bits_gain_ci_low_pts"], f["bits_gain_ci_high_pts"]
    ci = f"95% CI [{lo:+.2f}, {hi:+.2f}]" if lo is not None else "no interval with 1 seed"
    print(
        f"mixed_precision{' (quick)' if q else ''}: {len(per_seed)} seed(s); gain vs uniform at equal size "
        f"{f['bits_gain_vs_uniform_equal_size_pts']:+.2f} pts ({ci}) "
        f"[{'ok' if met['bits_gain_vs_uniform_equal_size_pts'] else 'MISS'}], compression {f['compression_x']:.1f}x "
        f"[{'ok' if met['compression_x'] else 'MISS'}], acc drop vs fp32 {f['acc_drop_vs_fp32']:+.2f} pts "
        f"[{'ok' if met['acc_drop_vs_fp32'] else 'MISS'}], gain vs nearest uniform ({out['nearest_uniform']}) "
        f"{f['acc_gain_vs_uniform_same_size']:+.2f} pts [{'ok' if met['acc_gain_vs_uniform_same_size'] else 'MISS'}]; "
        f"{out['seconds']:.0f} s of runs over the seeds"
    )


def aggregate(per_seed: list[dict[str, Any]], args: Any, wall: float) -> dict[str, Any]:
    """Means over seeds as the figures, the t interval of the equal-size gain, the per-seed details."""
    seeds = [s["settings"]["seed"] for s in per_seed]
    gains = [s["figures"]["bits_gain_vs_uniform_equal_size_pts"] for s in per_seed]
    mean, sd, lo, hi = mean_ci(gains)

    def avg(key: str) -> float:
        return statistics.fmean(s["figures"][key] for s in per_seed)

    figures: dict[str, Any] = {
        "compression_x": avg("compression_x"),
        "acc_drop_vs_fp32": avg("acc_drop_vs_fp32"),
        "acc_gain_vs_uniform_same_size": avg("acc_gain_vs_uniform_same_size"),
        "bits_gain_vs_uniform_equal_size_pts": mean,
        "bits_gain_ci_low_pts": lo,
        "bits_gain_ci_high_pts": hi,
        "bits_gain_sd_pts": sd,
        "n_seeds": len(per_seed),
        **{f"bits_gain_seed_{s}_pts": g for s, g in zip(seeds, gains)},
        "searched_size_kb": statistics.fmean(s["searched_size_kb"] for s in per_seed),
        "searched_acc_pct": 100 * statistics.fmean(s["searched_acc"] for s in per_seed),
        "uniform_at_searched_size_acc_pct": 100 * statistics.fmean(s["equal_size_uniform"]["accuracy"] for s in per_seed),
        "extrapolated_seeds": sum(bool(s["equal_size_uniform"]["extrapolated"]) for s in per_seed),
    }
    met = {k: _met(figures[k], t) for k, t in TARGETS.items()}
    nearest = {s["nearest_uniform"] for s in per_seed}
    nearest_text = (
        next(iter(nearest))
        if len(nearest) == 1
        else ", ".join(f"{s['nearest_uniform']} (seed {s['settings']['seed']})" for s in per_seed)
    )
    settings = {k: v for k, v in per_seed[0]["settings"].items() if k != "seed"}
    return {
        "figures": figures,
        "targets": TARGETS,
        "met": met,
        "mode": "quick" if args.quick else "full",
        "seeds": seeds,
        "ci_method": CI_METHOD,
        "figure_definitions": {
            "bits_gain_vs_uniform_equal_size_pts": "mean over seeds of: searched top-1 - uniform top-1 at exactly the "
            "searched size, linear in log(size) between the two bracketing "
            "uniform rows (nearest two, extrapolated, outside their range); points",
            "acc_gain_vs_uniform_same_size": "mean over seeds of: searched top-1 - top-1 of the uniform row of the "
            "nearest size (log scale); points; sizes differ",
            "compression_x": "mean over seeds of fp32 size / searched size",
            "acc_drop_vs_fp32": "mean over seeds of fp32 top-1 - searched top-1; points",
        },
        "extrapolated_seeds": [s["settings"]["seed"] for s in per_seed if s["equal_size_uniform"]["extrapolated"]],
        "nearest_uniform": nearest_text,
        "budget_text": per_seed[0]["budget_text"],
        "settings": settings,
        "per_seed": per_seed,
        "seconds": sum(s["seconds"] for s in per_seed),
        "wall_seconds_this_invocation": wall,
    }


def run(
    work: Path,
    space_name: str,
    n_train: int,
    n_test: int | None,
    pre_epochs: int,
    ft_epochs: int,
    search_epochs: int,
    args: Any,
    seed: int,
) -> dict[str, Any]:
    from search.data import dataset_info, load_dataset
    from search.quant.cost import SizeCost, config_cost
    from search.quant.network import BitsConfig
    from search.quant.report import bits_summary, format_table, measure_latency, row_from_report
    from search.quant.searcher import QuantSearchConfig, run_quant_search
    from search.quant.space import get_bits_space
    from search.quant.train import QuantTrainConfig, train_quant

    t_start = time.perf_counter()
    info = dataset_info(load_dataset("fashion-mnist", "test", subset=1))
    space = get_bits_space(space_name, tuple(info.input_shape), info.num_classes, weight_bits=[2, 4, 8, 32], act_bits=[8])
    common = dict(
        data="fashion-mnist",
        batch_size=args.batch_size,
        subset=n_train,
        val_subset=n_test,
        seed=seed,
        num_threads=args.threads,
        progress=False,
    )
    timings: dict[str, float] = {}

    def stage(name: str):
        class _T:
            def __enter__(self) -> None:
                self.t = time.perf_counter()
                print(f"[{time.perf_counter() - t_start:6.0f}s] seed {seed}: {name} …", flush=True)

            def __exit__(self, *exc: object) -> None:
                timings[name] = time.perf_counter() - self.t

        return _T()

    # 1. fp32 from scratch.
    fp32 = BitsConfig(space, space.uniform("fp32"))
    with stage("fp32 training"):
        pre = train_quant(
            fp32, QuantTrainConfig(epochs=pre_epochs, lr=args.lr, export_onnx=False, **common), work / "pre", "fp32_pretrain"
        )
    init = str(pre.weights)

    # 2. the search, from the fp32 weights, under a size budget.
    fp32_kb = config_cost(SizeCost(), space, fp32.bits)
    budget = fp32_kb / args.budget_x
    with stage("search"):
        search = run_quant_search(
            QuantSearchConfig.from_flat(
                out=str(work / "search"),
                space=space_name,
                cost="size",
                loss="target",
                target=budget,
                weight_bits=[2, 4, 8, 32],
                act_bits=[8],
                init=init,
                epochs=search_epochs,
                warmup_epochs=0,
                w_lr=args.finetune_lr,
                theta_lr=args.theta_lr,
                theta_optimizer=args.theta_optimizer,
                plots=False,
                **common,
            )
        )

    # 3. every row fine-tuned from the same weights (the super net's) with the same schedule.
    init = str(work / "search" / "supernet_float.pt")
    configs = {
        "fp32": fp32,
        **{f"uniform {t}": BitsConfig(space, space.uniform(t)) for t in UNIFORM},
        "searched mix": search.config,
    }
    rows, reports = [], {}
    for name, cfg in configs.items():
        stem = name.replace(" ", "_")
        with stage(f"fine-tune {name}"):
            res = train_quant(
                cfg, QuantTrainConfig(epochs=ft_epochs, lr=args.finetune_lr, init=init, **common), work / "rows", stem
            )
        lat = measure_latency(res.onnx, (1, *space.input_shape), threads=args.threads) if res.onnx else None
        rows.append(row_from_report(res.report, name, lat))
        reports[name] = json.loads(res.report.read_text())

    by = {r.name: r for r in rows}
    mix, ref = by["searched mix"], by["fp32"]
    uniform_rows = [by[f"uniform {t}"] for t in UNIFORM]
    nearest = min(uniform_rows, key=lambda r: abs(math.log(r.size_kb / mix.size_kb)))
    figures = {
        "compression_x": ref.size_kb / mix.size_kb,
        "acc_drop_vs_fp32": 100 * (ref.accuracy - mix.accuracy),
        "acc_gain_vs_uniform_same_size": 100 * (mix.accuracy - nearest.accuracy),
    }
    # The equal-size comparison: a uniform width's top-1 at exactly the searched size.
    equal = uniform_at_size([(r.name, r.size_kb, r.accuracy) for r in uniform_rows], mix.size_kb)
    figures["bits_gain_vs_uniform_equal_size_pts"] = 100 * (mix.accuracy - equal["accuracy"])
    met = {k: _met(v, TARGETS[k]) for k, v in figures.items()}
    n_test_used = reports["fp32"]["test_images"]
    n_train_used = reports["fp32"]["train_images"]
    budget_text = (
        f"training budget: {space_name} ({space.num_layers} layers, {sum(l.weight_params for l in space.layers())} weights) "
        f"on {n_train_used} Fashion-MNIST training images; fp32 {pre_epochs} epochs from scratch (lr {args.lr}); search "
        f"{search_epochs} epoch(s) from it (target loss, size ≤ {budget:.1f} KB = fp32/{args.budget_x:g}, θ "
        f"{args.theta_optimizer} lr {args.theta_lr}); then every row {ft_epochs} epoch(s) from the super net's weights "
        f"(lr {args.finetune_lr}); batch {args.batch_size}; "
        f"tested on {n_test_used} images; {args.threads} thread(s); latency: ONNX Runtime on this host, batch 1"
    )
    table = format_table(rows, reference="fp32")
    return {
        "figures": figures,
        "targets": TARGETS,
        "met": met,
        "mode": "quick" if args.quick else "full",
        "nearest_uniform": nearest.name,
        "equal_size_uniform": equal,
        "searched_size_kb": mix.size_kb,
        "searched_acc": mix.accuracy,
        "table": table,
        "budget_text": budget_text,
        "rows": [r.to_dict() for r in rows],
        "searched_bits": search.config.bits,
        "searched_summary": bits_summary(search.config.bits),
        "supernet_val_acc": search.val_acc,
        "budget_kb": budget,
        "fp32_kb": fp32_kb,
        "fp32_pretrain_acc": pre.accuracy,
        "settings": {
            "space": space_name,
            "train_images": n_train_used,
            "test_images": n_test_used,
            "pretrain_epochs": pre_epochs,
            "finetune_epochs": ft_epochs,
            "search_epochs": search_epochs,
            "budget_x": args.budget_x,
            "lr": args.lr,
            "finetune_lr": args.finetune_lr,
            "theta_lr": args.theta_lr,
            "theta_optimizer": args.theta_optimizer,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "seed": seed,
        },
        "stage_seconds": timings,
        "seconds": time.perf_counter() - t_start,
    }


if __name__ == "__main__":
    main()
