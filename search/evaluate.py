"""Top-1 accuracy of a model on (part of) a data set."""

from __future__ import annotations

import torch
from torch import nn

from search.data import iterate_batches


@torch.no_grad()
def evaluate_model(model: nn.Module, ds, index: torch.Tensor, batch_size: int, device: torch.device,
                   workers: int = 0) -> float:
    """Top-1 accuracy of ``model`` in eval mode on ``ds[index]``; the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in iterate_batches(ds, index, max(batch_size, 256), shuffle=False, workers=workers):
            x, y = x.to(device), y.to(device)
            correct += int((model(x).argmax(1) == y).sum())
            total += int(y.shape[0])
    finally:
        model.train(was_training)
    return correct / max(total, 1)
