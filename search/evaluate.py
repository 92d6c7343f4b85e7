"""Top-1 accuracy of a model on (part of) a data set, and BatchNorm recalibration for one path of a super net."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from search.data import iterate_batches


@torch.no_grad()
def evaluate_model(model: nn.Module, ds, index: torch.Tensor, batch_size: int, device: torch.device, workers: int = 0) -> float:
    """Top-1 accuracy of ``model`` in eval mode on ``ds[index]``; the model's train/eval mode is restored."""
    return evaluate_scores(model, ds, index, batch_size, device, workers)[0]


@torch.no_grad()
def evaluate_scores(
    model: nn.Module, ds, index: torch.Tensor, batch_size: int, device: torch.device, workers: int = 0
) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) of ``model`` in eval mode on ``ds[index]``; mode restored."""
    was_training = model.training
    model.eval()
    correct = total = 0
    loss = 0.0
    try:
        for x, y in iterate_batches(ds, index, max(batch_size, 256), shuffle=False, workers=workers):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            correct += int((logits.argmax(1) == y).sum())
            loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            total += int(y.shape[0])
    finally:
        model.train(was_training)
    return correct / max(total, 1), loss / max(total, 1)


def _running_stats(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(running mean, running variance, batches tracked) of a BatchNorm that tracks running statistics."""
    assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
    return bn.running_mean, bn.running_var, bn.num_batches_tracked


@contextmanager
def recalibrated_bn(
    model: nn.Module, ds, index: torch.Tensor, batch_size: int, device: torch.device, workers: int = 0
) -> Iterator[None]:
    """Inside the block, BatchNorm running statistics are those of ``model`` as it now runs, on ``ds[index]``.

    A super net's running statistics mix every path it sampled; one architecture inside it (the
    argmax, a sample) is evaluated with statistics recomputed for that path (as single-path
    one-shot methods do). The previous statistics are restored afterwards, so training — and an
    exact resume — never see the change.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    stats = [_running_stats(m) for m in bns]
    saved = [(mean.clone(), var.clone(), n.clone(), m.momentum) for m, (mean, var, n) in zip(bns, stats)]
    was_training = model.training
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            for x, _ in iterate_batches(ds, index, batch_size, shuffle=False, workers=workers):
                model(x.to(device))
        model.train(was_training)
        yield
    finally:
        for m, (mean, var, n, momentum) in zip(bns, saved):
            running_mean, running_var, tracked = _running_stats(m)
            running_mean.copy_(mean)
            running_var.copy_(var)
            tracked.copy_(n)
            m.momentum = momentum
        model.train(was_training)
