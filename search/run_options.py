"""What every run reads its images from and runs on: the fields a search (``RunSettings``) and a training
(``TrainConfig``) share, defined once — with their command-line options (search.option_fields) — so that an option
means the same in ``hwnas search`` and ``hwnas train``."""

from __future__ import annotations

from dataclasses import dataclass

from search.option_fields import option


@dataclass
class DataAndMachine:
    """The data set and the machinery of one run."""

    data: str = option(
        "fashion-mnist",
        "--data",
        help="fashion-mnist, or a folder: Fashion-MNIST IDX files, a CIFAR python-pickle folder, or an image-folder tree.",
    )
    # training images drawn by seed (None: all)
    subset: int | None = option(None, "--subset", min=1, help="Use N random training images (quick runs).")
    # test images evaluated (None: all)
    val_subset: int | None = option(None, "--val-subset", min=1, help="Evaluate on N test images (default: all).")
    # None: the data set's own
    image_size: int | None = option(None, "--image-size", min=1, help="Image folders: resize to this side (default 224).")
    seed: int = option(0, "--seed", help="Seed of the training subset, the initial weights and every random draw.")
    torch_device: str = option("auto", "--torch-device", help="auto, cpu, cuda, cuda:1 …")
    num_threads: int | None = option(
        None, "--torch-threads", min=1, help="torch.set_num_threads (default: torch's own, one per core)."
    )
    workers: int = option(0, "--workers", min=0, help="DataLoader worker processes (image folders).")
    progress: bool = option(True, "--progress/--no-progress", help="Progress bars.")
