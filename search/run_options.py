"""What every run reads its images from and runs on: the fields a search (``RunSettings``) and a training
(``TrainConfig``) share, defined once so that an option means the same in ``hwnas search`` and ``hwnas train``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataAndMachine:
    """The data set and the machinery of one run."""

    data: str = "fashion-mnist"
    subset: int | None = None  # training images drawn by seed (None: all)
    val_subset: int | None = None  # test images evaluated (None: all)
    image_size: int | None = None  # None: the data set's own
    seed: int = 0
    torch_device: str = "auto"
    num_threads: int | None = None
    workers: int = 0
    progress: bool = True
