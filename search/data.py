"""Image data sets for the search and for training: Fashion-MNIST (IDX), CIFAR (python pickle), image folders.

Nothing is downloaded. A data set is named (``fashion-mnist``, ``cifar10``) or given as a path;
the format of a path is detected from its files. Small data sets are held in memory as uint8
tensors and batched by slicing (no per-item Python calls); image folders are read lazily.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, Sized, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from hwnas.errors import HwnasError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Channel statistics of the training sets, so inputs are roughly zero-mean, unit-variance.
_FMNIST_NORM = ((0.2860,), (0.3530,))
_CIFAR10_NORM = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}


class DataError(HwnasError):
    """A data set that cannot be found or read; the message is one line a user can act on."""


class NoEvaluationSplit(DataError):
    """An image folder without a val/ or test/ sub-folder: callers may evaluate on held-out training data."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set."""

    name: str
    input_shape: tuple[int, int, int]  # C, H, W
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class InMemoryImages(Dataset):
    """Images as one uint8 tensor (N, C, H, W) plus int64 labels; normalised when read."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.info = info
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised float images and labels at ``index`` (a 1-D index tensor)."""
        x = self.images[index].to(torch.float32).div_(255.0)
        return (x - self.mean) / self.std, self.labels[index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batch(torch.tensor([i]))
        return x[0], y[0]

    def select(self, index: torch.Tensor) -> "InMemoryImages":
        """A new data set holding only the rows at ``index``."""
        return InMemoryImages(
            self.images[index], self.labels[index], self.info, self.mean.flatten().tolist(), self.std.flatten().tolist()
        )


class ImageFolder(Dataset):
    """A tree ``root/<class>/<image>``, read lazily with PIL, resized and centre-cropped to ``size``."""

    def __init__(
        self, root: Path, size: int, mean: Sequence[float] = _IMAGENET_NORM[0], std: Sequence[float] = _IMAGENET_NORM[1]
    ) -> None:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise DataError(f"{root}: no class folders (expected root/<class>/<image files>)")
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            for dirpath, _, files in os.walk(root / name):
                for f in sorted(files):
                    if Path(f).suffix.lower() in _IMAGE_SUFFIXES:
                        self.samples.append((Path(dirpath) / f, label))
        if not self.samples:
            raise DataError(f"{root}: class folders hold no images ({', '.join(sorted(_IMAGE_SUFFIXES))})")
        self.size = size
        self.info = DatasetInfo(name=root.name, input_shape=(3, size, size), classes=tuple(classes))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.labels = torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image  # only image folders need PIL

        path, label = self.samples[i]
        with Image.open(path) as f:
            im = f.convert("RGB")
            # Resize the shorter side to `size`, then centre-crop: keeps the aspect ratio.
            w, h = im.size
            scale = self.size / min(w, h)
            im = im.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.Resampling.BILINEAR)
            w, h = im.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            arr = np.asarray(im, dtype=np.uint8).copy()
        x = torch.from_numpy(arr).permute(2, 0, 1).to(torch.float32).div_(255.0)
        return (x - self.mean) / self.std, torch.tensor(label)


# ---------------------------------------------------------------- readers


def _open_maybe_gz(path: Path) -> bytes:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
        return fh.read()


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array of its declared shape."""
    raw = _open_maybe_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(f"{path}: IDX element type 0x{dtype_code:02x} is not unsigned byte")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: IDX header says {dims} but holds {data.size} values (truncated file?)")
    return data.reshape(dims)


def _find_idx(root: Path, prefix: str, kind: str) -> Path | None:
    # Names seen in the wild: train-images-idx3-ubyte(.gz), train-images.idx3-ubyte, t10k-labels-idx1-ubyte.
    for p in sorted(root.iterdir()):
        n = p.name
        if n.startswith(prefix) and kind in n and ("idx" in n):
            return p
    return None


def _is_fashion_mnist_dir(root: Path) -> bool:
    return root.is_dir() and _find_idx(root, "train", "images") is not None


def load_idx_folder(root: Path, split: str, name: str = "fashion-mnist") -> InMemoryImages:
    """Fashion-MNIST (or MNIST) IDX files in ``root``; ``split`` is train or test."""
    prefix = "train" if split == "train" else "t10k"
    images_path, labels_path = _find_idx(root, prefix, "images"), _find_idx(root, prefix, "labels")
    if images_path is None or labels_path is None:
        raise DataError(f"{root}: no {prefix}-images/{prefix}-labels IDX files for split {split!r}")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"{root}: IDX shapes {images.shape} and {labels.shape} do not match")
    n, h, w = images.shape
    info = DatasetInfo(name=name, input_shape=(1, h, w), classes=FASHION_MNIST_CLASSES)
    x = torch.from_numpy(images.copy()).view(n, 1, h, w)
    return InMemoryImages(x, torch.from_numpy(labels.astype(np.int64)), info, *_FMNIST_NORM)


def _is_cifar_dir(root: Path) -> Path | None:
    for cand in (root, root / "cifar-10-batches-py", root / "cifar-100-python"):
        if (cand / "data_batch_1").is_file() or (cand / "train").is_file() and (cand / "meta").is_file():
            return cand
    return None


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="bytes")


def load_cifar_folder(root: Path, split: str) -> InMemoryImages:
    """CIFAR-10 (data_batch_1..5, test_batch) or CIFAR-100 (train, test) python-pickle folder."""
    if (root / "data_batch_1").is_file():
        files = [root / f"data_batch_{i}" for i in range(1, 6)] if split == "train" else [root / "test_batch"]
        label_key, meta_file, names_key, name = b"labels", root / "batches.meta", b"label_names", "cifar10"
    else:
        files = [root / ("train" if split == "train" else "test")]
        label_key, meta_file, names_key, name = b"fine_labels", root / "meta", b"fine_label_names", "cifar100"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{root}: CIFAR folder lacks {', '.join(missing)}")
    xs, ys = [], []
    for f in files:
        d = _unpickle(f)
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[label_key], dtype=np.int64))
    if meta_file.is_file():
        classes = tuple(n.decode() for n in _unpickle(meta_file)[names_key])
    else:
        classes = tuple(str(i) for i in range(int(max(int(y.max()) for y in ys)) + 1))
    info = DatasetInfo(name=name, input_shape=(3, 32, 32), classes=classes)
    return InMemoryImages(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)), info, *_CIFAR10_NORM)


def _image_folder_split(root: Path, split: str) -> Path:
    """``root/train`` and ``root/val`` (or ``test``) when they exist; otherwise the tree itself for train."""
    if split == "train":
        return root / "train" if (root / "train").is_dir() else root
    for name in ("val", "test", "validation"):
        if (root / name).is_dir():
            return root / name
    raise NoEvaluationSplit(f"{root}: image folder has no val/ or test/ sub-folder for the evaluation split")


# ---------------------------------------------------------------- entry point


def _resolve(name_or_path: str | os.PathLike[str]) -> tuple[str, Path]:
    """(format, folder) for a data set name or path."""
    text = str(name_or_path)
    low = text.lower().replace("_", "-")
    if low in ("fashion-mnist", "fmnist", "fashionmnist"):
        root = Path(os.environ.get("HWNAS_FASHION_MNIST", FASHION_MNIST_DIR))
        if not _is_fashion_mnist_dir(root):
            raise DataError(
                f"Fashion-MNIST not found in {root}: install it with "
                "`apt-get install dataset-fashion-mnist` or pass --data PATH to its IDX files"
            )
        return "idx", root
    if low in ("cifar10", "cifar-10", "cifar100", "cifar-100"):
        raise DataError(
            f"{text}: give the folder of the CIFAR python version with --data PATH "
            "(the unpacked cifar-10-python.tar.gz; nothing is downloaded)"
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(
            f"data set {text!r} not found: pass fashion-mnist "
            "(`apt-get install dataset-fashion-mnist`), or a path to IDX files, a CIFAR folder or an image folder"
        )
    if path.is_file():
        raise DataError(f"{path}: is a file; give the folder that holds the data set")
    if _is_fashion_mnist_dir(path):
        return "idx", path
    cifar = _is_cifar_dir(path)
    if cifar is not None:
        return "cifar", cifar
    return "folder", path


def load_dataset(
    name_or_path: str | os.PathLike[str],
    split: str = "train",
    subset: int | None = None,
    image_size: int | None = None,
    seed: int = 0,
) -> Dataset:
    """The ``split`` ("train" or "test") of a named or path-given data set, optionally a seeded random subset of ``subset`` items."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', not {split!r}")
    fmt, root = _resolve(name_or_path)
    ds: Dataset
    if fmt == "idx":
        ds = load_idx_folder(root, split)
    elif fmt == "cifar":
        ds = load_cifar_folder(root, split)
    else:
        ds = ImageFolder(_image_folder_split(root, split), size=image_size or 224)
    if subset is not None:
        ds = random_subset(ds, subset, seed)
    return ds


def random_subset(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """A seeded random ``n`` of ``ds``'s rows (all of them when ``n`` is not smaller)."""
    if n <= 0:
        raise DataError(f"--subset must be positive, not {n}")
    if n >= dataset_len(ds):
        return ds
    return _take(ds, torch.randperm(dataset_len(ds), generator=torch.Generator().manual_seed(seed))[:n])


def split_holdout(ds: Dataset, n: int, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(the rest, ``n`` images held out), drawn by ``seed``: every network trained with one seed gets the same split."""
    perm = torch.randperm(dataset_len(ds), generator=torch.Generator().manual_seed(seed))
    return _take(ds, perm[n:]), _take(ds, perm[:n])


def _take(ds: Dataset, index: torch.Tensor) -> Dataset:
    """The rows at ``index``: a copy for images in memory, a view for image folders."""
    return ds.select(index) if isinstance(ds, InMemoryImages) else _subset(ds, index)


def _subset(ds: Dataset, index: torch.Tensor) -> Subset:
    sub = Subset(ds, index.tolist())
    sub.info = ds.info  # type: ignore[attr-defined]  # keep what models need to know
    sub.labels = ds.labels[index]  # type: ignore[attr-defined]
    return sub


def dataset_info(ds: Dataset) -> DatasetInfo:
    """The ``DatasetInfo`` of a data set returned by ``load_dataset``."""
    info = getattr(ds, "info", None)
    if info is None:
        raise DataError("data set carries no info (use search.data.load_dataset)")
    return info


def dataset_len(ds: Dataset) -> int:
    """The number of rows of ``ds``: every data set here has one, but torch's ``Dataset`` type declares no ``__len__``."""
    return len(cast(Sized, ds))


def iterate_batches(
    ds: Dataset,
    index: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    workers: int = 0,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``ds`` restricted to ``index``; order drawn from ``generator`` so a run is reproducible."""
    if shuffle:
        index = index[torch.randperm(len(index), generator=generator)]
    if isinstance(ds, InMemoryImages):
        stop = len(index) - (len(index) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield ds.batch(index[start : start + batch_size])
        return
    loader = DataLoader(
        Subset(ds, index.tolist()), batch_size=batch_size, shuffle=False, num_workers=workers, drop_last=drop_last
    )
    yield from loader


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches ``iterate_batches`` yields for ``n`` items."""
    return n // batch_size if drop_last else (n + batch_size - 1) // batch_size
