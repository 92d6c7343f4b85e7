"""How to train one architecture from scratch: the settings ``hwnas train`` and the samplers pass to
``search.train.train_arch``, apart from the training code so the command line builds its options from them
without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from hwnas.errors import HwnasError
from search.option_fields import option
from search.run_options import DataAndMachine


class TrainError(HwnasError, ValueError):
    """An architecture that cannot be trained on the given data (shape or class mismatch)."""


@dataclass
class TrainConfig(DataAndMachine):
    """How to train one architecture from scratch (the data and machinery: search.run_options)."""

    epochs: int = option(10, "--epochs", "-e", min=1, help="Training epochs.")
    batch_size: int = option(128, "--batch-size", "-b", min=1, help="Images per step.")
    lr: float = option(0.1, "--lr", help="Peak SGD learning rate (one-cycle cosine schedule).")
    momentum: float = 0.9
    wd: float = option(1e-4, "--wd", help="Weight decay.")
    label_smoothing: float = 0.0
    eval_every_epoch: bool = True  # False: test only after the last epoch (the other epochs log val_acc None)
    # Evaluate on this many images held out of the training subset instead of on the test split: for choosing
    # between networks (hwnas sample --at-target) without looking at the test images they are reported on.
    holdout: int | None = None
    # Set aside this many training images (drawn by validation_seed, the same for every seed) before drawing the
    # training subset: what the ground truth of search quality trains with (search.ground_truth.Recipe), so a
    # network trained here is one more draw of that distribution.
    validation_images: int | None = None
    validation_seed: int = 12345

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise TrainError("--epochs must be at least 1")
        if self.batch_size < 1:
            raise TrainError("--batch-size must be at least 1")
        if self.holdout is not None and self.holdout < 1:
            raise TrainError("--holdout must be at least 1 image")
