"""One rank of a test search under torchrun: runs ``run_search`` and reports what it saw to ``--report``.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed/worker.py \
        --out RUN --report REPORT --space tiny.yaml --epochs 2

Each rank writes ``REPORT/rank<R>.json`` (outside the run folder) with:

* ``theta``: θ after every epoch, as logged by the search, and whether all ranks held the same bits
  (gathered with ``all_gather_object`` right after the epoch's checkpoint);
* ``masks``: a digest of the Gumbel masks of every training forward pass of the super net (recorded
  with a global module forward hook), to check the shared-noise policy;
* ``writes``: every file-system write under the run folder this process made, recorded with a
  Python audit hook (``sys.addaudithook``: ``open`` for writing, ``os.rename``, ``os.mkdir``,
  ``os.remove``) — only rank 0 may have any.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _watch_writes(root: Path, seen: list[str]) -> None:
    """Record writes below ``root`` made by this process (an audit hook cannot be removed: fine for a worker)."""
    root_s = str(root.resolve())

    def under(path: Any) -> str | None:
        if isinstance(path, int):
            return None
        try:
            p = os.path.abspath(os.fsdecode(path))
        except TypeError:
            return None
        return p if p == root_s or p.startswith(root_s + os.sep) else None

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & WRITE_FLAGS
            )
            if writing and (p := under(path)):
                seen.append(f"open {p}")
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            for a in args[:2]:
                if p := under(a):
                    seen.append(f"{event} {p}")
                    break

    sys.addaudithook(hook)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--space", required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--mode", default="hard")
    ap.add_argument("--subset", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from search import distributed
    from search.search_config import SearchConfig
    from search.searcher import run_search
    from search.supernet import SuperNet

    distributed.init_from_env("cpu")
    rank = distributed.rank()
    writes: list[str] = []
    _watch_writes(Path(args.out), writes)

    masks: list[str] = []

    def record_masks(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(module, SuperNet) and module.training and module.last_masks is not None:
            flat = torch.cat([m.detach().reshape(-1) for m in module.last_masks]).numpy().tobytes()
            masks.append(hashlib.sha256(flat).hexdigest()[:16] + f":{module.last_indices}")

    torch.nn.modules.module.register_module_forward_hook(record_masks)

    theta: list[list[list[float]]] = []
    agree: list[bool] = []

    def on_epoch_end(epoch: int, entry: dict[str, Any]) -> None:
        theta.append(entry["theta"])
        everyone = distributed.all_gather_object(entry["theta"])
        agree.append(all(t == entry["theta"] for t in everyone))

    config = SearchConfig.from_flat(
        out=args.out,
        space=args.space,
        data="fashion-mnist",
        subset=args.subset,
        val_subset=400,
        epochs=args.epochs,
        warmup_epochs=0,
        batch_size=args.batch_size,
        mode=args.mode,
        torch_device="cpu",
        num_threads=1,
        seed=3,
        progress=False,
        plots=False,
    )
    result = run_search(config, on_epoch_end=on_epoch_end)
    report = {
        "rank": rank,
        "world_size": distributed.world_size(),
        "theta": theta,
        "theta_agree": agree,
        "masks": masks,
        "writes": writes,
        "argmax": result.argmax,
        "val_acc": result.val_acc,
        "history_images": [e.get("train_acc") for e in result.history],
    }
    Path(args.report).mkdir(parents=True, exist_ok=True)
    (Path(args.report) / f"rank{rank}.json").write_text(json.dumps(report))
    distributed.shutdown()


if __name__ == "__main__":
    main()
