"""Does the super net rank the networks of a budget window as their training does? (issue 23)

Trains super nets of ``fbnet-fmnist`` on the weights alone (no θ: what any search or ``hwnas specialise`` reads
its accuracy signal from), one per variant, each for the same number of steps on the same images:

* ``shared-sandwich``: one weight set per layer sliced by the candidates (``--weights shared``), hard mode,
  uniform paths plus the costliest and cheapest each step (``--paths sandwich``);
* ``separate-uniform``: FBNet's weight set per candidate, hard mode, uniform paths — the same budget of steps.

Then every ground-truth network of each window (``search/ground_truth_data``) is scored inside each super net
(BatchNorm recalibrated per child, accuracy on training images the super net never saw: ``search.specialise.
ChildScorer``) and ranked against its trained test accuracy (2-seed mean).

Figures (targets from the issue, declared before the run): ``rank_spearman_supernet`` (the shared variant, mean
over windows) ≥ 0.6 and ≥ ``rank_spearman_macs`` + 0.15; the separate variant and MACs beside it (null 0).

    python benchmarks/supernet_rank.py            # ~30 min on 2 cores; resumable (checkpoints, scores)
    python benchmarks/supernet_rank.py --quick    # 1 epoch on 2,000 images, 20 networks per window

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
VARIANTS = {"shared-sandwich": {"weights": "shared", "paths": "sandwich"},
            "separate-uniform": {"weights": "separate", "paths": "uniform"}}
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
    cfg = SearchConfig.from_flat(out=str(out), space="fbnet-fmnist", data="fashion-mnist", cost="flops", mode="hard",
                                 epochs=epochs, warmup_epochs=epochs, subset=subset, batch_size=64, val_subset=500,
                                 seed=0, num_threads=1, progress=False, plots=False, resume=resume,
                                 **VARIANTS[variant])
    run_search(cfg)
    return out


def scores(out: Path, gt: GroundTruth, per_window: int, val_images: int) -> dict[str, float]:
    from search.specialise import ChildScorer

    path = out / "ground_truth_scores.json"
    saved = _read(path) or {}
    scorer = ChildScorer(out, calib_images=500, val_images=val_images)
    for w in sorted(gt.windows):
        for n in gt.trained(w)[:per_window]:
            if n.id not in saved:
                saved[n.id] = scorer.score(n.choices)
                path.write_text(json.dumps(saved, indent=0) + "\n")
    return saved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 epoch on 2,000 images, 20 networks per window")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, in order (default: all)")
    args = p.parse_args()
    t0 = time.perf_counter()
    epochs, subset, per_window, val = (1, 2000, 20, 500) if args.quick else (10, 10000, 1000, 2000)
    work = HERE / ".work" / ("supernet_rank_quick" if args.quick else "supernet_rank")
    gt = GroundTruth.load()
    figs: dict[str, Any] = {"variants": {}, "steps": epochs * int(subset * 0.8) // 64}
    for variant in args.variants.split(","):
        out = train(work, variant, epochs, subset)
        sc = scores(out, gt, per_window, val)
        by_window = {}
        for w in sorted(gt.windows):
            nets = [n for n in gt.trained(w)[:per_window] if n.id in sc]
            accs = [n.mean("test", gt.recipe.seeds) for n in nets]
            if len(nets) >= 5:
                by_window[w] = {"supernet": spearman([sc[n.id] for n in nets], accs),
                                "macs": spearman([n.macs for n in nets], accs), "networks": len(nets),
                                "supernet_acc_mean": sum(sc[n.id] for n in nets) / len(nets)}
        figs["variants"][variant] = by_window
        print(f"[{time.perf_counter() - t0:6.0f}s] {variant}: {by_window}", flush=True)
    first = figs["variants"].get("shared-sandwich") or next(iter(figs["variants"].values()))
    mean = lambda k: sum(v[k] for v in first.values()) / len(first) if first else None  # noqa: E731
    figs["rank_spearman_supernet"] = mean("supernet")
    figs["rank_spearman_macs"] = mean("macs")
    figs["rank_spearman_supernet_minus_macs"] = (None if figs["rank_spearman_supernet"] is None
                                                 else figs["rank_spearman_supernet"] - figs["rank_spearman_macs"])
    figs["rank_null"] = 0.0
    met = {k: figs[k] is not None and figs[k] >= float(t.split()[1]) for k, t in TARGETS.items()}
    RESULTS.write_text(json.dumps({"figures": figs, "targets": TARGETS, "met": met, "quick": args.quick,
                                   "seconds": time.perf_counter() - t0}, indent=1) + "\n")
    sep = figs["variants"].get("separate-uniform")
    sep_mean = sum(v["supernet"] for v in sep.values()) / len(sep) if sep else None
    print(f"supernet_rank{' (quick)' if args.quick else ''}: spearman within window, shared super net "
          f"{figs['rank_spearman_supernet']:+.2f} [{'ok' if met['rank_spearman_supernet'] else 'MISS'}], MACs "
          f"{figs['rank_spearman_macs']:+.2f}, separate {'-' if sep_mean is None else format(sep_mean, '+.2f')} "
          f"(null 0); {figs['steps']} steps; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
