"""Mixed-precision DNAS on Fashion-MNIST: how much smaller, at what accuracy, against uniform widths.

One process, one training budget for everyone (stated in the output):

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

Figures: ``compression_x`` = fp32 size / searched size; ``acc_drop_vs_fp32`` = fp32 top-1 −
searched top-1 (points); ``acc_gain_vs_uniform_same_size`` = searched top-1 − top-1 of the
uniform width whose size is nearest the searched size (log scale; points).

    python benchmarks/mixed_precision.py            # ≈ 7 min of one core (longer when the machine is shared)
    python benchmarks/mixed_precision.py --quick    # < 1 min, tiny network and subsets

Writes benchmarks/results/mixed_precision.json and prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
RESULTS = HERE / "results" / "mixed_precision.json"
TARGETS = {"compression_x": ">= 10", "acc_drop_vs_fp32": "<= 0.5", "acc_gain_vs_uniform_same_size": "> 0"}
UNIFORM = ("w8a8", "w4a8", "w2a8")


def _met(value: float, target: str) -> bool:
    op, num = target.split()
    return {">=": value >= float(num), "<=": value <= float(num), ">": value > float(num)}[op]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny network and subsets, under a minute")
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
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

    with tempfile.TemporaryDirectory(prefix="hwnas-mp-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        out = run(work, space_name, n_train, n_test, pre_epochs, ft_epochs, search_epochs, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(out["table"])
    print(out["budget_text"])
    f, met = out["figures"], out["met"]
    print(f"mixed_precision{' (quick)' if q else ''}: compression {f['compression_x']:.1f}x "
          f"[{'ok' if met['compression_x'] else 'MISS'}], acc drop vs fp32 {f['acc_drop_vs_fp32']:+.2f} pts "
          f"[{'ok' if met['acc_drop_vs_fp32'] else 'MISS'}], gain vs uniform {out['nearest_uniform']} "
          f"{f['acc_gain_vs_uniform_same_size']:+.2f} pts [{'ok' if met['acc_gain_vs_uniform_same_size'] else 'MISS'}]; "
          f"{out['seconds']:.0f} s")


def run(work: Path, space_name: str, n_train: int, n_test: int | None, pre_epochs: int, ft_epochs: int,
        search_epochs: int, args: Any) -> dict[str, Any]:
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
    common = dict(data="fashion-mnist", batch_size=args.batch_size, subset=n_train, val_subset=n_test, seed=args.seed,
                  num_threads=args.threads, progress=False)
    timings: dict[str, float] = {}

    def stage(name: str):
        class _T:
            def __enter__(self) -> None:
                self.t = time.perf_counter()
                print(f"[{time.perf_counter() - t_start:6.0f}s] {name} …", flush=True)

            def __exit__(self, *exc: object) -> None:
                timings[name] = time.perf_counter() - self.t

        return _T()

    # 1. fp32 from scratch.
    fp32 = BitsConfig(space, space.uniform("fp32"))
    with stage("fp32 training"):
        pre = train_quant(fp32, QuantTrainConfig(epochs=pre_epochs, lr=args.lr, export_onnx=False, **common),
                          work / "pre", "fp32_pretrain")
    init = str(pre.weights)

    # 2. the search, from the fp32 weights, under a size budget.
    fp32_kb = config_cost(SizeCost(), space, fp32.bits)
    budget = fp32_kb / args.budget_x
    with stage("search"):
        search = run_quant_search(QuantSearchConfig(
            out=str(work / "search"), space=space_name, cost="size", loss="target", target=budget,
            weight_bits=[2, 4, 8, 32], act_bits=[8], init=init, epochs=search_epochs, warmup_epochs=0,
            w_lr=args.finetune_lr, theta_lr=args.theta_lr, theta_optimizer=args.theta_optimizer, plots=False, **common))

    # 3. every row fine-tuned from the same weights (the super net's) with the same schedule.
    init = str(work / "search" / "supernet_float.pt")
    configs = {"fp32": fp32, **{f"uniform {t}": BitsConfig(space, space.uniform(t)) for t in UNIFORM},
               "searched mix": search.config}
    rows, reports = [], {}
    for name, cfg in configs.items():
        stem = name.replace(" ", "_")
        with stage(f"fine-tune {name}"):
            res = train_quant(cfg, QuantTrainConfig(epochs=ft_epochs, lr=args.finetune_lr, init=init, **common),
                              work / "rows", stem)
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
    met = {k: _met(v, TARGETS[k]) for k, v in figures.items()}
    n_test_used = reports["fp32"]["test_images"]
    n_train_used = reports["fp32"]["train_images"]
    budget_text = (
        f"training budget: {space_name} ({space.num_layers} layers, {sum(l.weight_params for l in space.layers())} weights) "
        f"on {n_train_used} Fashion-MNIST training images; fp32 {pre_epochs} epochs from scratch (lr {args.lr}); search "
        f"{search_epochs} epoch(s) from it (target loss, size ≤ {budget:.1f} KB = fp32/{args.budget_x:g}, θ "
        f"{args.theta_optimizer} lr {args.theta_lr}); then every row {ft_epochs} epoch(s) from the super net's weights "
        f"(lr {args.finetune_lr}); batch {args.batch_size}; "
        f"tested on {n_test_used} images; {args.threads} thread(s); latency: ONNX Runtime on this host, batch 1")
    table = format_table(rows, reference="fp32")
    return {
        "figures": figures, "targets": TARGETS, "met": met, "mode": "quick" if args.quick else "full",
        "nearest_uniform": nearest.name, "table": table, "budget_text": budget_text,
        "rows": [r.to_dict() for r in rows], "searched_bits": search.config.bits,
        "searched_summary": bits_summary(search.config.bits), "supernet_val_acc": search.val_acc,
        "budget_kb": budget, "fp32_kb": fp32_kb, "fp32_pretrain_acc": pre.accuracy,
        "settings": {"space": space_name, "train_images": n_train_used, "test_images": n_test_used,
                     "pretrain_epochs": pre_epochs, "finetune_epochs": ft_epochs, "search_epochs": search_epochs,
                     "budget_x": args.budget_x, "lr": args.lr, "finetune_lr": args.finetune_lr,
                     "theta_lr": args.theta_lr, "theta_optimizer": args.theta_optimizer, "batch_size": args.batch_size, "threads": args.threads, "seed": args.seed},
        "stage_seconds": timings, "seconds": time.perf_counter() - t_start,
    }


if __name__ == "__main__":
    main()
