"""Does the super net rank the networks of a budget window as their training does? (issue 23)

Trains super nets of ``fbnet-fmnist`` on the weights alone (no θ: what any search or ``hwnas specialise`` reads
its accuracy signal from), one per variant, on the same 10,000 images (batch 64, 125 steps an epoch, 10 epochs):

* ``shared-distill`` (the headline, declared before its run): one weight set per layer sliced by the candidates
  (``--weights shared``), hard mode, the costliest path on the labels and the cheapest plus a uniform one learning
  its predictions (``--paths distill``, BigNAS's in-place distillation);
* ``shared-sandwich``: the same paths, every one on the labels (``--paths sandwich``);
* ``shared-uniform`` and ``shared-uniform-e30``: one uniform path per step, 1,250 and 3,750 steps (the second costs
  what a sandwich run costs): does ranking improve with training?
* ``separate-uniform``: FBNet's weight set per candidate, uniform paths.

Then every ground-truth network of each window (``search/ground_truth_data``) is scored inside each super net
(BatchNorm recalibrated per child, on 2,000 training images the super net never saw: accuracy and cross-entropy,
``search.specialise.ChildScorer``) and ranked against its trained test accuracy (2-seed mean).

Figures (targets from the issue, declared before the run): ``rank_spearman_supernet`` (the headline variant, mean
over windows) ≥ 0.6 and ≥ ``rank_spearman_macs`` + 0.15; every variant, MACs and the ranking by cross-entropy
beside it (null 0). What training itself reaches on the same footing: ``rank_spearman_retraining_one_seed`` (one
seed's accuracies ranking the other seed's), beside ``rank_spearman_supernet_one_seed`` and ``_macs_one_seed``
(each ranker against one seed, averaged over the two): a ranker that matches a second training run is as good as
one can ask of a predictor of this recipe's noisy outcome.

    python benchmarks/supernet_rank.py            # ~75 min on 2 cores; resumable (checkpoints, scores)
    python benchmarks/supernet_rank.py --quick    # 1 epoch on 2,000 images, 20 networks per window
    python benchmarks/supernet_rank.py --rerun shared-distill   # train it again: results' reruns (~50 min loaded)

Writes benchmarks/results/supernet_rank.json; prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from search.ground_truth import GroundTruth  # noqa: E402
from search.stats import spearman  # noqa: E402

RESULTS = HERE / "results" / "supernet_rank.json"
# name -> search options; "epochs" (on 10,000 images: 125 steps each) where a variant trains longer than 10.
VARIANTS: dict[str, dict[str, Any]] = {
    "shared-distill": {"weights": "shared", "paths": "distill"},
    "shared-sandwich": {"weights": "shared", "paths": "sandwich"},
    "shared-uniform": {"weights": "shared", "paths": "uniform"},
    # single paths cost a third of a sandwich step: the same compute as the sandwich variants, 3× the steps
    "shared-uniform-e30": {"weights": "shared", "paths": "uniform", "epochs": 30},
    "separate-uniform": {"weights": "separate", "paths": "uniform"},
}
TARGETS = {"rank_spearman_supernet": ">= 0.6", "rank_spearman_supernet_minus_macs": ">= 0.15"}


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def train(work: Path, variant: str, epochs: int, subset: int) -> Path:
    """The super net of ``variant``, weights only (every epoch a warm-up epoch); resumes a cut run."""
    import torch

    from search.search_config import SearchConfig
    from search.searcher import run_search

    torch.set_num_threads(1)
    out = work / variant
    if (out / "result.json").is_file():
        return out
    resume = (out / "checkpoint.pt").is_file()
    options = dict(VARIANTS[variant])
    epochs = options.pop("epochs", epochs)
    cfg = SearchConfig.from_flat(
        out=str(out),
        space="fbnet-fmnist",
        data="fashion-mnist",
        cost="flops",
        mode="hard",
        epochs=epochs,
        warmup_epochs=epochs,
        subset=subset,
        batch_size=64,
        val_subset=500,
        seed=0,
        num_threads=1,
        progress=False,
        plots=False,
        resume=resume,
        **options,
    )
    run_search(cfg)
    return out


def scores(out: Path, gt: GroundTruth, per_window: int, val_images: int) -> dict[str, list[float]]:
    """Network id → [super-net accuracy, super-net mean cross-entropy]; resumes from what is saved."""
    from search.specialise import ChildScorer

    path = out / "ground_truth_scores.json"
    saved = {k: v for k, v in (_read(path) or {}).items() if isinstance(v, list)}  # older files: accuracy only
    scorer = ChildScorer(out, calib_images=500, val_images=val_images)
    for w in sorted(gt.windows):
        for n in gt.trained(w)[:per_window]:
            if n.id not in saved:
                saved[n.id] = list(scorer.scores(n.choices))
                path.write_text(json.dumps(saved, indent=0) + "\n")
    return saved


def window_figures(gt: GroundTruth, nets: list, sc: dict[str, list[float]]) -> dict[str, float]:
    """Spearman of each ranker with the 2-seed mean test accuracy, and with single seeds beside training's own."""
    seeds = [str(s) for s in gt.recipe.seeds]
    accs = [n.mean("test", gt.recipe.seeds) for n in nets]
    acc, neg_ce = [sc[n.id][0] for n in nets], [-sc[n.id][1] for n in nets]
    one_seed = lambda xs: sum(spearman(xs, [n.seeds[s]["test"] for n in nets]) for s in seeds) / len(seeds)  # noqa: E731
    return {
        "supernet": spearman(acc, accs),
        "supernet_loss": spearman(neg_ce, accs),
        "macs": spearman([n.macs for n in nets], accs),
        "networks": len(nets),
        "supernet_acc_mean": sum(acc) / len(acc),
        # against one seed's accuracies, where training itself can be a ranker: seed a ranks seed b at this
        "one_seed_supernet": one_seed(acc),
        "one_seed_supernet_loss": one_seed(neg_ce),
        "one_seed_macs": one_seed([n.macs for n in nets]),
        "one_seed_retraining": spearman([n.seeds[seeds[0]]["test"] for n in nets], [n.seeds[seeds[1]]["test"] for n in nets]),
    }


def rerun(variant: str, work: Path, gt: GroundTruth, epochs: int, subset: int, per_window: int, val: int) -> None:
    """``--rerun``: one more training of ``variant``, its window figures appended to ``reruns`` in the results."""
    results = _read(RESULTS)
    if results is None:
        sys.exit("supernet_rank --rerun: no results yet; run the benchmark first")
    done = results.setdefault("reruns", {}).setdefault(variant, [])
    name = f"{variant}-rerun{len(done) + 1}"
    VARIANTS[name] = VARIANTS[variant]
    sc = scores(train(work, name, epochs, subset), gt, per_window, val)
    by_window = {w: window_figures(gt, [n for n in gt.trained(w)[:per_window] if n.id in sc], sc) for w in sorted(gt.windows)}
    first = results["figures"]["variants"].get(variant, {})
    done.append(
        {
            "folder": name,
            "windows": {w: v["supernet"] for w, v in by_window.items()},
            "mean": sum(v["supernet"] for v in by_window.values()) / len(by_window),
            "first_run_mean": sum(v["supernet"] for v in first.values()) / len(first) if first else None,
        }
    )
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(
        f"supernet_rank --rerun {variant}: spearman within window {done[-1]['mean']:+.2f} (first run "
        f"{done[-1]['first_run_mean']:+.2f}; MACs {results['figures']['rank_spearman_macs']:+.2f}; null 0)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 epoch on 2,000 images, 20 networks per window")
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated, in order; the first is the headline (default: all, shared-distill first)",
    )
    p.add_argument(
        "--rerun",
        metavar="VARIANT",
        help="train VARIANT once more (a folder of its own) and add its "
        "figures to the results' reruns, leaving every other figure as it is: how far one training's "
        "ranking is from another's",
    )
    args = p.parse_args()
    t0 = time.perf_counter()
    epochs, subset, per_window, val = (1, 2000, 20, 500) if args.quick else (10, 10000, 1000, 2000)
    work = HERE / ".work" / ("supernet_rank_quick" if args.quick else "supernet_rank")
    gt = GroundTruth.load()
    if args.rerun:
        rerun(args.rerun, work, gt, epochs, subset, per_window, val)
        return
    figs: dict[str, Any] = {"variants": {}, "steps": epochs * int(subset * 0.8) // 64, "steps_by_variant": {}}
    for variant in args.variants.split(","):
        out = train(work, variant, epochs, subset)
        figs["steps_by_variant"][variant] = VARIANTS[variant].get("epochs", epochs) * int(subset * 0.8) // 64
        sc = scores(out, gt, per_window, val)
        by_window = {}
        for w in sorted(gt.windows):
            nets = [n for n in gt.trained(w)[:per_window] if n.id in sc]
            if len(nets) >= 5:
                by_window[w] = window_figures(gt, nets, sc)
        figs["variants"][variant] = by_window
        print(f"[{time.perf_counter() - t0:6.0f}s] {variant}: {json.dumps(by_window)}", flush=True)
    first = next(iter(figs["variants"].values()))
    mean = lambda k: sum(v[k] for v in first.values()) / len(first) if first else None  # noqa: E731
    figs["headline_variant"] = next(iter(figs["variants"]))
    for k in ("supernet", "supernet_loss", "macs"):
        figs[f"rank_spearman_{k}"] = mean(k)
    figs["rank_spearman_supernet_minus_macs"] = (
        None if figs["rank_spearman_supernet"] is None else figs["rank_spearman_supernet"] - figs["rank_spearman_macs"]
    )
    # What training itself reaches as a ranker, on the same footing: one seed's accuracies ranking the other's.
    # A super net cannot be expected to rank a short training recipe better than re-running that recipe does.
    figs["rank_spearman_retraining_one_seed"] = mean("one_seed_retraining")
    figs["rank_spearman_supernet_one_seed"] = mean("one_seed_supernet")
    figs["rank_spearman_macs_one_seed"] = mean("one_seed_macs")
    figs["rank_null"] = 0.0
    met = {k: figs[k] is not None and figs[k] >= float(t.split()[1]) for k, t in TARGETS.items()}
    RESULTS.write_text(
        json.dumps(
            {"figures": figs, "targets": TARGETS, "met": met, "quick": args.quick, "seconds": time.perf_counter() - t0}, indent=1
        )
        + "\n"
    )
    others = ", ".join(
        f"{v} {sum(w['supernet'] for w in ws.values()) / len(ws):+.2f}" for v, ws in list(figs["variants"].items())[1:] if ws
    )
    print(
        f"supernet_rank{' (quick)' if args.quick else ''}: spearman within window, {figs['headline_variant']} "
        f"{figs['rank_spearman_supernet']:+.2f} [{'ok' if met['rank_spearman_supernet'] else 'MISS'}] (by loss "
        f"{figs['rank_spearman_supernet_loss']:+.2f}), MACs {figs['rank_spearman_macs']:+.2f}"
        f"{', ' + others if others else ''} (null 0; one seed ranks the other at "
        f"{figs['rank_spearman_retraining_one_seed']:+.2f}); {figs['steps']} steps; {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
