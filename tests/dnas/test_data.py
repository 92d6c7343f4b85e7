"""Data sets: Fashion-MNIST from the Debian package, CIFAR pickle folders, image folders, clear errors."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from search.data import DataError, InMemoryImages, dataset_info, iterate_batches, load_dataset, read_idx


def test_fashion_mnist_from_the_debian_package() -> None:
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    info = dataset_info(train)
    assert info.input_shape == (1, 28, 28) and info.num_classes == 10 and info.classes[9] == "Ankle boot"
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    x, y = train.batch(torch.arange(256))
    assert x.dtype == torch.float32 and x.shape == (256, 1, 28, 28)
    assert abs(float(x.mean())) < 0.2 and 0.7 < float(x.std()) < 1.3  # normalised


def test_subset_is_seeded_and_sized() -> None:
    a = load_dataset("fashion-mnist", "train", subset=500, seed=3)
    b = load_dataset("fashion-mnist", "train", subset=500, seed=3)
    c = load_dataset("fashion-mnist", "train", subset=500, seed=4)
    assert len(a) == 500 and torch.equal(a.labels, b.labels) and not torch.equal(a.labels, c.labels)


def test_missing_fashion_mnist_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWNAS_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_unknown_path_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_dataset(tmp_path / "missing")
    assert "\n" not in str(exc.value) and "not found" in str(exc.value)


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_idx_folder_given_by_path_plain_or_gzipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 10, 20)
    _write_idx(tmp_path / "train-images-idx3-ubyte", imgs, gz=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels, gz=True)
    ds = load_dataset(tmp_path, "train")
    assert isinstance(ds, InMemoryImages) and len(ds) == 20
    assert torch.equal(ds.images[:, 0], torch.from_numpy(imgs.astype(np.uint8)))
    assert ds.labels.tolist() == labels.tolist()
    with pytest.raises(DataError, match="t10k"):
        load_dataset(tmp_path, "test")


def test_truncated_idx_file_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(struct.pack(">BBBB3I", 0, 0, 8, 3, 10, 28, 28) + b"\0" * 100)
    with pytest.raises(DataError, match="truncated"):
        read_idx(p)


def test_cifar10_python_pickle_folder(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 3)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(root / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": rng.integers(0, 10, n).tolist()}, fh)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    with open(root / "data_batch_1", "rb") as fh:
        first = pickle.load(fh, encoding="bytes")[b"data"][0]
    train = load_dataset(tmp_path, "train")  # the parent folder is found too
    assert len(train) == 20 and dataset_info(train).input_shape == (3, 32, 32)
    assert dataset_info(train).classes[3] == "c3"
    # Rows are 1024 red, then green, then blue values, row-major.
    assert torch.equal(train.images[0, 0].flatten(), torch.from_numpy(first[:1024]))
    assert torch.equal(train.images[0, 2].flatten(), torch.from_numpy(first[2048:]))
    assert len(load_dataset(root, "test")) == 3


def test_image_folder_tree(tmp_path: Path) -> None:
    from PIL import Image

    for split, n in (("train", 3), ("val", 2)):
        for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40 + i, 30), color).save(d / f"{i}.png")
    train = load_dataset(tmp_path, "train", image_size=16)
    assert len(train) == 6 and dataset_info(train).classes == ("cat", "dog")
    x, y = train[0]
    assert x.shape == (3, 16, 16) and int(y) == 0
    assert float(x[0].mean()) > float(x[2].mean())  # a red cat
    xs, ys = next(iterate_batches(train, torch.arange(6), 6, shuffle=False))
    assert xs.shape == (6, 3, 16, 16) and ys.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(load_dataset(tmp_path, "test", image_size=16)) == 4
    sub = load_dataset(tmp_path, "train", subset=2, image_size=16)
    assert len(sub) == 2 and dataset_info(sub).num_classes == 2


def test_image_folder_without_val_trains_and_has_no_evaluation_split(tmp_path: Path) -> None:
    from PIL import Image

    from search.data import NoEvaluationSplit

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("L", (8, 8), 128).save(tmp_path / cls / "0.png")
    assert len(load_dataset(tmp_path, "train", image_size=8)) == 2
    with pytest.raises(NoEvaluationSplit, match="no val/ or test/"):
        load_dataset(tmp_path, "test", image_size=8)
