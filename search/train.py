"""Train an architecture from scratch: SGD with momentum and a cosine learning rate, then test accuracy.

Writes ``<out>/<stem>.pt`` (the state dict, which ``hwnas export --weights`` reads) and
``<out>/<stem>.train.json`` (accuracy, per-epoch log, the architecture and the settings).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search.data import dataset_info, dataset_len, iterate_batches, load_dataset, num_batches, random_subset, split_holdout
from search.hooks import Progress, ProgressFactory, no_progress
from search.rundir import RunDir
from search.train_config import TrainConfig, TrainError


@dataclass
class TrainResult:
    """Where the weights went and how good they are."""

    weights: Path
    report: Path
    accuracy: float
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    classes: int = 0

    @property
    def at_chance(self) -> bool:
        """Accuracy within half of chance level above it: the network learned (almost) nothing."""
        return at_chance(self.accuracy, self.classes)


def at_chance(accuracy: float, classes: int) -> bool:
    """True when ``accuracy`` is below 1.5× chance (1/``classes``): too short a training, too few images, or a bad lr."""
    return classes > 1 and accuracy < 1.5 / classes


def chance_hint(
    accuracy: float, classes: int, options: str = "longer (--epochs), on more images (--subset), or with a lower --lr"
) -> str:
    """The warning shown when a trained network is at chance level, naming the options to change."""
    return (
        f"accuracy {accuracy:.3f} is chance level for {classes} classes ({1 / classes:.3f}): the network learned "
        f"nothing; train {options}"
    )


def _check_fit(space, info) -> None:
    c, h, w = info.input_shape
    if tuple(space.input_shape) != (c, h, w):
        raise TrainError(
            f"architecture takes {'x'.join(map(str, space.input_shape))} input, data set {info.name!r} has {c}x{h}x{w}"
        )
    if space.classes != info.num_classes:
        raise TrainError(f"architecture has {space.classes} classes, data set {info.name!r} has {info.num_classes}")


def torch_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_model(
    model: nn.Module,
    train_set: Any,
    val_set: Any,
    config: TrainConfig,
    progress: Progress | None = None,
    label: str | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place (SGD + Nesterov momentum, one per-step cosine cycle); one log entry per epoch.

    ``label`` names the run in the progress bar and its epoch lines (``hwnas quant-train`` passes
    the output stem; ``hwnas train`` shows plain "train N/E").
    """
    from search.evaluate import evaluate_model

    device = torch_device(config.torch_device)
    model.to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.wd, nesterov=config.momentum > 0
    )
    steps_per_epoch = num_batches(len(train_set), config.batch_size, drop_last=True)
    # Per-step cosine: short runs (a few epochs) still anneal smoothly.
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=config.lr,
        total_steps=max(1, config.epochs * steps_per_epoch),
        pct_start=0.15,
        anneal_strategy="cos",
        div_factor=10.0,
        final_div_factor=100.0,
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    index, val_index = torch.arange(len(train_set)), torch.arange(len(val_set))
    line_prefix = f"{label} " if label else ""
    history: list[dict[str, Any]] = []
    for epoch in range(config.epochs):
        te = time.perf_counter()
        model.train()
        g = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        if progress:
            progress.start(f"{label or 'train'} {epoch + 1}/{config.epochs}", steps_per_epoch)
        correct = seen = 0
        loss_sum = 0.0
        for x, y in iterate_batches(train_set, index, config.batch_size, True, g, config.workers, drop_last=True):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += int(y.shape[0])
            loss_sum += float(loss.detach()) * int(y.shape[0])
            if progress:
                progress.advance(loss=float(loss.detach()), acc=correct / seen)
        last = epoch == config.epochs - 1
        acc = (
            evaluate_model(model, val_set, val_index, config.batch_size, device, config.workers)
            if config.eval_every_epoch or last
            else None
        )
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                "val_acc": acc,
                "seconds": time.perf_counter() - te,
            }
        )
        if progress:
            tested = f"{'holdout' if config.holdout else 'test'}-acc {acc:.4f}  " if acc is not None else ""
            progress.line(
                f"{line_prefix}epoch {epoch + 1}: train-acc {correct / max(seen, 1):.4f}  {tested}{time.perf_counter() - te:.0f}s"
            )
    return history


def train_arch(
    arch, config: TrainConfig, out_dir: str | Path = ".", stem: str | None = None, progress: ProgressFactory = no_progress
) -> TrainResult:
    """Train ``arch`` (an ``Architecture``) from scratch on ``config.data``; save weights and a report.

    ``progress`` shows the epochs while ``config.progress`` is on (``search.hooks``).
    """
    from search.arch import build_network

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    if config.validation_images:
        rest, _ = split_holdout(
            load_dataset(config.data, "train", image_size=config.image_size), config.validation_images, config.validation_seed
        )
        train_set = random_subset(rest, config.subset, config.seed) if config.subset else rest
    else:
        train_set = load_dataset(config.data, "train", subset=config.subset, image_size=config.image_size, seed=config.seed)
    if config.holdout:
        if config.holdout >= dataset_len(train_set):
            raise TrainError(
                f"--holdout {config.holdout} leaves nothing to train on: the training set has {dataset_len(train_set)} images"
            )
        train_set, val_set = split_holdout(train_set, config.holdout, config.seed)
    else:
        val_set = load_dataset(config.data, "test", subset=config.val_subset, image_size=config.image_size, seed=config.seed)
    space = arch.resolve_space()
    _check_fit(space, dataset_info(train_set))

    torch.manual_seed(config.seed)
    model = build_network(space, arch.choices)
    t0 = time.perf_counter()
    with progress(enabled=config.progress) as bars:
        history = train_model(model, train_set, val_set, config, bars)
    seconds = time.perf_counter() - t0

    out = Path(out_dir)
    stem = stem or (arch.name or arch.id)
    rd = RunDir(out)
    rd.mkdir()
    weights = out / f"{stem}.pt"
    report = out / f"{stem}.train.json"
    if rd.main:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    rd.write_json(
        report,
        {
            "architecture": arch.to_dict(),
            "id": arch.id,
            "accuracy": history[-1]["val_acc"],
            "test_images": dataset_len(val_set),
            "evaluated_on": "holdout" if config.holdout else "test",
            "train_images": dataset_len(train_set),
            "weights": weights.name,
            "seconds": seconds,
            "history": history,
            "config": dataclasses.asdict(config),
        },
    )
    return TrainResult(
        weights=weights, report=report, accuracy=history[-1]["val_acc"], history=history, seconds=seconds, classes=space.classes
    )


def load_report(path: str | Path) -> dict[str, Any]:
    """A ``.train.json`` report."""
    return json.loads(Path(path).read_text())
